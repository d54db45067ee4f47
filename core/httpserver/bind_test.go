package httpserver_test

import (
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The two machines of these tests: A is 127.0.0.1, X (an intruder on the
// same LAN) is 127.0.0.2.
const (
	addrA = "127.0.0.1"
	addrX = "127.0.0.2"
)

func (e *bootEnv) refused(reason string) float64 {
	return testutil.ToFloat64(counterVec(e.t, e.reg, "dls_boot_refused_total", "reason", reason))
}

// sessions returns how many boot sessions the store holds.
func (e *bootEnv) sessionCount() int {
	e.t.Helper()
	ss, err := e.st.ListSessions(context.Background(), store.SessionFilter{Limit: 100})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(ss)
}

// TestBootScriptBoundToTheLease: A's script goes to A's leased address, in
// both MAC spellings; X gets 404 for A's and B's (off, no lease) scripts
// in every spelling, counted, with no event, no session, no registration.
func TestBootScriptBoundToTheLease(t *testing.T) {
	e := newBootEnv(t)
	e.lease("52:54:00:aa:00:01", addrA)
	for _, p := range []string{
		"/boot/52-54-00-aa-00-01.ipxe", "/boot/52:54:00:aa:00:01.ipxe", "/boot/52-54-00-AA-00-01.ipxe", "/boot/525400aa0001.ipxe",
		"/boot/52-54-00-aa-00-02.ipxe?platform=efi", "/boot/52:54:00:aa:00:02.ipxe",
	} {
		resp, body := e.doFrom(addrX, "GET", p, nil, "")
		if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "iqn") || strings.Contains(body, "#!ipxe") {
			t.Errorf("X GET %s: %s %q, want 404 with nothing of the script", p, resp.Status, body)
		}
	}
	if n := len(e.svc.Recent()); n != 0 {
		t.Errorf("refused requests recorded %d events: %+v", n, e.svc.Recent())
	}
	if n := e.sessionCount(); n != 0 {
		t.Errorf("refused requests started %d sessions", n)
	}
	if got := e.refused("not_bound"); got != 6 {
		t.Errorf("dls_boot_refused_total{reason=not_bound} = %v, want 6", got)
	}
	for _, p := range []string{"/boot/52-54-00-aa-00-01.ipxe", "/boot/52:54:00:aa:00:01.ipxe"} {
		if resp, body := e.doFrom(addrA, "GET", p, nil, ""); resp.StatusCode != 200 || !strings.Contains(body, "pc-01") {
			t.Errorf("A GET %s: %s %q", p, resp.Status, body)
		}
	}
	// B has no lease: not even its own (future) address gets its script.
	if resp, _ := e.doFrom(addrA, "GET", "/boot/52-54-00-aa-00-02.ipxe", nil, ""); resp.StatusCode != 404 {
		t.Errorf("B's script to A's address: %s", resp.Status)
	}
}

// TestBootUnboundDoesNotRegister: unknown_clients = "register" registers
// nothing for a requester that is not bound.
func TestBootUnboundDoesNotRegister(t *testing.T) {
	e2 := newBootEnvWith(t, func(b *hostservices.Boot) { b.UnknownClients, b.DefaultImage = hostservices.UnknownRegister, "lab" })
	if resp, _ := e2.doFrom(addrX, "GET", "/boot/52-54-00-bb-00-01.ipxe", nil, ""); resp.StatusCode != 404 {
		t.Errorf("unknown MAC from an unbound address: %s", resp.Status)
	}
	if _, err := e2.st.ClientByMAC(context.Background(), "52:54:00:bb:00:01"); err == nil {
		t.Error("an unbound requester registered a client")
	}
	// Bound (its lease): registered and served.
	e2.lease("52:54:00:bb:00:01", addrX)
	if resp, body := e2.doFrom(addrX, "GET", "/boot/52-54-00-bb-00-01.ipxe", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, "auto-525400bb0001") {
		t.Errorf("unknown MAC from its leased address: %s %q", resp.Status, body)
	}
	if audit, _ := e2.st.ListAudit(context.Background(), 10); len(audit) != 1 {
		t.Errorf("audit %+v, want the one registration", audit)
	}
}

// TestBootProxyFirstUse: in proxy mode (no lease), the first requester
// after DLS's proxy answer is bound; the next address gets 404.
func TestBootProxyFirstUse(t *testing.T) {
	e := newBootEnv(t)
	if err := e.svc.Report(context.Background(), []host.Event{{Type: host.EventDHCPOffer, MAC: "52:54:00:aa:00:01", Client: "pc-01", Attrs: map[string]string{host.AttrProxy: "true"}}}); err != nil {
		t.Fatal(err)
	}
	if resp, body := e.doFrom(addrX, "GET", "/boot/52-54-00-aa-00-01.ipxe", nil, ""); resp.StatusCode != 200 || !strings.Contains(body, "pc-01") {
		t.Fatalf("first use: %s %q", resp.Status, body)
	}
	if resp, _ := e.doFrom(addrA, "GET", "/boot/52-54-00-aa-00-01.ipxe", nil, ""); resp.StatusCode != 404 {
		t.Errorf("second address after the first use: %s, want 404", resp.Status)
	}
	if resp, _ := e.doFrom(addrX, "GET", "/boot/52:54:00:aa:00:01.ipxe", nil, ""); resp.StatusCode != 200 {
		t.Errorf("the bound address again: %s", resp.Status)
	}
}

// TestBootClientFiles: files under boot.files/clients/<client>/ go only
// to the address bound to that client's boot; shared files to anyone.
func TestBootClientFiles(t *testing.T) {
	e := newBootEnv(t)
	mustWrite(t, filepath.Join(e.files, "clients", "pc-01", "answer.txt"), []byte("pc-01 only"))
	mustWrite(t, filepath.Join(e.files, "clients", "pc-02", "answer.txt"), []byte("pc-02 only"))
	e.lease("52:54:00:aa:00:01", addrA)
	e.lease("52:54:00:aa:00:02", addrX)
	if resp, body := e.doFrom(addrA, "GET", "/boot/files/clients/pc-01/answer.txt", nil, ""); resp.StatusCode != 200 || body != "pc-01 only" {
		t.Errorf("A's own file: %s %q", resp.Status, body)
	}
	for _, p := range []string{"/boot/files/clients/pc-01/answer.txt", "/boot/files/clients/pc-01/none", "/boot/files/clients/pc-01", "/boot/files/clients/pc-99/answer.txt"} {
		if resp, body := e.doFrom(addrX, "GET", p, nil, ""); resp.StatusCode != 404 || strings.Contains(body, "only") {
			t.Errorf("X GET %s: %s %q, want 404", p, resp.Status, body)
		}
	}
	if resp, _ := e.doFrom(addrX, "GET", "/boot/files/clients/pc-02/answer.txt", nil, ""); resp.StatusCode != 200 {
		t.Errorf("X's own file: %s", resp.Status)
	}
	// Shared files stay open, also to an address bound to nothing.
	if resp, _ := e.doFrom("127.0.0.9", "GET", "/boot/files/linux/initrd.img", nil, ""); resp.StatusCode != 200 {
		t.Errorf("shared file from an unbound address: %s", resp.Status)
	}
	if got := e.refused("file_not_bound"); got != 4 {
		t.Errorf("file_not_bound = %v, want 4", got)
	}
	for _, ev := range e.svc.Recent() {
		if ev.Type == host.EventFileServed && ev.Address == addrX && strings.Contains(ev.Attrs[host.AttrFile], "pc-01") {
			t.Errorf("refused file recorded as served: %+v", ev)
		}
	}
}

// TestBootDoneFromAnotherAddress: A's token posted from X is refused with
// the unknown token's answer, counted, and stays good for A.
func TestBootDoneFromAnotherAddress(t *testing.T) {
	e := newBootEnv(t)
	e.lease("52:54:00:aa:00:02", addrA)
	_, script := e.doFrom(addrA, "GET", "/boot/52-54-00-aa-00-02.ipxe", nil, "")
	m := regexp.MustCompile(`dls\.token=(\S+)`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("no token in\n%s", script)
	}
	_ = e.svc.Report(context.Background(), []host.Event{{Type: host.EventISCSIHandoff, Client: "pc-02", Time: e.clk.Now()}})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	_, unknownBody := e.doFrom(addrX, "POST", "/boot/done", form, "token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	resp, body := e.doFrom(addrX, "POST", "/boot/done", form, "token="+m[1])
	if resp.StatusCode != http.StatusForbidden || body != unknownBody {
		t.Errorf("A's token from X: %s %q, want the unknown token's 403 %q", resp.Status, body, unknownBody)
	}
	if got := e.refused("done_not_bound"); got != 1 {
		t.Errorf("done_not_bound = %v, want 1", got)
	}
	if s := e.session("pc-02"); s.TokenUsed || s.State != store.SessionActive {
		t.Errorf("session after the refused confirmation: %+v", s)
	}
	if resp, body := e.doFrom(addrA, "POST", "/boot/done", form, "token="+m[1]); resp.StatusCode != 200 {
		t.Errorf("A's token from A: %s %q", resp.Status, body)
	}
	// Once used, X still gets the unknown token's answer, not "reused".
	if resp, _ := e.doFrom(addrX, "POST", "/boot/done", form, "token="+m[1]); resp.StatusCode != http.StatusForbidden {
		t.Errorf("used token from X: %s, want 403", resp.Status)
	}
}
