package httpserver_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
)

// TestHTTPBootFirstStage: a UEFI HTTP boot client fetches iPXE from
// /boot/files as OVMF's HttpBootDxe does, a HEAD for the size first, then
// the GET: both carry the Content-Length the firmware sizes its buffer
// from and Content-Type application/efi (which edk2 takes for an EFI
// image whatever the name), the GET the whole binary (an ipxe.efi is about 1 MiB: no limit
// cuts it), and the download records the ipxe stage of the session whose
// lease holds the requester's address.
func TestHTTPBootFirstStage(t *testing.T) {
	e := newBootEnv(t)
	bin := make([]byte, 1100<<10)
	_, _ = rand.Read(bin)
	mustWrite(t, filepath.Join(e.files, "ipxe.efi"), bin)

	const mac, addr = "52:54:00:aa:00:01", "127.0.0.3"
	now := time.Now()
	if err := e.svc.Report(context.Background(), []host.Event{
		{Type: host.EventDHCPDiscover, MAC: mac, Time: now, Attrs: map[string]string{host.AttrVendorClass: "HTTPClient:Arch:00016:UNDI:003000", host.AttrArch: "16"}},
		{Type: host.EventDHCPAck, MAC: mac, Address: addr, Time: now},
	}); err != nil {
		t.Fatal(err)
	}
	e.lease(mac, addr)

	resp, body := e.doFrom(addr, "HEAD", "/boot/files/ipxe.efi", nil, "")
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != strconv.Itoa(len(bin)) {
		t.Fatalf("HEAD: %d, Content-Length %q, body %d bytes; want 200, %d, none", resp.StatusCode, resp.Header.Get("Content-Length"), len(body), len(bin))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/efi" {
		t.Errorf("Content-Type %q", ct)
	}
	if _, ok := e.activeStages("pc-01")["ipxe"]; ok {
		t.Errorf("a HEAD recorded the first stage")
	}
	resp, body = e.doFrom(addr, "GET", "/boot/files/ipxe.efi", nil, "")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != strconv.Itoa(len(bin)) || !bytes.Equal([]byte(body), bin) {
		t.Fatalf("GET: %d, Content-Length %q, %d bytes (equal %v)", resp.StatusCode, resp.Header.Get("Content-Length"), len(body), bytes.Equal([]byte(body), bin))
	}
	if _, ok := e.activeStages("pc-01")["ipxe"]; !ok {
		t.Errorf("pc-01's session after its iPXE download: stages %v, want ipxe", e.activeStages("pc-01"))
	}
	// Shared files stay open to anyone; another address's download is
	// not pc-01's stage.
	if _, ok := e.activeStages("pc-02")["ipxe"]; ok {
		t.Errorf("pc-02 has a stage it never reached")
	}
}

// activeStages returns the stages of client's active session (nil: none).
func (e *bootEnv) activeStages(client string) map[string]time.Time {
	for _, s := range e.tr.Active() {
		if s.Client == client {
			return s.Stages
		}
	}
	return nil
}
