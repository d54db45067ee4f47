package dhcp6d

import (
	"net/netip"
	"strings"

	"github.com/dls-project/dls/plugins/protocol/bootclient"
	"github.com/dls-project/dls/sdk/host"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// archUnknownOrNone stands for a client that sent no architecture.
const archUnknownOrNone = bootclient.ArchUnknownOrNone

// client is what a request says about the machine sending it.
type client struct {
	duid        []byte // option 1, raw
	mac         string // raw 6 bytes; "" when no source tells it
	vendorClass string // option 16, first string ("PXEClient:Arch:00007:...", "HTTPClient:...")
	userClass   string // option 15, first string ("iPXE")
	arch        uint16 // option 61, first; archUnknownOrNone if absent
	hostname    string // option 39, first label
	// from is where the request came from as the host is told it: the
	// relay's link address, or the client's source address.
	from string
}

// firmware reports whether the request comes from boot firmware (PXE or
// UEFI HTTP boot over IPv6, iPXE) rather than an operating system's
// DHCPv6 client.
func (c client) firmware() bool {
	return c.pxe() || c.http() || c.ipxe() || c.arch != archUnknownOrNone
}

func (c client) pxe() bool { return strings.HasPrefix(c.vendorClass, "PXEClient") }
func (c client) http() bool {
	return strings.HasPrefix(c.vendorClass, "HTTPClient") || bootclient.HTTPArch(c.arch)
}
func (c client) ipxe() bool { return c.userClass == "iPXE" }

// bootArch is the architecture that picks the boot file: x64 UEFI when
// none was sent (BIOS PXE ROMs do not speak DHCPv6; iPXE says its arch).
func (c client) bootArch() uint16 {
	if c.arch == archUnknownOrNone {
		return bootclient.ArchEFIX64
	}
	return c.arch
}

// clientOf reads the client's identity from msg, relayed by the relays
// in path (outermost first; none for a client on the server's link), and
// arriving from src.
func clientOf(msg *dhcpv6.Message, path []*dhcpv6.RelayMessage, src netip.Addr) client {
	c := client{arch: archUnknownOrNone}
	if o := msg.Options.GetOne(dhcpv6.OptionClientID); o != nil {
		c.duid = o.ToBytes()
	}
	if vcs := msg.Options.VendorClasses(); len(vcs) > 0 && len(vcs[0].Data) > 0 {
		c.vendorClass = bootclient.Printable(vcs[0].Data[0])
	}
	if ucs := msg.Options.UserClasses(); len(ucs) > 0 {
		c.userClass = bootclient.Printable(ucs[0])
	}
	if as := msg.Options.ArchTypes(); len(as) > 0 {
		c.arch = uint16(as[0])
	} else if n, ok := bootclient.VendorArch(c.vendorClass); ok {
		c.arch = n
	}
	if f := msg.Options.FQDN(); f != nil && f.DomainName != nil && len(f.DomainName.Labels) > 0 {
		c.hostname = bootclient.Printable([]byte(strings.SplitN(f.DomainName.Labels[0], ".", 2)[0]))
	}
	peer := src
	if n := len(path); n > 0 {
		inner := path[n-1] // the relay on the client's link
		if a, ok := netip.AddrFromSlice(inner.PeerAddr); ok {
			peer = a.Unmap()
		}
		if a, ok := netip.AddrFromSlice(inner.LinkAddr); ok && !a.IsUnspecified() {
			c.from = a.Unmap().String()
		}
	} else if src.IsValid() && !src.IsLinkLocalUnicast() {
		c.from = src.WithZone("").String()
	}
	c.mac = macOf(c.duid, path, peer)
	return c
}

// macOf finds the client's MAC, which keys its lease and the host's client
// table: the client link-layer address a relay on its link added (RFC
// 6939), else the link-layer address in its DUID (DUID-LLT, DUID-LL),
// else the interface identifier of its link-local address when that is a
// modified EUI-64 (RFC 4291 appendix A). "" when none tells it.
func macOf(duid []byte, path []*dhcpv6.RelayMessage, peer netip.Addr) string {
	if n := len(path); n > 0 {
		if ht, lla := path[n-1].Options.ClientLinkLayerAddress(); ht == iana.HWTypeEthernet && len(lla) == 6 {
			return string(lla)
		}
	}
	if d, err := dhcpv6.DUIDFromBytes(duid); err == nil {
		switch d := d.(type) {
		case *dhcpv6.DUIDLLT:
			if d.HWType == iana.HWTypeEthernet && len(d.LinkLayerAddr) == 6 {
				return string(d.LinkLayerAddr)
			}
		case *dhcpv6.DUIDLL:
			if d.HWType == iana.HWTypeEthernet && len(d.LinkLayerAddr) == 6 {
				return string(d.LinkLayerAddr)
			}
		}
	}
	if peer.Is6() && peer.IsLinkLocalUnicast() {
		b := peer.As16()
		if b[11] == 0xff && b[12] == 0xfe {
			return string([]byte{b[8] ^ 0x02, b[9], b[10], b[13], b[14], b[15]})
		}
	}
	return ""
}

// bootURL is option 59 for a known firmware client d: its own boot script
// URL once iPXE runs; else the first-stage file for its architecture (the
// client's own when the host set one, else the config's, else the
// built-in), as an http:// URL for UEFI HTTP boot and a tftp:// one on
// server for PXE. "" means nothing to boot.
func (s *settings) bootURL(c client, d host.Decision, server netip.Addr) string {
	if c.ipxe() {
		return s.rebase(d.ScriptURL)
	}
	arch := c.bootArch()
	file := s.bootFiles[arch]
	if d.BootFile != "" && !bootclient.Builtin(d.BootFile) {
		// The host names one of the built-in files unless the client has
		// one of its own; the config's choice beats only the built-in.
		file = d.BootFile
	}
	if file == "" {
		file = bootclient.DefaultBootFile(arch)
	}
	if strings.Contains(file, "://") {
		return file
	}
	if c.http() {
		base := s.HTTPBootURL
		if base == "" {
			script := s.rebase(d.ScriptURL)
			i := strings.Index(script, "/boot/")
			if i < 0 {
				return ""
			}
			base = script[:i] + "/boot/files/"
		}
		return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(file, "/")
	}
	if !server.IsValid() {
		return ""
	}
	return "tftp://" + bracket(server) + "/" + strings.TrimLeft(file, "/")
}

// rebase gives a host URL the config's boot_url as scheme, host and port.
func (s *settings) rebase(u string) string {
	if s.urlBase == "" || u == "" {
		return u
	}
	rest, ok := strings.CutPrefix(u, "http://")
	if !ok {
		rest, ok = strings.CutPrefix(u, "https://")
	}
	if !ok {
		return u
	}
	i := strings.Index(rest, "/")
	if i < 0 {
		return s.urlBase
	}
	return s.urlBase + rest[i:]
}

// bracket writes an IPv6 address as URLs hold it: [fd00::1].
func bracket(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	return "[" + a.WithZone("").String() + "]"
}

// bootOptions adds the boot answer for firmware client c to resp: option
// 59 (the boot-file URL) and option 16 with the class the UEFI
// specification wants echoed (PXEClient or HTTPClient). It reports false
// when there is nothing to boot.
func bootOptions(resp *dhcpv6.Message, c client, url string) bool {
	if url == "" {
		return false
	}
	resp.AddOption(dhcpv6.OptBootFileURL(url))
	switch {
	case c.http():
		resp.AddOption(&dhcpv6.OptVendorClass{EnterpriseNumber: enterpriseIntel, Data: [][]byte{[]byte("HTTPClient")}})
	case c.pxe():
		resp.AddOption(&dhcpv6.OptVendorClass{EnterpriseNumber: enterpriseIntel, Data: [][]byte{[]byte("PXEClient")}})
	}
	return true
}

// enterpriseIntel is the enterprise number of the PXE and HTTP boot vendor
// classes (UEFI 2.x, "DHCP6 options for HTTP Boot").
const enterpriseIntel = 343
