package bootbind

import (
	"net/netip"
	"testing"
	"time"
)

// TestIPv6: IPv6 leases, first uses and live sessions bind as IPv4 ones
// do: one address, one machine; a DHCPv6 lease moving to another address
// ends the old one's binding.
func TestIPv6(t *testing.T) {
	x, c := newIndex()
	a6, b6 := netip.MustParseAddr("fd00:77::101"), netip.MustParseAddr("fd00:77::102")
	x.Lease(macA, a6, c.t.Add(time.Hour), true)
	if !x.Bound(macA, a6) || x.Bound(macA, b6) || x.Bound(macB, a6) || x.Bound(macA, addrA) {
		t.Fatal("IPv6 lease binding: want A's address only, for A only")
	}
	if m, ok := x.MACAt(a6); !ok || m != macA {
		t.Errorf("MACAt(%s) = %q %v", a6, m, ok)
	}
	x.Lease(macA, b6, c.t.Add(time.Hour), true)
	if x.Bound(macA, a6) || !x.Bound(macA, b6) {
		t.Error("a new IPv6 lease did not move the binding")
	}
	// Proxy first use from an IPv6 address; an iSCSI session keeps it
	// past the window.
	x.Proxy(macB)
	c6 := netip.MustParseAddr("fd00:77::103")
	if !x.Claim(macB, c6) || x.Claim(macB, a6) {
		t.Fatal("IPv6 first use: want the first requester only")
	}
	x.Login(macB, c6)
	c.t = c.t.Add(2 * time.Hour)
	if !x.Bound(macB, c6) || x.Bound(macA, b6) {
		t.Errorf("after the lease's end: live session bound %v (want true), expired lease bound %v (want false)", x.Bound(macB, c6), x.Bound(macA, b6))
	}
}
