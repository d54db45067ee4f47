package dhcp6d

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/dls-project/dls/sdk/host"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// Option 61 architectures (RFC 4578 and the IANA registry) the built-in
// boot files cover; the values are option 93's in DHCPv4.
const (
	archBIOS          uint16 = 0
	archEFIIA32       uint16 = 6
	archEFIX64        uint16 = 7
	archEFIBC         uint16 = 9
	archEFIARM32      uint16 = 10
	archEFIARM64      uint16 = 11
	archEFIIA32HTTP   uint16 = 15
	archEFIX64HTTP    uint16 = 16
	archEFIBCHTTP     uint16 = 17
	archEFIARM32HTTP  uint16 = 18
	archEFIARM64HTTP  uint16 = 19
	archUnknownOrNone uint16 = 0xffff
)

// archKeys are the names boot_files accepts, with the option 61 values
// each covers (an HTTP boot variant takes its EFI sibling's file).
var archKeys = map[string][]uint16{
	"bios":      {archBIOS},
	"efi_ia32":  {archEFIIA32, archEFIIA32HTTP},
	"efi_x64":   {archEFIX64, archEFIBC, archEFIX64HTTP, archEFIBCHTTP},
	"efi_arm32": {archEFIARM32, archEFIARM32HTTP},
	"efi_arm64": {archEFIARM64, archEFIARM64HTTP},
}

// defaultBootFile is the iPXE build a firmware of arch chains into (the
// same names as protocol "dhcp"'s).
func defaultBootFile(arch uint16) string {
	switch arch {
	case archEFIIA32, archEFIX64, archEFIBC, archEFIIA32HTTP, archEFIX64HTTP, archEFIBCHTTP:
		return "ipxe.efi"
	case archEFIARM32, archEFIARM64, archEFIARM32HTTP, archEFIARM64HTTP:
		return "snp.efi"
	}
	return "undionly.kpxe"
}

// builtinBootFiles are the iPXE builds the host names by default: a
// decision naming one of them says nothing about the client itself.
var builtinBootFiles = map[string]bool{"undionly.kpxe": true, "ipxe.efi": true, "snp.efi": true, "snponly.efi": true}

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
	return strings.HasPrefix(c.vendorClass, "HTTPClient") || isHTTPArch(c.arch)
}
func (c client) ipxe() bool { return c.userClass == "iPXE" }

func isHTTPArch(a uint16) bool { return a >= archEFIIA32HTTP && a <= 20 }

// bootArch is the architecture that picks the boot file: x64 UEFI when
// none was sent (BIOS PXE ROMs do not speak DHCPv6; iPXE says its arch).
func (c client) bootArch() uint16 {
	if c.arch == archUnknownOrNone {
		return archEFIX64
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
		c.vendorClass = printable(vcs[0].Data[0])
	}
	if ucs := msg.Options.UserClasses(); len(ucs) > 0 {
		c.userClass = printable(ucs[0])
	}
	if as := msg.Options.ArchTypes(); len(as) > 0 {
		c.arch = uint16(as[0])
	} else if rest, ok := strings.CutPrefix(c.vendorClass, "PXEClient:Arch:"); ok && len(rest) >= 5 {
		if n, err := strconv.ParseUint(rest[:5], 10, 16); err == nil {
			c.arch = uint16(n)
		}
	} else if rest, ok := strings.CutPrefix(c.vendorClass, "HTTPClient:Arch:"); ok && len(rest) >= 5 {
		if n, err := strconv.ParseUint(rest[:5], 10, 16); err == nil {
			c.arch = uint16(n)
		}
	}
	if f := msg.Options.FQDN(); f != nil && f.DomainName != nil && len(f.DomainName.Labels) > 0 {
		c.hostname = printable([]byte(strings.SplitN(f.DomainName.Labels[0], ".", 2)[0]))
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

// printable returns b as a string of at most 255 printable ASCII bytes
// (others become '?'), for logs, events and host queries.
func printable(b []byte) string {
	if len(b) > 255 {
		b = b[:255]
	}
	out := []byte(nil)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			if out == nil {
				out = append([]byte(nil), b...)
			}
			out[i] = '?'
		}
	}
	if out == nil {
		return string(b)
	}
	return strings.TrimRight(string(out), "?")
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
	if d.BootFile != "" && !builtinBootFiles[d.BootFile] {
		// The host names one of the built-in files unless the client has
		// one of its own; the config's choice beats only the built-in.
		file = d.BootFile
	}
	if file == "" {
		file = defaultBootFile(arch)
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
