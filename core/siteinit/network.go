package siteinit

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
)

// Network is the LAN DLS serves, as seen from this machine's interface.
type Network struct {
	// Interface is the interface's name ("br0").
	Interface string
	// Addr is the host's IPv4 address on it, with the subnet's prefix
	// length (192.168.77.1/24).
	Addr netip.Prefix
	// Router is the default gateway reached through the interface; not
	// valid when the LAN has none (an isolated lab network).
	Router netip.Addr
}

// Subnet is the network's masked prefix (192.168.77.0/24).
func (n Network) Subnet() netip.Prefix { return n.Addr.Masked() }

// Netmask is the subnet mask in dotted form (255.255.255.0).
func (n Network) Netmask() string {
	m := net.CIDRMask(n.Addr.Bits(), 32)
	return net.IP(m).String()
}

// ReadNetwork reads interface name's first IPv4 address and prefix, and
// its router from the kernel's routing table (/proc/net/route).
func ReadNetwork(name string) (Network, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return Network{}, fmt.Errorf("interface %s: %w", name, err)
	}
	addr, ok := ipv4Of(ifc)
	if !ok {
		return Network{}, fmt.Errorf("interface %s has no IPv4 address: give it one (ip addr add 192.168.77.1/24 dev %s) first", name, name)
	}
	n := Network{Interface: name, Addr: addr}
	if f, err := os.Open("/proc/net/route"); err == nil {
		defer f.Close()
		if r, err := DefaultRouter(f, name); err == nil {
			n.Router = r
		}
	}
	return n, nil
}

// FirstInterface names the first interface that is up, not loopback, and
// has an IPv4 address: the one dls init serves when none is named and
// nobody can be asked.
func FirstInterface() (string, error) {
	ifcs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if _, ok := ipv4Of(&ifc); ok {
			return ifc.Name, nil
		}
	}
	return "", errors.New("no interface is up with an IPv4 address besides loopback: name one with --interface")
}

// Candidates lists the interfaces that are up with an IPv4 address, for
// the interactive question; loopback last.
func Candidates() ([]Network, error) {
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var out, loop []Network
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		if a, ok := ipv4Of(&ifc); ok {
			n := Network{Interface: ifc.Name, Addr: a}
			if ifc.Flags&net.FlagLoopback != 0 {
				loop = append(loop, n)
			} else {
				out = append(out, n)
			}
		}
	}
	return append(out, loop...), nil
}

func ipv4Of(ifc *net.Interface) (netip.Prefix, bool) {
	addrs, err := ifc.Addrs()
	if err != nil {
		return netip.Prefix{}, false
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		bits, _ := ipn.Mask.Size()
		return netip.PrefixFrom(ip.Unmap(), bits), true
	}
	return netip.Prefix{}, false
}

// DefaultRouter finds the gateway of the default route through iface in
// a /proc/net/route table: lines of Iface, Destination, Gateway, Flags
// ... with addresses in host byte order hex (little-endian on the
// machines DLS runs on). It reports an error when there is none.
func DefaultRouter(table io.Reader, iface string) (netip.Addr, error) {
	sc := bufio.NewScanner(table)
	first := true
	for sc.Scan() {
		if first { // the header
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] != iface || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		gw, err := hex.DecodeString(f[2])
		if err != nil || len(gw) != 4 {
			continue
		}
		a := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, binary.LittleEndian.Uint32(gw))))
		if a.IsUnspecified() {
			continue // a default route with no gateway (point-to-point)
		}
		return a, nil
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("read routes: %w", err)
	}
	return netip.Addr{}, fmt.Errorf("no default route through %s", iface)
}
