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

// TestDualStack: a MAC holds one IPv4 and one IPv6 binding. A DHCPv6
// lease (the OS of a machine that booted over IPv4) leaves the IPv4
// binding alone, and the other way round; a second machine is refused
// from every address of either family, also when it takes one of the
// first machine's addresses or re-sends its DHCP discover.
func TestDualStack(t *testing.T) {
	x, c := newIndex()
	a6, b6 := netip.MustParseAddr("fd00:77::51"), netip.MustParseAddr("fd00:77::52")
	x6 := netip.MustParseAddr("fd00:77::66") // the second machine's
	x.Lease(macA, addrA, c.t.Add(time.Hour), true)
	x.Lease(macA, a6, c.t.Add(time.Hour), true)
	if !x.Bound(macA, addrA) || !x.Bound(macA, a6) || !x.Claim(macA, addrA) || !x.Claim(macA, a6) {
		t.Fatal("a DHCPv6 lease took the IPv4 binding (or the other way round)")
	}
	if got := x.Addrs(macA); len(got) != 2 || got[0] != addrA || got[1] != a6 {
		t.Errorf("Addrs = %v, want [%s %s]", got, addrA, a6)
	}
	for _, a := range []netip.Addr{addrA, a6} {
		if m, ok := x.MACAt(a); !ok || m != macA {
			t.Errorf("MACAt(%s) = %q %v", a, m, ok)
		}
	}

	// The second machine, with its own leases of both families.
	x.Lease(macB, addrX, c.t.Add(time.Hour), true)
	x.Lease(macB, x6, c.t.Add(time.Hour), true)
	for _, a := range []netip.Addr{addrX, x6} {
		if x.Bound(macA, a) || x.Claim(macA, a) {
			t.Errorf("A's boot answers B's address %s", a)
		}
	}
	if x.Bound(macB, addrA) || x.Bound(macB, a6) || !x.Bound(macA, addrA) || !x.Bound(macA, a6) {
		t.Error("B's leases changed A's bindings")
	}

	// A new DHCPv6 lease moves the IPv6 binding only.
	x.Lease(macA, b6, c.t.Add(time.Hour), true)
	if x.Bound(macA, a6) || !x.Bound(macA, b6) || !x.Bound(macA, addrA) {
		t.Errorf("after a new IPv6 lease: old %v (want false), new %v, IPv4 %v (want true)", x.Bound(macA, a6), x.Bound(macA, b6), x.Bound(macA, addrA))
	}
	// B is given A's IPv6 address (A's lease ended): A keeps its IPv4
	// binding; the IPv6 address now answers B only.
	x.Lease(macB, b6, c.t.Add(time.Hour), true)
	if x.Bound(macA, b6) || !x.Bound(macB, b6) || !x.Bound(macA, addrA) {
		t.Errorf("after B took A's IPv6 address: A %v (want false), B %v (want true), A's IPv4 %v (want true)",
			x.Bound(macA, b6), x.Bound(macB, b6), x.Bound(macA, addrA))
	}
	if got := x.Addrs(macA); len(got) != 1 || got[0] != addrA {
		t.Errorf("Addrs(A) = %v, want [%s]", got, addrA)
	}
	// A releases its IPv4 lease: its IPv6 binding would stay; here it has
	// none, so nothing is bound to A.
	x.Lease(macA, addrA, c.t.Add(time.Hour), false)
	if x.Bound(macA, addrA) || len(x.Addrs(macA)) != 0 {
		t.Errorf("after release: bound %v, Addrs %v", x.Bound(macA, addrA), x.Addrs(macA))
	}

	// A boots again (IPv4) and logs in; B re-sends A's discover (a proxy
	// answer to A's MAC) and asks for A's script from either family.
	x.Lease(macA, addrA, c.t.Add(time.Hour), true)
	x.Login(macA, addrA)
	x.Proxy(macA)
	for _, a := range []netip.Addr{x6, addrX} {
		if x.Claim(macA, a) {
			t.Errorf("first use from B's %s took A's boot while A's session lives", a)
		}
	}
	if !x.Claim(macA, addrA) {
		t.Error("A refused from its own address")
	}
}
