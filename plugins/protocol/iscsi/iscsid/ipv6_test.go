package iscsid

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"github.com/dls-project/dls/internal/iscsi/initiator"
)

// TestIPv6Portal: listen = "[::1]:0" binds the portal on IPv6; a client
// whose boot is bound to ::1 logs in from there, with CHAP, and reads
// back what it wrote; discovery names the portal as a bracketed
// TargetAddress (RFC 3720); a client bound to another IPv6 address is
// refused as not bound.
func TestIPv6Portal(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	owner := &client{name: "pc-01", mac: "52:54:00:00:00:01", secret: "pc1-secret-1234", addrs: []string{"::1"}}
	other := &client{name: "pc-02", mac: "52:54:00:00:00:02", secret: "pc2-secret-1234", addrs: []string{"fd00:77::102"}}
	e := startTarget(t, map[string]any{"listen": "[::1]:0"}, owner, other)
	if !strings.HasPrefix(e.addr, "[::1]:") {
		t.Fatalf("portal listens on %s, want [::1]:port", e.addr)
	}
	ctx := context.Background()
	s := e.mustDial(t, owner, func(c *initiator.Config) { c.LocalAddr = "::1" })
	data := randomBytes(4096)
	if err := s.Write(ctx, 8, data, 512, false); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := s.Read(ctx, 8, got, 512); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back over IPv6: equal %v, %v", bytes.Equal(got, data), err)
	}

	targets, err := initiator.Discover(ctx, initiator.Config{Addr: e.addr, LocalAddr: "::1", InitiatorName: owner.initiator(),
		CHAPUser: owner.initiator(), CHAPSecret: owner.secret})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tg := range targets {
		if tg.Name == owner.target() {
			found = true
			if len(tg.Addresses) != 1 || tg.Addresses[0] != e.addr+",1" {
				t.Errorf("TargetAddress %v, want %s,1", tg.Addresses, e.addr)
			}
		}
	}
	if !found {
		t.Errorf("discovery from ::1: %+v, want %s", targets, owner.target())
	}

	before := e.errs(t, "not_bound")
	_, err = e.dial(t, other, func(c *initiator.Config) { c.LocalAddr = "::1" })
	if st := loginStatus(err); st != initiator.LoginAuthzFailure {
		t.Errorf("client bound to another IPv6 address: %v, want 0x0202", err)
	}
	if got := e.errs(t, "not_bound"); got != before+1 {
		t.Errorf("not_bound errors %v, want %v", got, before+1)
	}
}
