package preflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// System is what the checks read of the machine besides files: its
// interfaces, whether a port can be bound, and name lookups. Host is the
// real one; tests fake it where the machine cannot be arranged.
type System interface {
	// Interfaces lists the machine's network interfaces.
	Interfaces() ([]Interface, error)
	// Bind binds network ("tcp" or "udp") address addr, on device when
	// it is not "" (as the DHCP plugin binds: SO_BINDTODEVICE on Linux, the
	// wildcard address on an existing interface on FreeBSD), and lets
	// go at once.
	Bind(ctx context.Context, network, addr, device string) error
	// LookupHost resolves a host name.
	LookupHost(ctx context.Context, name string) ([]netip.Addr, error)
}

// Interface is one network interface.
type Interface struct {
	Name string
	Up   bool
	// Addrs are its addresses with their prefix lengths.
	Addrs []netip.Prefix
}

// has reports whether a is one of the interface's addresses.
func (i Interface) has(a netip.Addr) bool {
	for _, p := range i.Addrs {
		if p.Addr() == a.Unmap() {
			return true
		}
	}
	return false
}

// Host is the machine the checks run on.
type Host struct{}

// Interfaces implements System.
func (Host) Interfaces() ([]Interface, error) {
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make([]Interface, 0, len(ifcs))
	for _, ifc := range ifcs {
		i := Interface{Name: ifc.Name, Up: ifc.Flags&net.FlagUp != 0}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			bits, _ := ipn.Mask.Size()
			i.Addrs = append(i.Addrs, netip.PrefixFrom(ip.Unmap(), bits))
		}
		out = append(out, i)
	}
	return out, nil
}

// Bind implements System.
func (Host) Bind(ctx context.Context, network, addr, device string) error {
	lc := net.ListenConfig{}
	if device != "" {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = bindToDevice(int(fd), device) }); err != nil {
				return err
			}
			return serr
		}
	}
	switch network {
	case "tcp":
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return l.Close()
	case "udp":
		// udp4 unless the address is IPv6 ("[fd00::1]:69"): the DHCP
		// plugin's ports are IPv4's, and an IPv6 listener's address
		// cannot bind as udp4.
		family := "udp4"
		if host, _, err := net.SplitHostPort(addr); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
				family = "udp6"
			}
		}
		c, err := lc.ListenPacket(ctx, family, addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	return fmt.Errorf("bind %s %s: unknown network", network, addr)
}

// LookupHost implements System.
func (Host) LookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

// inUse, denied and notLocal classify a failed bind.
func inUse(err error) bool    { return errors.Is(err, syscall.EADDRINUSE) }
func denied(err error) bool   { return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) }
func notLocal(err error) bool { return errors.Is(err, syscall.EADDRNOTAVAIL) }
