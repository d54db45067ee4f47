// Package bootscript renders the iPXE scripts clients boot from. A script is
// a Go text/template executed against a ScriptData: the built-in Sanboot
// template (boot the client's volume), the built-in Kernel template (an
// image with a boot profile: attach the volume with sanhook, boot a kernel
// over HTTP), or an admin's template file (boot.script, or a client's
// script) loaded with Load.
//
// Every value is checked before it reaches a script: a newline or another
// control character would let a value add iPXE commands, so Render refuses
// it, and refuses whitespace in values that must stay one word (names,
// IQNs, URLs, secrets). Only the image's kernel command line may hold
// spaces.
package bootscript

import (
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
	"text/template"
	"unicode"
)

// ScriptData is what a script template sees. Templates use its fields and
// its methods ({{.KernelURL}}); the built-in templates show how.
type ScriptData struct {
	// Client is the client's name.
	Client string
	// MAC is the boot NIC's address, "52:54:00:12:34:56".
	MAC string
	// InitiatorIQN is the name the script sets (set initiator-iqn);
	// TargetIQN is the client's iSCSI target. The volume is LUN 0.
	InitiatorIQN string
	TargetIQN    string
	// Server is the address of the iSCSI and TFTP services, an IPv6
	// literal without brackets ("fd00::1"); ServerHost brackets it for URLs.
	Server string
	// ISCSIPort is the TCP port of the iSCSI target, the iSCSI listener's
	// port; 0 leaves it out of the URI (iPXE then uses 3260).
	ISCSIPort int
	// BootURL is the host's base URL as clients reach it, without a
	// trailing slash: boot files are under BootURL/boot/files/, the OS
	// confirms its boot at BootURL/boot/done.
	BootURL string
	// Token is the per-boot token the OS posts to /boot/done: URL-safe,
	// set only when the image's profile has Confirm.
	Token string

	// Arch is DHCP option 93 of the machine; it means something only when
	// ArchKnown, which is false when the script is fetched without the
	// DHCP request at hand (HTTP, TFTP): a script that cares then tests
	// ${platform} when it runs, as the built-in Kernel template does.
	Arch      uint16
	ArchKnown bool
	// UEFI is true when ArchKnown and Arch is a UEFI architecture (6, 7,
	// 9, 10, 11, 15, 16, 18, 19): iPXE runs as an EFI application.
	UEFI bool

	// CHAPUser and CHAPSecret are the credentials the initiator answers
	// the target's challenge with (iPXE settings username, password);
	// CHAPMutualUser and CHAPMutualSecret those the target must answer
	// with (reverse-username, reverse-password). Empty: no CHAP.
	CHAPUser         string
	CHAPSecret       string
	CHAPMutualUser   string
	CHAPMutualSecret string

	// Image is the name of the client's image. Kernel, Initrd, Cmdline and
	// Confirm are its boot profile (all empty for a sanboot image): Kernel
	// and Initrd are paths under boot.files.
	Image   string
	Kernel  string
	Initrd  string
	Cmdline string
	Confirm bool
}

// UEFIArch reports whether DHCP option 93 value arch is a UEFI
// architecture (RFC 4578 and the IANA registry: EFI IA32, x64, ARM32,
// ARM64, and their HTTP boot variants).
func UEFIArch(arch uint16) bool {
	switch arch {
	case 6, 7, 9, 10, 11, 15, 16, 18, 19:
		return true
	}
	return false
}

// ISCSIURI is the client's volume as iPXE names a SAN disk,
// iscsi:<server>::<port>:0:<target IQN> (the port left out when
// ISCSIPort is 0), an IPv6 server in brackets (iscsi:[fd00::1]::3260:0:...:
// iPXE splits the root path at colons outside brackets and strips them).
// Templates should write the target this way, so that a target on
// another port than 3260, or on IPv6, is still found.
func (d ScriptData) ISCSIURI() string {
	port := ""
	if d.ISCSIPort > 0 {
		port = strconv.Itoa(d.ISCSIPort)
	}
	return "iscsi:" + d.ServerHost() + "::" + port + ":0:" + d.TargetIQN
}

