package dhcpd

import (
	"encoding/binary"
	"strings"

	"github.com/dls-project/dls/plugins/protocol/bootclient"
	"github.com/dls-project/dls/sdk/host"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// archUnknownOrNone stands for a client that sent no architecture.
const archUnknownOrNone = bootclient.ArchUnknownOrNone

// client is what a request says about the machine sending it.
type client struct {
	vendorClass string // option 60
	userClass   string // option 77
	arch        uint16 // option 93 (or from option 60); archUnknownOrNone if absent
	uuid        []byte // option 97
	hostname    string // option 12
	// from is where the request came from as the host is told it (Query.Peer):
	// its relay (giaddr), or its source address when it has one (a
	// renewal); "" for a local broadcast from 0.0.0.0.
	from string
}

// firmware reports whether the request comes from boot firmware (PXE ROM,
// UEFI HTTP boot, iPXE) rather than an operating system's DHCP client.
func (c client) firmware() bool {
	return c.pxe() || c.http() || c.ipxe() || c.arch != archUnknownOrNone
}

func (c client) pxe() bool  { return strings.HasPrefix(c.vendorClass, "PXEClient") }
func (c client) http() bool { return strings.HasPrefix(c.vendorClass, "HTTPClient") }
func (c client) ipxe() bool { return c.userClass == "iPXE" }

// bootArch is the architecture that picks the boot file: BIOS when none
// was sent.
func (c client) bootArch() uint16 {
	if c.arch == archUnknownOrNone {
		return bootclient.ArchBIOS
	}
	return c.arch
}

// clientOf reads the client's identity options.
func clientOf(req *dhcpv4.DHCPv4) client {
	c := client{
		vendorClass: bootclient.Printable(req.Options.Get(dhcpv4.OptionClassIdentifier)),
		arch:        archUnknownOrNone,
		uuid:        req.Options.Get(dhcpv4.OptionClientMachineIdentifier),
		hostname:    bootclient.Printable(req.Options.Get(dhcpv4.OptionHostName)),
	}
	if uc := req.Options.Get(dhcpv4.OptionUserClassInformation); len(uc) > 0 {
		// iPXE sends the bare string "iPXE"; RFC 3004 clients send
		// length-prefixed strings: take the first.
		if int(uc[0])+1 <= len(uc) && uc[0] > 0 && uc[0] < 32 && !isText(uc[:1]) {
			c.userClass = bootclient.Printable(uc[1 : 1+int(uc[0])])
		} else {
			c.userClass = bootclient.Printable(uc)
		}
	}
	if a := req.Options.Get(dhcpv4.OptionClientSystemArchitectureType); len(a) >= 2 {
		c.arch = binary.BigEndian.Uint16(a)
	} else if n, ok := bootclient.VendorArch(c.vendorClass); ok {
		c.arch = n
	}
	return c
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// bootFile is what a known firmware client d boots next: its own boot
// script URL once iPXE runs, else the first-stage file for its
// architecture (shim for EFI x64 when d's loader is shim, else the
// client's own when the host set one, else the config's, else the
// built-in), as a URL for UEFI HTTP boot. "" means
// nothing to boot.
func (s *settings) bootFile(c client, d host.Decision) string {
	if c.ipxe() {
		return d.ScriptURL
	}
	arch := c.bootArch()
	file := s.bootFiles[arch]
	switch {
	case d.Loader == host.LoaderShim && bootclient.ShimArch(arch):
		// The signed chain for Secure Boot: shim, then GRUB from the same
		// server. boot_files names iPXE builds; it does not apply.
		file = host.ShimBootFile
	case d.BootFile != "" && !bootclient.Builtin(d.BootFile):
		// The host names one of the built-in files unless the client has
		// one of its own; the config's choice beats only the built-in.
		file = d.BootFile
	}
	if file == "" {
		file = bootclient.DefaultBootFile(arch)
	}
	if !c.http() || strings.Contains(file, "://") {
		return file
	}
	base := s.HTTPBootURL
	if base == "" {
		i := strings.Index(d.ScriptURL, "/boot/")
		if i < 0 {
			return ""
		}
		base = d.ScriptURL[:i] + "/boot/files/"
	}
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(file, "/")
}

// pxeOptions adds the boot answer for firmware client c to resp: siaddr
// and the file field, options 66 and 67, option 60 (PXEClient or
// HTTPClient), option 97 echoed and, for a PXE ROM, option 43 telling it
// to boot the file without a boot server discovery. A UEFI HTTP boot
// client gets no siaddr and no option 66: its boot file is a URL, and
// nothing in its chain uses TFTP. It reports false when there is nothing
// to boot.
func pxeOptions(resp *dhcpv4.DHCPv4, c client, file string, next ip4, _ bool) bool { // proxy or full: the same answer
	if file == "" {
		return false
	}
	if next != 0 && !c.http() {
		resp.ServerIPAddr = next.ip()
		resp.Options.Update(dhcpv4.OptTFTPServerName(next.String()))
	}
	if len(file) < 128 {
		resp.BootFileName = file
	}
	resp.Options.Update(dhcpv4.OptBootFileName(file))
	switch {
	case c.http():
		resp.Options.Update(dhcpv4.OptClassIdentifier("HTTPClient"))
	case c.pxe():
		resp.Options.Update(dhcpv4.OptClassIdentifier("PXEClient"))
		// PXE_DISCOVERY_CONTROL = 8: boot the file named here. In full
		// mode too: UEFI's PXE (OVMF's, seen with the shim chain) takes a
		// PXEClient answer without option 43 for a BINL offer and asks
		// port 4011 for the boot file, then gives up (PXE-E16).
		resp.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}))
	}
	if len(c.uuid) > 0 {
		resp.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, c.uuid))
	}
	return true
}
