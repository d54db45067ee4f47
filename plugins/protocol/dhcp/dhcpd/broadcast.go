package dhcpd

import (
	"fmt"
	"net"
	"net/netip"
)

// limitedBroadcast is 255.255.255.255, where clients without an address
// are answered.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// interfaceBroadcast returns the subnet broadcast address of ifi's first
// IPv4 network: where FreeBSD's IP_ONESBCAST sends a broadcast to pick
// the interface it leaves through.
func interfaceBroadcast(ifi *net.Interface) (netip.Addr, error) {
	if ifi.Flags&net.FlagBroadcast == 0 {
		return netip.Addr{}, fmt.Errorf("interface %s cannot broadcast", ifi.Name)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if b, ok := subnetBroadcast(n); ok {
				return b, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 network to broadcast on", ifi.Name)
}

// subnetBroadcast is n's broadcast address (every host bit set); false
// for a network that is not IPv4 or has no host bits (/31 and /32).
func subnetBroadcast(n *net.IPNet) (netip.Addr, bool) {
	ip, mask := n.IP.To4(), n.Mask
	if len(mask) == net.IPv6len {
		mask = mask[12:] // an IPv4 mask in its 16-byte form
	}
	ones, bits := mask.Size()
	if ip == nil || bits != 32 || ones > 30 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i := range b {
		b[i] = ip[i] | ^mask[i]
	}
	return netip.AddrFrom4(b), true
}
