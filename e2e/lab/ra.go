//go:build linux

package lab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Router stands in for a site's IPv6 router on one bridge: it answers
// router solicitations with a router advertisement that offers nothing
// (no prefix, no default route, no DHCPv6).
//
// Why: iPXE configures IPv6 beside DHCP ("Configuring (net0 ...)") and,
// on a segment where no router ever answers its solicitations, waits
// about 16 s for one before it moves on. That wait is iPXE's and the
// network's, the same whichever DHCP, TFTP and iSCSI servers the segment
// has; on a segment with a router, "Configuring" ends as soon as DHCP
// does. Enabled(false) makes the segment router-less again.
type Router struct {
	conn    *icmp.PacketConn
	enabled atomic.Bool
	// Answered counts advertisements sent.
	Answered atomic.Int64
}

// Router starts a router advertiser on bridge in ns, enabled, stopped in
// Close.
func (l *Lab) Router(ns *NS, bridge string) (*Router, error) {
	return l.router(ns, bridge, netip.Prefix{})
}

// ManagedRouter is Router for an IPv6-only segment whose addresses come
// from DHCPv6, as radvd with "AdvManagedFlag on" and a prefix with
// "AdvAutonomous off" sends: the Managed flag (clients ask DHCPv6 for an
// address) and prefix, on-link, not for autoconfiguration. (iPXE needs
// only the flag: without the prefix it takes its DHCPv6 address as a /64
// all the same; the prefix is there because a real router sends one.)
func (l *Lab) ManagedRouter(ns *NS, bridge string, prefix netip.Prefix) (*Router, error) {
	if !prefix.Addr().Is6() || prefix.Bits() != 64 {
		return nil, fmt.Errorf("managed router on %s: prefix %s is not an IPv6 /64", bridge, prefix)
	}
	return l.router(ns, bridge, prefix.Masked())
}

func (l *Lab) router(ns *NS, bridge string, prefix netip.Prefix) (*Router, error) {
	r := &Router{}
	var ifi *net.Interface
	err := ns.Do(func() error {
		var err error
		if ifi, err = net.InterfaceByName(bridge); err != nil {
			return err
		}
		r.conn, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	})
	if err != nil {
		return nil, err
	}
	p := r.conn.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	_ = p.SetICMPFilter(&f)
	if err := p.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}); err != nil {
		r.conn.Close()
		return nil, err
	}
	_ = p.SetMulticastHopLimit(255)
	_ = p.SetHopLimit(255)
	_ = p.SetMulticastInterface(ifi)
	_ = p.SetControlMessage(ipv6.FlagInterface, true)
	r.enabled.Store(true)
	l.OnClose(func() { r.conn.Close() })

	// Cur hop limit 64, flags 0 (no DHCPv6), router lifetime 0 (not a
	// default router), reachable time and retrans timer 0, then the
	// source link-layer address option.
	body := append([]byte{64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1}, ifi.HardwareAddr...)
	if prefix.IsValid() {
		body[1] = 0x80 // M: addresses from DHCPv6
		// Prefix information (RFC 4861 4.6.2): type 3, 4 octets x 8,
		// length, flags L (on-link; A off), valid and preferred
		// lifetimes, reserved, the prefix.
		pi := make([]byte, 32)
		pi[0], pi[1], pi[2], pi[3] = 3, 4, byte(prefix.Bits()), 0x80
		binary.BigEndian.PutUint32(pi[4:], 86400)
		binary.BigEndian.PutUint32(pi[8:], 14400)
		a := prefix.Addr().As16()
		copy(pi[16:], a[:])
		body = append(body, pi...)
	}
	ra, _ := (&icmp.Message{Type: ipv6.ICMPTypeRouterAdvertisement, Body: &icmp.RawBody{Data: body}}).Marshal(nil)
	dst := &net.IPAddr{IP: net.ParseIP("ff02::1"), Zone: ifi.Name}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, cm, _, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 1 || buf[0] != byte(ipv6.ICMPTypeRouterSolicitation) || cm == nil || cm.IfIndex != ifi.Index || !r.enabled.Load() {
				continue
			}
			if _, err := p.WriteTo(ra, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifi.Index}, dst); err == nil {
				r.Answered.Add(1)
			}
		}
	}()
	return r, nil
}

// Enable turns the advertisements on or off.
func (r *Router) Enable(on bool) { r.enabled.Store(on) }
