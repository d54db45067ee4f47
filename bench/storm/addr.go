//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// addrs puts the machines' leased addresses on the machines' interface
// (vcli) and takes them off again, as a real machine configures the
// address its DHCPACK gave it: its TFTP, HTTP and iSCSI traffic then
// leaves from that address, which is what the host binds a client's boot
// to. It talks rtnetlink directly (one socket, one request at a time):
// a thousand `ip addr add` processes in a storm would cost more CPU than
// the machines' whole DHCP.
type addrs struct {
	ifindex   int
	prefixLen int

	mu   sync.Mutex
	fd   int
	seq  uint32
	held map[string]string // address → MAC of the machine that holds it
}

// openAddrs opens rtnetlink for interface iface; addresses go on it with
// prefixLen (the segment's, so they join the interface's subnet).
func openAddrs(iface string, prefixLen int) (*addrs, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("machines' interface %s: %w", iface, err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("rtnetlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("rtnetlink bind: %w", err)
	}
	return &addrs{ifindex: ifi.Index, prefixLen: prefixLen, fd: fd, held: map[string]string{}}, nil
}

// acquire puts ip on the interface for mac. An address another machine
// holds is an error (two machines ACKed one address: the storm reports
// duplicates too); one mac already holds is kept.
func (a *addrs) acquire(ip net.IP, mac string) error {
	ip4 := ip.To4()
	if ip4 == nil {
		return fmt.Errorf("leased address %s: not IPv4", ip)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch owner, ok := a.held[ip4.String()]; {
	case ok && owner == mac:
		return nil
	case ok:
		return fmt.Errorf("leased address %s: already held by %s", ip4, owner)
	}
	if err := a.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, ip4); err != nil {
		return fmt.Errorf("add %s/%d to the machines' interface: %w", ip4, a.prefixLen, err)
	}
	a.held[ip4.String()] = mac
	return nil
}

// release takes ip off the interface if mac holds it.
func (a *addrs) release(ip net.IP, mac string) error {
	ip4 := ip.To4()
	if ip4 == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.held[ip4.String()] != mac {
		return nil
	}
	delete(a.held, ip4.String())
	if err := a.request(unix.RTM_DELADDR, 0, ip4); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("delete %s from the machines' interface: %w", ip4, err)
	}
	return nil
}

// releaseAll takes every address it added off the interface; it returns
// how many and the first error.
func (a *addrs) releaseAll() (int, error) {
	a.mu.Lock()
	held := make(map[string]string, len(a.held))
	for k, v := range a.held {
		held[k] = v
	}
	a.mu.Unlock()
	var first error
	for ip, mac := range held {
		if err := a.release(net.ParseIP(ip), mac); err != nil && first == nil {
			first = err
		}
	}
	return len(held), first
}

// Close takes every address off and closes the socket.
func (a *addrs) Close() error {
	_, err := a.releaseAll()
	a.mu.Lock()
	defer a.mu.Unlock()
	unix.Close(a.fd)
	return err
}

// request sends one RTM_NEWADDR / RTM_DELADDR for ip and waits for the
// kernel's acknowledgement. Called with a.mu held.
func (a *addrs) request(typ uint16, flags uint16, ip net.IP) error {
	a.seq++
	// nlmsghdr, ifaddrmsg, then IFA_LOCAL and IFA_ADDRESS (4 bytes each,
	// so every attribute is already 4-byte aligned).
	const attrLen = unix.SizeofRtAttr + 4
	n := unix.SizeofNlMsghdr + unix.SizeofIfAddrmsg + 2*attrLen
	b := make([]byte, n)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(n))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	ne.PutUint32(b[8:], a.seq)
	o := unix.SizeofNlMsghdr
	b[o] = unix.AF_INET
	b[o+1] = byte(a.prefixLen)
	b[o+2] = 0 // flags
	b[o+3] = unix.RT_SCOPE_UNIVERSE
	ne.PutUint32(b[o+4:], uint32(a.ifindex))
	o += unix.SizeofIfAddrmsg
	for _, t := range []uint16{unix.IFA_LOCAL, unix.IFA_ADDRESS} {
		ne.PutUint16(b[o:], attrLen)
		ne.PutUint16(b[o+2:], t)
		copy(b[o+4:], ip)
		o += attrLen
	}
	if err := unix.Sendto(a.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	for {
		m, _, err := unix.Recvfrom(a.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:m])
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if msg.Header.Seq != a.seq || msg.Header.Type != unix.NLMSG_ERROR {
				continue // an answer to an earlier request that gave up
			}
			if len(msg.Data) < 4 {
				return errors.New("short netlink error message")
			}
			if code := int32(ne.Uint32(msg.Data)); code != 0 {
				return syscall.Errno(-code)
			}
			return nil
		}
	}
}
