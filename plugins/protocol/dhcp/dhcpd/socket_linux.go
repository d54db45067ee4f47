package dhcpd

import (
	"net"

	"golang.org/x/net/ipv4"
)

// arrivalOption is the socket option that reports each packet's arrival
// interface.
const arrivalOption = "IP_PKTINFO"

// sender writes a listener's replies. On Linux a broadcast names its
// interface in IP_PKTINFO, so it needs no state.
type sender struct{}

func newSender(net.PacketConn) (*sender, error) { return &sender{}, nil }

func (*sender) write(pc *ipv4.PacketConn, r reply) error {
	var cm *ipv4.ControlMessage
	if r.ifIndex != 0 {
		cm = &ipv4.ControlMessage{IfIndex: r.ifIndex}
	}
	_, err := pc.WriteTo(r.b, cm, net.UDPAddrFromAddrPort(r.dst))
	return err
}
