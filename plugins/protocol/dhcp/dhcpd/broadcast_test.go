package dhcpd

import (
	"net"
	"net/netip"
	"testing"
)

// FreeBSD picks a broadcast's interface by sending to the interface's
// subnet broadcast address (IP_ONESBCAST): the address must be right for
// every prefix length and mask form.
func TestSubnetBroadcast(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		want string // "" none
	}{
		{"192.168.1.10/24", "192.168.1.255"},
		{"10.99.0.1/16", "10.99.255.255"},
		{"10.0.0.1/8", "10.255.255.255"},
		{"172.16.5.9/20", "172.16.15.255"},
		{"192.168.1.1/30", "192.168.1.3"},
		{"192.168.1.1/31", ""},
		{"192.168.1.1/32", ""},
		{"fd00::1/64", ""},
	} {
		ip, n, err := net.ParseCIDR(tc.cidr)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		got, ok := subnetBroadcast(n)
		if tc.want == "" {
			if ok {
				t.Errorf("%s: broadcast %v, want none", tc.cidr, got)
			}
			continue
		}
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: broadcast %v (%v), want %s", tc.cidr, got, ok, tc.want)
		}
	}
	// The 16-byte forms an interface's addresses may come in.
	n := &net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(120, 128)}
	if got, ok := subnetBroadcast(n); !ok || got != netip.MustParseAddr("10.1.2.255") {
		t.Errorf("16-byte /24: %v %v", got, ok)
	}
}

func TestInterfaceBroadcastNeedsBroadcastFlag(t *testing.T) {
	lo := &net.Interface{Index: 1, Name: "lo0", Flags: net.FlagUp | net.FlagLoopback}
	if a, err := interfaceBroadcast(lo); err == nil {
		t.Errorf("loopback broadcast %v, want an error", a)
	}
}
