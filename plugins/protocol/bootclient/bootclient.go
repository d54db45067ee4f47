// Package bootclient holds what network boot firmware tells about itself
// in DHCP and DHCPv6 alike (its architecture, DHCP option 93 and DHCPv6
// option 61, which share one IANA registry; its vendor class), and which
// of DLS's first-stage boot files fits it: the knowledge the "dhcp" and
// "dhcp6" plugins share. It stays beside them rather than in sdk/: the
// file names are those DLS's TFTP plugin serves.
package bootclient

import (
	"strconv"
	"strings"

	"github.com/dls-project/dls/sdk/host"
)

// Client system architecture types (RFC 4578, IANA "Processor
// Architecture Types"; RFC 5970 for DHCPv6).
const (
	ArchBIOS         uint16 = 0
	ArchEFIIA32      uint16 = 6
	ArchEFIX64       uint16 = 7
	ArchEFIBC        uint16 = 9
	ArchEFIARM32     uint16 = 10
	ArchEFIARM64     uint16 = 11
	ArchEFIIA32HTTP  uint16 = 15
	ArchEFIX64HTTP   uint16 = 16
	ArchEFIBCHTTP    uint16 = 17
	ArchEFIARM32HTTP uint16 = 18
	ArchEFIARM64HTTP uint16 = 19
	ArchBIOSHTTP     uint16 = 20
	// ArchUnknownOrNone stands for a client that sent no architecture.
	ArchUnknownOrNone uint16 = 0xffff
)

// archKeys are the names boot_files accepts, with the architectures each
// covers (an HTTP boot variant takes its EFI sibling's file).
var archKeys = map[string][]uint16{
	"bios":      {ArchBIOS},
	"efi_ia32":  {ArchEFIIA32, ArchEFIIA32HTTP},
	"efi_x64":   {ArchEFIX64, ArchEFIBC, ArchEFIX64HTTP, ArchEFIBCHTTP},
	"efi_arm32": {ArchEFIARM32, ArchEFIARM32HTTP},
	"efi_arm64": {ArchEFIARM64, ArchEFIARM64HTTP},
}

// ArchesOf is the architectures a boot_files key names: bios, efi_ia32,
// efi_x64, efi_arm32, efi_arm64, or an architecture number. ok is false
// for any other key.
func ArchesOf(key string) (arches []uint16, ok bool) {
	if a, ok := archKeys[key]; ok {
		return a, true
	}
	n, err := strconv.ParseUint(key, 10, 16)
	if err != nil {
		return nil, false
	}
	return []uint16{uint16(n)}, true
}

// HTTPArch reports whether arch is a UEFI HTTP boot architecture.
func HTTPArch(arch uint16) bool { return arch >= ArchEFIIA32HTTP && arch <= ArchBIOSHTTP }

// ShimArch reports whether arch is one Debian's signed shim runs on: EFI
// x64 and its HTTP boot variants.
func ShimArch(arch uint16) bool {
	switch arch {
	case ArchEFIX64, ArchEFIBC, ArchEFIX64HTTP, ArchEFIBCHTTP:
		return true
	}
	return false
}

// DefaultBootFile is the iPXE build a firmware of arch chains into.
func DefaultBootFile(arch uint16) string {
	switch arch {
	case ArchEFIIA32, ArchEFIX64, ArchEFIBC, ArchEFIIA32HTTP, ArchEFIX64HTTP, ArchEFIBCHTTP:
		return "ipxe.efi"
	case ArchEFIARM32, ArchEFIARM64, ArchEFIARM32HTTP, ArchEFIARM64HTTP:
		return "snp.efi"
	}
	return "undionly.kpxe"
}

// Builtin reports whether file is one of the iPXE builds the host names
// by default: a decision naming one of them says nothing about the
// client itself.
func Builtin(file string) bool {
	switch file {
	case "undionly.kpxe", "ipxe.efi", "snp.efi", "snponly.efi":
		return true
	}
	return false
}

// VendorArch reads the architecture from a vendor class of the form
// PXEClient:Arch:xxxxx:... or HTTPClient:Arch:xxxxx:... (PXE and UEFI
// HTTP boot firmware send it there as well as in its own option; some
// send only the vendor class).
func VendorArch(vc string) (uint16, bool) {
	rest, ok := strings.CutPrefix(vc, "PXEClient:Arch:")
	if !ok {
		rest, ok = strings.CutPrefix(vc, "HTTPClient:Arch:")
	}
	if !ok || len(rest) < 5 {
		return 0, false
	}
	n, err := strconv.ParseUint(rest[:5], 10, 16)
	if err != nil {
		return 0, false
	}
	return uint16(n), true
}

// Printable returns b as a string of at most 255 printable ASCII bytes
// (others become '?', trailing ones dropped), for logs, events and host
// queries.
func Printable(b []byte) string {
	if len(b) > 255 {
		b = b[:255]
	}
	var out []byte
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

// EventAttrs are the host event attributes of what a request said of
// itself (vendor class, user class, architecture: ArchUnknownOrNone when
// it sent none); nil when it said nothing.
func EventAttrs(vendorClass, userClass string, arch uint16) map[string]string {
	attrs := map[string]string{}
	if vendorClass != "" {
		attrs[host.AttrVendorClass] = vendorClass
	}
	if userClass != "" {
		attrs[host.AttrUserClass] = userClass
	}
	if arch != ArchUnknownOrNone {
		attrs[host.AttrArch] = strconv.Itoa(int(arch))
	}
	if len(attrs) == 0 {
		return nil
	}
	return attrs
}
