package siteinit

import (
	"fmt"
	"net/netip"
	"strings"
)

// Pool is a DHCP address range, both ends included.
type Pool struct {
	Start, End netip.Addr
}

// String is "START-END", as --pool takes it.
func (p Pool) String() string { return p.Start.String() + "-" + p.End.String() }

// Size is the number of addresses in the pool.
func (p Pool) Size() int { return int(u32(p.End)-u32(p.Start)) + 1 }

// proposedSize is how many addresses a proposed pool has at most: a lab
// of a few dozen machines, with room, and the low addresses of a /24
// left to the site's servers and printers.
const proposedSize = 100

// ProposePool proposes the addresses DHCP hands out on n: from the 100th
// address of the subnet, 100 addresses, in a /24 or larger subnet
// (192.168.77.100-192.168.77.199); the upper half of a smaller one. It
// never includes the subnet's own address, its broadcast address, the
// host's address or the router's: when one of them falls inside, the
// larger part on either side of it is kept. A subnet with no address
// left (a /31, /32, or a /30 holding the host and its router) is an
// error that says what to do.
func ProposePool(n Network) (Pool, error) {
	first, last, ok := hostRange(n.Subnet())
	if !ok {
		return Pool{}, fmt.Errorf("subnet %s of %s has no addresses for machines: give the interface a larger subnet, or use --mode proxy beside the site's DHCP server", n.Subnet(), n.Interface)
	}
	var lo, hi uint32
	if last-first+1 >= 254 {
		lo = first + 99
		hi = min(lo+proposedSize-1, last)
	} else {
		count := last - first + 1
		lo, hi = first+count/2, last
		if count == 1 {
			lo = first
		}
	}
	taken := []uint32{u32(n.Addr.Addr())}
	if n.Router.IsValid() {
		taken = append(taken, u32(n.Router))
	}
	// Cut the range at each taken address, keeping the larger side, then
	// look for room elsewhere in the subnet if nothing is left.
	for _, t := range taken {
		if t < lo || t > hi {
			continue
		}
		switch {
		case t-lo >= hi-t && t > lo:
			hi = t - 1
		case t < hi:
			lo = t + 1
		default:
			lo, hi = 1, 0 // emptied
		}
	}
	if lo > hi {
		// Every candidate was taken: any free address of the subnet.
		for a := first; a <= last; a++ {
			if !contains(taken, a) {
				return Pool{Start: addr(a), End: addr(a)}, nil
			}
		}
		return Pool{}, fmt.Errorf("subnet %s of %s has no address left besides the host's and the router's: give the interface a larger subnet, or use --mode proxy", n.Subnet(), n.Interface)
	}
	return Pool{Start: addr(lo), End: addr(hi)}, nil
}

// ParsePool reads "START-END" (--pool) and checks it against n: both
// ends in the subnet and not its network or broadcast address, in order,
// and neither the host's nor the router's address inside.
func ParsePool(s string, n Network) (Pool, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return Pool{}, fmt.Errorf("pool %q: want START-END, such as 192.168.77.100-192.168.77.199", s)
	}
	start, err1 := netip.ParseAddr(strings.TrimSpace(a))
	end, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || !start.Is4() || !end.Is4() {
		return Pool{}, fmt.Errorf("pool %q: want two IPv4 addresses, START-END", s)
	}
	first, last, ok := hostRange(n.Subnet())
	switch {
	case !ok:
		return Pool{}, fmt.Errorf("pool %q: subnet %s of %s has no addresses for machines", s, n.Subnet(), n.Interface)
	case u32(start) > u32(end):
		return Pool{}, fmt.Errorf("pool %q: the start comes after the end", s)
	case u32(start) < first || u32(end) > last:
		return Pool{}, fmt.Errorf("pool %q: not inside %s's subnet %s (its machines' addresses are %s-%s)", s, n.Interface, n.Subnet(), addr(first), addr(last))
	}
	p := Pool{Start: start, End: end}
	if in(p, n.Addr.Addr()) {
		return Pool{}, fmt.Errorf("pool %q holds this host's address %s on %s", s, n.Addr.Addr(), n.Interface)
	}
	if n.Router.IsValid() && in(p, n.Router) {
		return Pool{}, fmt.Errorf("pool %q holds the router's address %s", s, n.Router)
	}
	return p, nil
}

// hostRange is the first and last address of a subnet that machines may
// have: not the network address, not the broadcast address.
func hostRange(subnet netip.Prefix) (first, last uint32, ok bool) {
	if !subnet.Addr().Is4() || subnet.Bits() > 30 {
		return 0, 0, false
	}
	base := u32(subnet.Addr())
	size := uint32(1) << (32 - subnet.Bits())
	return base + 1, base + size - 2, true
}

func in(p Pool, a netip.Addr) bool {
	return a.Is4() && u32(a) >= u32(p.Start) && u32(a) <= u32(p.End)
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
