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

	"github.com/dls-project/dls/plugins/protocol/ifsocket"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// listener is one UDP socket of the server: port 67, or the proxyDHCP
// port.
//
// Clients without an address are answered by broadcast to
// 255.255.255.255:68 out of the interface the request came in on (the
// interface index reported with each packet). A unicast to the offered
// address would need an ARP entry for a host that does not have the
// address yet (a raw or packet socket, or an SIOCSARP per reply); the
// broadcast needs neither, works the same in a network namespace as on a
// real NIC, and every DHCP client listens for it. Relayed requests go back
// to the relay (giaddr:67) and renewals to the client's own address, by
// plain unicast. How the socket is bound to an interface and how a
// broadcast picks its interface differ by platform: socket_linux.go,
// socket_freebsd.go.
type listener struct {
	pc    *ipv4.PacketConn
	conn  net.PacketConn
	proxy bool
	name  string
	// onlyIf, when not 0, is the one interface whose packets are served:
	// where the socket cannot be bound to the interface (FreeBSD), the
	// others are dropped as they arrive.
	onlyIf int
	send   *sender
}

// listen opens a UDP socket on port, for the interface ifname when it is
// set, with a receive buffer of rcvbuf bytes, broadcasts allowed, and the
// arrival interface reported with each packet. No SO_REUSEPORT: a second
// server on the same port must fail to start, not share the packets.
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
				if err := ifsocket.Bind(s, ifname); err != nil {
					sockErr = err
					return
				}
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
	conn, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen on udp port %d: %w", port, err)
	}
	pc := ipv4.NewPacketConn(conn)
	if err := pc.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("udp port %d: arrival interface (%s): %w", port, arrivalOption, err)
	}
	name := "udp " + conn.LocalAddr().String()
	l := &listener{pc: pc, conn: conn, proxy: proxy, name: name}
	if ifname != "" {
		l.name += " (" + ifname + ")"
		if l.onlyIf, err = ifsocket.Filter(ifname); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if l.send, err = newSender(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("udp port %d: %w", port, err)
	}
	return l, nil
}

// write sends r: a broadcast through r's interface, anything else where
// routing sends it.
func (l *listener) write(r reply) error { return l.send.write(l.pc, r) }

func (l *listener) close() error { return l.conn.Close() }

// readBatch is how many datagrams one receive may return (recvmmsg on
// Linux): in a storm, one system call instead of one per packet. Elsewhere
// x/net's ReadBatch returns one datagram per call (recvmsg).
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
			}
			if l.onlyIf != 0 && in.ifIndex != l.onlyIf {
				continue // not the interface this socket serves
			}
			in.locals = locals.get(in.ifIndex)
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
