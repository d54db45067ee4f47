package dhcpd

import (
	"fmt"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// arrivalOption is the socket option that reports each packet's arrival
// interface.
const arrivalOption = "IP_PKTINFO"

// bindToInterface binds socket s to the interface ifname: the kernel
// delivers only that interface's packets to it.
func bindToInterface(s int, ifname string) error {
	if err := unix.BindToDevice(s, ifname); err != nil {
		return fmt.Errorf("bind to interface %s (SO_BINDTODEVICE): %w", ifname, err)
	}
	return nil
}

// interfaceFilter is 0: SO_BINDTODEVICE already keeps other interfaces'
// packets away.
func interfaceFilter(string) (int, error) { return 0, nil }

// setBuffers sizes socket s's buffers: rcvbuf to receive, half of it to
// send. FORCE passes net.core.rmem_max with CAP_NET_ADMIN; without it,
// take what the kernel allows.
func setBuffers(s, rcvbuf int) {
	if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rcvbuf/2) != nil {
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, rcvbuf/2)
	}
}

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
