// Package wol wakes machines with Wake-on-LAN: a UDP broadcast of the
// "magic packet" (six 0xFF bytes, then the target's MAC sixteen times) to
// the discard port of the machine's segment. A sleeping NIC matches the
// pattern anywhere in the frame, so the UDP header around it is irrelevant.
package wol

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// PacketSize is the length of a magic packet: 6 + 16×6 bytes.
const PacketSize = 102

// DefaultPort is the UDP port magic packets go to (discard).
const DefaultPort = 9

// MagicPacket returns the magic packet for mac, which must be a 48-bit
// MAC in any spelling net.ParseMAC accepts.
func MagicPacket(mac string) ([]byte, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("wake-on-lan: %w", err)
	}
	if len(hw) != 6 {
		return nil, fmt.Errorf("wake-on-lan: mac %s: want a 48-bit MAC", mac)
	}
	p := make([]byte, 0, PacketSize)
	for range 6 {
		p = append(p, 0xff)
	}
	for range 16 {
		p = append(p, hw...)
	}
	return p, nil
}

// Sender sends magic packets. The zero Sender broadcasts to
// 255.255.255.255:9, which reaches the segments the host's default route
// and the kernel pick; list Segments to reach a machine on another of the
// host's segments by its directed broadcast address instead.
type Sender struct {
	// Segments are the IPv4 networks the host boots machines on. A machine
	// whose address lies in one of them is woken through that network's
	// directed broadcast address (10.0.5.255 for 10.0.5.0/24).
	Segments []netip.Prefix
	// Broadcast is where packets go for a machine without an address or
	// outside every segment: "host:port"; empty means 255.255.255.255:9.
	Broadcast string
	// Port is the UDP port of directed broadcasts; 0 means 9.
	Port int
	// Copies is how many copies of the packet to send (UDP may drop one);
	// 0 means 3.
	Copies int
}

// Wake sends the magic packet for mac toward addr's segment (addr may be
// the zero Addr when the machine's address is unknown).
func (s *Sender) Wake(ctx context.Context, mac string, addr netip.Addr) error {
	p, err := MagicPacket(mac)
	if err != nil {
		return err
	}
	target := s.Target(addr)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", target)
	if err != nil {
		return fmt.Errorf("wake %s via %s: %w", mac, target, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	copies := s.Copies
	if copies <= 0 {
		copies = 3
	}
	for range copies {
		if _, err := conn.Write(p); err != nil {
			return fmt.Errorf("wake %s via %s: %w", mac, target, err)
		}
	}
	return nil
}

// Target returns the "host:port" a packet for a machine at addr goes to.
func (s *Sender) Target(addr netip.Addr) string {
	port := s.Port
	if port <= 0 {
		port = DefaultPort
	}
	addr = addr.Unmap()
	if addr.Is4() {
		for _, p := range s.Segments {
			p = p.Masked()
			if p.Addr().Is4() && p.Contains(addr) && p.Bits() < 31 {
				return net.JoinHostPort(directedBroadcast(p).String(), strconv.Itoa(port))
			}
		}
	}
	if s.Broadcast != "" {
		return s.Broadcast
	}
	return net.JoinHostPort("255.255.255.255", strconv.Itoa(DefaultPort))
}

// directedBroadcast returns the last address of an IPv4 prefix.
func directedBroadcast(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
