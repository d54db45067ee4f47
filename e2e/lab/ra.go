//go:build linux

package lab

import (
	"net"
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