// ServerHost is Server as the host part of a URL or a root path: an IPv6
// literal in brackets ("[fd00::1]"), anything else as it is. Custom
// templates write tftp://{{.ServerHost}}/... with it.
func (d ScriptData) ServerHost() string {
	if strings.Contains(d.Server, ":") && !strings.HasPrefix(d.Server, "[") {
		return "[" + d.Server + "]"
	}
	return d.Server
}

// KernelURL is the URL of the profile's kernel under BootURL/boot/files/.
func (d ScriptData) KernelURL() string { return d.fileURL(d.Kernel) }

// InitrdURL is the URL of the profile's initrd under BootURL/boot/files/.
func (d ScriptData) InitrdURL() string { return d.fileURL(d.Initrd) }

// InitrdName is the initrd's base name, the name iPXE gives the image it
// downloads: a kernel booted by UEFI iPXE finds it with initrd=<name>.
func (d ScriptData) InitrdName() string {
	if d.Initrd == "" {
		return ""
	}
	return path.Base(d.Initrd)
}

// DoneURL is where the OS posts its token once booted.
func (d ScriptData) DoneURL() string { return d.BootURL + "/boot/done" }

// ConfirmArgs are the kernel arguments that let the OS confirm its boot,
// "dls.url=<BootURL> dls.token=<Token>", or "" without a token.
func (d ScriptData) ConfirmArgs() string {
	if d.Token == "" {
		return ""
	}
	return "dls.url=" + d.BootURL + " dls.token=" + d.Token
}

func (d ScriptData) fileURL(p string) string {
	if p == "" {
		return ""
	}
	segs := strings.Split(strings.TrimLeft(p, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return d.BootURL + "/boot/files/" + strings.Join(segs, "/")
}

// Check returns an error naming the first field whose value could change
// what the script does: a control character anywhere, or whitespace in a
// value that must stay one word (every field but Cmdline).
func (d ScriptData) Check() error {
	words := []struct{ name, v string }{
		{"Client", d.Client}, {"MAC", d.MAC}, {"InitiatorIQN", d.InitiatorIQN}, {"TargetIQN", d.TargetIQN},
		{"Server", d.Server}, {"BootURL", d.BootURL}, {"Token", d.Token},
		{"CHAPUser", d.CHAPUser}, {"CHAPSecret", d.CHAPSecret},
		{"CHAPMutualUser", d.CHAPMutualUser}, {"CHAPMutualSecret", d.CHAPMutualSecret},
		{"Image", d.Image}, {"Kernel", d.Kernel}, {"Initrd", d.Initrd},
	}
	for _, f := range words {
		for _, r := range f.v {
			if unicode.IsControl(r) || unicode.IsSpace(r) {
				return fmt.Errorf("field %s %q holds %U: not allowed in an iPXE script", f.name, f.v, r)
			}
		}
	}
	for _, r := range d.Cmdline {
		if unicode.IsControl(r) || (unicode.IsSpace(r) && r != ' ') {
			return fmt.Errorf("field Cmdline %q holds %U: not allowed in an iPXE script", d.Cmdline, r)
		}
	}
	return nil
}

// Render executes tmpl against data, or the built-in template for data
// (Builtin) when tmpl is nil. It refuses data that fails Check and output
// that is not an iPXE script (it must start with "#!ipxe"); errors name
// the template (a loaded template is named after its file).
func Render(data ScriptData, tmpl *template.Template) (string, error) {
	if tmpl == nil {
		tmpl = Builtin(data)
	}
	if err := data.Check(); err != nil {
		return "", fmt.Errorf("render boot script %s for client %s: %w", tmpl.Name(), data.Client, err)
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		// text/template's errors start "template: <name>:<line>:".
		return "", fmt.Errorf("render boot script for client %s: %w", data.Client, err)
	}
	out := b.String()
	if !strings.HasPrefix(out, "#!ipxe") {
		return "", fmt.Errorf("render boot script %s for client %s: the output does not start with #!ipxe", tmpl.Name(), data.Client)
	}
	return out, nil
}
