package dhcp6d

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/dls-project/dls/plugins/protocol/ifsocket"
	"golang.org/x/net/ipv6"
)

// allServers is All_DHCP_Relay_Agents_and_Servers (RFC 8415 7.1): clients
// on the link send to it.
var allServers = net.ParseIP("ff02::1:2")

// listener is the server's UDP socket: port 547 on one interface, joined
// to ff02::1:2 there. Clients are answered by unicast to the link-local
// address they asked from (its zone is the interface), relays to the
// address they relayed from.
type listener struct {
	pc   *ipv6.PacketConn
	conn net.PacketConn
	name string
	// onlyIf, when not 0, is the one interface whose packets are served:
	// where the socket cannot be bound to the interface (FreeBSD), the
	// others are dropped as they arrive.
	onlyIf int
}

// listen opens the socket on port for ifname (bound to it, or on
// FreeBSD filtered by its index: a second link's clients are not this
// pool's), with a receive buffer of
// rcvbuf bytes, the arrival interface reported with each packet, and the
// multicast group joined. No SO_REUSEPORT: a second server on the same
// port must fail to start, not share the packets.
func listen(ctx context.Context, ifname string, port, rcvbuf int) (*listener, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", ifname, err)
	}
	onlyIf, err := ifsocket.Filter(ifname)
	if err != nil {
		return nil, err
	}
	var sockErr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			if err := ifsocket.Bind(s, ifname); err != nil {
				sockErr = err
				return
			}
			if rcvbuf > 0 {
				ifsocket.SetBuffers(s, rcvbuf)
			}
		})
		if err != nil {
			return err
		}
		return sockErr
	}}
	conn, err := lc.ListenPacket(ctx, "udp6", net.JoinHostPort("::", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen on udp6 port %d: %w", port, err)
	}
	pc := ipv6.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagDst, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("udp6 port %d: IPV6_RECVPKTINFO: %w", port, err)
	}
	if err := pc.JoinGroup(ifi, &net.UDPAddr{IP: allServers}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("join %s on %s: %w", allServers, ifname, err)
	}
	name := "udp6 " + conn.LocalAddr().String() + " (" + ifname + ", " + allServers.String() + ")"
	return &listener{pc: pc, conn: conn, name: name, onlyIf: onlyIf}, nil
}

// write sends r; a link-local destination leaves through r's interface.
func (l *listener) write(r reply) error {
	var cm *ipv6.ControlMessage
	if r.ifIndex != 0 && r.dst.Addr().IsLinkLocalUnicast() {
		cm = &ipv6.ControlMessage{IfIndex: r.ifIndex}
	}
	_, err := l.pc.WriteTo(r.b, cm, net.UDPAddrFromAddrPort(r.dst))
	return err
}

func (l *listener) close() error { return l.conn.Close() }

// serve reads packets until the socket closes and handles each; several
// goroutines serve one socket.
func (s *server) serve(ctx context.Context, l *listener) {
	buf := make([]byte, maxPacket+1) // one more: a longer datagram is oversized
	for {
		n, cm, src, err := l.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if s.logOnce() {
				s.logger.Warn("receive failed", "socket", l.name, "error", err)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		in := packetInfo{conn: l, at: time.Now()}
		if u, ok := src.(*net.UDPAddr); ok {
			in.src = u.AddrPort()
		}
		if cm != nil {
			in.ifIndex = cm.IfIndex
		}
		if l.onlyIf != 0 && in.ifIndex != l.onlyIf {
			continue // not the interface this socket serves
		}
		// A copy: the parsed packet refers to its bytes, and a Reply
		// waiting for its commit outlives this buffer.
		s.handle(ctx, bytes.Clone(buf[:n]), in)
	}
}

// interfaceIdentity returns the interface's MAC (for the server's
// DUID-LL) and its first global or unique-local IPv6 address (invalid
// when it has none).
func interfaceIdentity(name string) (net.HardwareAddr, netip.Addr, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("interface %s: addresses: %w", name, err)
	}
	var global netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() {
				global = ip
				break
			}
		}
	}
	return ifi.HardwareAddr, global, nil
}
