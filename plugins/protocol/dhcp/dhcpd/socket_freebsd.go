package dhcpd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// arrivalOption is the socket option that reports each packet's arrival
// interface.
const arrivalOption = "IP_RECVIF"

// sender writes a listener's replies.
//
// FreeBSD sends 255.255.255.255 out of the first broadcast interface,
// whatever the socket, and ignores an outgoing interface index. The way
// to pick the interface is IP_ONESBCAST (ip(4)): a datagram sent to an
// interface's subnet broadcast address leaves through that interface with
// 255.255.255.255 on the wire. The option applies to every send on the
// socket, and a unicast with it on fails (no interface has that
// broadcast address), so it is on only for the length of one broadcast:
// broadcasts take mu exclusively, unicasts share it.
type sender struct {
	raw syscall.RawConn

	mu sync.RWMutex

	bmu   sync.Mutex
	bcast map[int]netip.Addr // interface index → its subnet broadcast address
}

func newSender(conn net.PacketConn) (*sender, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("IP_ONESBCAST: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("IP_ONESBCAST: %w", err)
	}
	return &sender{raw: raw, bcast: map[int]netip.Addr{}}, nil
}

func (s *sender) write(pc *ipv4.PacketConn, r reply) error {
	if r.ifIndex == 0 || r.dst.Addr() != limitedBroadcast {
		s.mu.RLock()
		defer s.mu.RUnlock()
		_, err := pc.WriteTo(r.b, nil, net.UDPAddrFromAddrPort(r.dst))
		return err
	}
	bcast, err := s.broadcastOf(r.ifIndex)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.oneBroadcast(1); err != nil {
		return err
	}
	_, err = pc.WriteTo(r.b, nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(bcast, r.dst.Port())))
	if oerr := s.oneBroadcast(0); err == nil {
		err = oerr
	}
	return err
}

// oneBroadcast sets IP_ONESBCAST to on.
func (s *sender) oneBroadcast(on int) error {
	var serr error
	if err := s.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_ONESBCAST, on)
	}); err != nil {
		return fmt.Errorf("IP_ONESBCAST: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("IP_ONESBCAST: %w", serr)
	}
	return nil
}

// broadcastOf returns the subnet broadcast address of interface index,
// looked up once.
func (s *sender) broadcastOf(index int) (netip.Addr, error) {
	s.bmu.Lock()
	defer s.bmu.Unlock()
	if a, ok := s.bcast[index]; ok {
		return a, nil
	}
	ifi, err := net.InterfaceByIndex(index)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("broadcast on interface %d: %w", index, err)
	}
	a, err := interfaceBroadcast(ifi)
	if err != nil {
		return netip.Addr{}, err
	}
	s.bcast[index] = a
	return a, nil
}
