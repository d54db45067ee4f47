package dhcpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// listener is one UDP socket of the server: port 67, or the proxyDHCP
// port.
//
// Clients without an address are answered by broadcast to
// 255.255.255.255:68 out of the interface the request came in on (the
// IP_PKTINFO interface index, and SO_BINDTODEVICE when interface is set).
// A unicast to the offered address would need an ARP entry for a host
// that does not have the address yet (a raw or packet socket, or an
// SIOCSARP per reply); the broadcast needs neither, works the same in a
// network namespace as on a real NIC, and every DHCP client listens for
// it. Relayed requests go back to the relay (giaddr:67) and renewals to
// the client's own address, by plain unicast.
type listener struct {
	pc    *ipv4.PacketConn
	conn  net.PacketConn
	proxy bool
	name  string
}

// listen opens a UDP socket on port, bound to ifname when it is set, with
// a receive buffer of rcvbuf bytes, broadcasts allowed, and the arrival
// interface reported with each packet. No SO_REUSEPORT: a second server
// on the same port must fail to start, not share the packets.
func listen(ctx context.Context, ifname string, port, rcvbuf int, proxy bool) (*listener, error) {
	var sockErr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
				sockErr = fmt.Errorf("SO_BROADCAST: %w", err)
				return
			}
			if ifname != "" {
				if err := unix.BindToDevice(s, ifname); err != nil {
					sockErr = fmt.Errorf("bind to interface %s (SO_BINDTODEVICE): %w", ifname, err)
					return
				}
			}
			if rcvbuf > 0 {
				// FORCE passes net.core.rmem_max with CAP_NET_ADMIN;
				// without it, take what the kernel allows.
				if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
					_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
				}
				if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rcvbuf/2) != nil {
					_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, rcvbuf/2)
				}
			}
		})
		if err != nil {
			return err
		}
		return sockErr
	}}
	conn, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen on udp port %d: %w", port, err)
	}
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("udp port %d: IP_PKTINFO: %w", port, err)
	}
	name := "udp " + conn.LocalAddr().String()
	if ifname != "" {
		name += " (" + ifname + ")"
	}
	return &listener{pc: pc, conn: conn, proxy: proxy, name: name}, nil
}

// write sends r: a broadcast through r's interface, anything else where
// routing sends it.
func (l *listener) write(r reply) error {
	var cm *ipv4.ControlMessage
	if r.ifIndex != 0 {
		cm = &ipv4.ControlMessage{IfIndex: r.ifIndex}
	}
	_, err := l.pc.WriteTo(r.b, cm, net.UDPAddrFromAddrPort(r.dst))
	return err
}

func (l *listener) close() error { return l.conn.Close() }

// readBatch is how many datagrams one receive may return (recvmmsg): in
// a storm, one system call instead of one per packet.
const readBatch = 16

// serve reads packets until the socket closes and handles each; several
// goroutines serve one socket (reads take turns, handling overlaps).
func (s *server) serve(ctx context.Context, l *listener, locals *interfaceAddrs) {
	msgs := make([]ipv4.Message, readBatch)
	for i := range msgs {
		// One more byte than the largest packet: a longer datagram is oversized.
		msgs[i].Buffers = [][]byte{make([]byte, maxPacket+1)}
		msgs[i].OOB = ipv4.NewControlMessage(ipv4.FlagInterface | ipv4.FlagDst)
	}
	var cm ipv4.ControlMessage
	for {
		n, err := l.pc.ReadBatch(msgs, 0)
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
		at := time.Now()
		for i := range msgs[:n] {
			m := &msgs[i]
			in := packetInfo{conn: l, proxy: l.proxy, at: at}
			if u, ok := m.Addr.(*net.UDPAddr); ok {
				in.src = u.AddrPort()
			}
			cm = ipv4.ControlMessage{}
			if m.NN > 0 && cm.Parse(m.OOB[:m.NN]) == nil {
				in.ifIndex = cm.IfIndex
				in.locals = locals.get(cm.IfIndex)
			}
			// A copy: the parsed packet refers to its bytes, and an ACK
			// waiting for its commit outlives this buffer.
			s.handle(ctx, bytes.Clone(m.Buffers[0][:m.N]), in)
		}
	}
}

// interfaceAddrs caches the IPv4 addresses of interfaces by index: the
// subnets of clients that are not relayed.
type interfaceAddrs struct {
	mu sync.RWMutex
	m  map[int][]ip4
}

func newInterfaceAddrs() *interfaceAddrs { return &interfaceAddrs{m: map[int][]ip4{}} }

func (c *interfaceAddrs) get(index int) []ip4 {
	if index == 0 {
		return nil
	}
	c.mu.RLock()
	as, ok := c.m[index]
	c.mu.RUnlock()
	if ok {
		return as
	}
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		as = interfaceIPv4(ifi)
	}
	c.mu.Lock()
	c.m[index] = as
	c.mu.Unlock()
	return as
}

func interfaceIPv4(ifi *net.Interface) []ip4 {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	var out []ip4
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if v := ip4FromIP(n.IP); v != 0 {
				out = append(out, v)
			}
		}
	}
	return out
}

// interfaceAddress returns the first IPv4 address of the interface name.
func interfaceAddress(name string) (ip4, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("interface %s: %w", name, err)
	}
	as := interfaceIPv4(ifi)
	if len(as) == 0 {
		return 0, fmt.Errorf("interface %s has no IPv4 address: set server_ip", name)
	}
	return as[0], nil
}
