package tftpd

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
)

// TestIPv6Only: listen = "[::1]:0" binds IPv6 alone and serves a
// first-stage file and a client's script to an IPv6 client, from a
// socket of its family; the host is asked for the script with the bare
// IPv6 peer, and the events name it.
func TestIPv6Only(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	fh := plugintest.NewFakeHost()
	script := "#!ipxe\nsanboot iscsi:[fd00:77::1]::3260:0:iqn.2026-11.io.dls:pc-01\n"
	fh.SetScript("52:54:00:12:34:56", "pc-01", script, "::1")
	s := startTFTP(t, map[string]any{"listen": "[::1]:0"}, plugintest.WithHost(fh))
	if !s.addr.Addr().Is6() || s.addr.Addr() != netip.IPv6Loopback() {
		t.Fatalf("listening on %v, want [::1]", s.addr)
	}
	want := s.file(t, "snponly.efi", 70000) // many blocks
	res := mustFetch(t, s.addr, "snponly.efi", want, fetchOpts{options: []string{"tsize", "0", "blksize", "1432"}})
	for from := range res.from {
		if from.Addr() != netip.IPv6Loopback() {
			t.Errorf("IPv6 client answered from %v", from)
		}
	}
	mustFetch(t, s.addr, "mac/52-54-00-12-34-56.ipxe", []byte(script), fetchOpts{})
	if q := fh.ScriptQueries()[0]; q.Peer != "::1" {
		t.Errorf("script query peer %q, want ::1", q.Peer)
	}
	ev := fh.WaitEvent(t, host.EventFileServed, 5*time.Second)
	if ev.Address != "::1" || ev.Attrs[host.AttrFile] != "snponly.efi" || !strings.HasPrefix(ev.Attrs[host.AttrRemote], "[::1]:") {
		t.Errorf("file_served event %+v", ev)
	}
}
