package bootbind

import (
	"net/netip"
	"testing"
	"time"
)

const (
	macA = "52:54:00:aa:00:01"
	macB = "52:54:00:aa:00:02"
)

var (
	addrA = netip.MustParseAddr("10.0.0.51")
	addrX = netip.MustParseAddr("10.0.0.66")
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newIndex() (*Index, *clock) {
	c := &clock{t: time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)}
	return New(c.now), c
}

// TestLeaseBinding: a bound lease binds its address until it expires or
// is released, unless a live iSCSI session from it goes on.
func TestLeaseBinding(t *testing.T) {
	x, c := newIndex()
	if x.Bound(macA, addrA) || x.Claim(macA, addrA) {
		t.Fatal("bound without a lease")
	}
	x.Lease(macA, addrA, c.t.Add(time.Hour), true)
	if !x.Bound(macA, addrA) || !x.Claim(macA, addrA) || x.Bound(macA, addrX) || x.Claim(macA, addrX) || x.Bound(macB, addrA) {
		t.Fatal("lease binding: want A's address only, for A only")
	}
	if m, ok := x.MACAt(addrA); !ok || m != macA {
		t.Errorf("MACAt = %q %v", m, ok)
	}
	c.t = c.t.Add(2 * time.Hour)
	if x.Bound(macA, addrA) {
		t.Error("bound after the lease expired")
	}
	x.Login(macA, addrA)
	if !x.Bound(macA, addrA) {
		t.Error("a live session does not hold the binding")
	}
	if h, ok := x.Holder(addrA); !ok || h != macA {
		t.Errorf("Holder = %q %v", h, ok)
	}
	x.Logout(macA, addrA)
	if x.Bound(macA, addrA) {
		t.Error("bound after the logout of the last session")
	}
	x.Lease(macA, addrA, c.t.Add(time.Hour), true)
	x.Lease(macA, addrA, c.t.Add(time.Hour), false)
	if x.Bound(macA, addrA) {
		t.Error("bound after release")
	}
}

// TestProxyFirstUse: after a proxy answer the first requester is bound,
// nobody else; without a proxy answer nobody; a live session's machine
// cannot be taken over by a new proxy answer.
func TestProxyFirstUse(t *testing.T) {
	x, c := newIndex()
	if x.Claim(macA, addrA) {
		t.Fatal("claimed without a proxy answer")
	}
	x.Proxy(macA)
	if !x.Claim(macA, addrA) || x.Claim(macA, addrX) || !x.Claim(macA, addrA) {
		t.Fatal("first use: want A bound, X refused")
	}
	if a := x.Addrs(macA); len(a) != 1 || a[0] != addrA {
		t.Errorf("Addrs = %v", a)
	}
	x.Login(macA, addrA)
	x.Proxy(macA) // an intruder sends a DISCOVER with A's MAC
	if x.Claim(macA, addrX) {
		t.Error("a pending first use took the binding of a machine with a live session")
	}
	if !x.Claim(macA, addrA) {
		t.Error("the live machine lost its binding")
	}
	c.t = c.t.Add(time.Hour)
	if !x.Bound(macA, addrA) {
		t.Error("binding with a live session expired")
	}
	x.Logout(macA, addrA)
	if x.Bound(macA, addrA) {
		t.Error("proxy binding outlived its window and session")
	}
	// A window passes without a request: nobody gets it.
	x.Proxy(macB)
	c.t = c.t.Add(x.Window)
	if x.Claim(macB, addrX) {
		t.Error("claimed after the window")
	}
	// An address with another machine's live session is not claimable.
	x.Login(macA, addrX)
	x.Proxy(macB)
	if x.Claim(macB, addrX) {
		t.Error("claimed from an address with another MAC's live session")
	}
}

// TestLive: a MAC is live from its first login to its last logout, from
// any address.
func TestLive(t *testing.T) {
	x := New(nil)
	a, b := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.6")
	const mac = "52:54:00:00:00:01"
	if x.Live(mac) {
		t.Fatal("live before any login")
	}
	x.Login(mac, a)
	x.Login(mac, b)
	x.Logout(mac, a)
	if !x.Live(mac) || x.Live("52:54:00:00:00:02") {
		t.Errorf("after logins from two addresses and one logout: Live = %v", x.Live(mac))
	}
	x.Logout(mac, b)
	if x.Live(mac) {
		t.Error("live after the last logout")
	}
}
