package bootscript

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"text/template"
)

// chapText sets the iSCSI CHAP credentials, when the client has some.
const chapText = `{{define "chap"}}{{if .CHAPSecret}}set username {{.CHAPUser}}
set password {{.CHAPSecret}}
{{if .CHAPMutualSecret}}set reverse-username {{.CHAPMutualUser}}
set reverse-password {{.CHAPMutualSecret}}
{{end}}{{end}}{{end}}`

// sanbootText boots the client's volume: the firmware reads its boot
// sector through iPXE's INT 13h (BIOS) or block I/O (UEFI) emulation.
const sanbootText = `#!ipxe
# DLS: {{.Client}} ({{.MAC}}) boots its volume
set initiator-iqn {{.InitiatorIQN}}
{{template "chap" .}}sanboot {{.ISCSIURI}}
`

// kernelText attaches the volume with sanhook (which publishes the iBFT
// the initramfs logs in from) and boots the image's kernel over HTTP.
// UEFI iPXE hands the kernel its initrd by name (initrd=<name> on the
// command line); when the architecture is not known, ${platform} decides
// at run time.
const kernelText = `#!ipxe
# DLS: {{.Client}} ({{.MAC}}) boots {{.Kernel}} with root on its volume
set initiator-iqn {{.InitiatorIQN}}
{{template "chap" .}}sanhook {{.ISCSIURI}}
{{if and .Initrd (not .ArchKnown)}}set dls-initrd initrd={{.InitrdName}}
iseq ${platform} efi || clear dls-initrd
{{end -}}
kernel {{.KernelURL}}{{with .Cmdline}} {{.}}{{end}}
{{- if .Initrd}}{{if not .ArchKnown}} ${dls-initrd}{{else if .UEFI}} initrd={{.InitrdName}}{{end}}{{end}}
{{- with .ConfirmArgs}} {{.}}{{end}}
{{if .Initrd}}initrd {{.InitrdURL}}
{{end -}}
boot
`

// Names of the built-in templates, as errors show them.
const (
	SanbootName = "builtin:sanboot"
	KernelName  = "builtin:kernel"
)

var (
	sanboot = template.Must(template.Must(template.New(SanbootName).Parse(chapText)).Parse(sanbootText))
	kernel  = template.Must(template.Must(template.New(KernelName).Parse(chapText)).Parse(kernelText))
)

// Builtin returns the built-in template for d: Kernel when d has a kernel
// (its image has a boot profile), Sanboot otherwise.
func Builtin(d ScriptData) *template.Template {
	if d.Kernel != "" {
		return kernel
	}
	return sanboot
}

// Load reads and parses the template file at path. The template is named
// after path, so that its errors name the file, and is tried at once on a
// sanboot and a kernel client: a misspelt field fails here rather than
// when a machine boots.
func Load(path string) (*template.Template, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load boot script template: %w", err)
	}
	t, err := template.New(path).Parse(string(b))
	if err != nil {
		// "template: <path>:<line>: ..."
		return nil, fmt.Errorf("load boot script template: %w", err)
	}
	for _, d := range []ScriptData{sample(false), sample(true)} {
		if _, err := Render(d, t); err != nil {
			return nil, fmt.Errorf("load boot script template %s: trial render: %w", path, err)
		}
	}
	return t, nil
}

// sample is a client with every field set, to try templates on.
func sample(withKernel bool) ScriptData {
	d := ScriptData{
		Client: "sample", MAC: "52:54:00:00:00:01", InitiatorIQN: "iqn.2026-11.io.dls:initiator:sample",
		TargetIQN: "iqn.2026-11.io.dls:sample", Server: "192.0.2.1", ISCSIPort: 3260, BootURL: "http://192.0.2.1:9180",
		Arch: 7, ArchKnown: true, UEFI: true, Image: "sample",
		CHAPUser: "iqn.2026-11.io.dls:initiator:sample", CHAPSecret: "secret-secret",
		CHAPMutualUser: "iqn.2026-11.io.dls:sample", CHAPMutualSecret: "mutual-secret",
	}
	if withKernel {
		d.Kernel, d.Initrd, d.Cmdline, d.Confirm = "sample/vmlinuz", "sample/initrd.img", "root=/dev/sda rw", true
		d.Token = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	}
	return d
}

// Templates are the site's custom templates: boot.script replaces the
// built-in ones for every client, a client's own script replaces both.
// The zero value and nil use the built-in templates.
type Templates struct {
	// Global is boot.script's template, or nil.
	Global *template.Template
	// Clients maps client names to their own template.
	Clients map[string]*template.Template
}

// LoadTemplates loads boot.script (global, "" for none) and the clients'
// scripts (client name → path). Each file is read once however many
// clients use it; every failure is reported, joined.
func LoadTemplates(global string, clients map[string]string) (*Templates, error) {
	t := &Templates{Clients: map[string]*template.Template{}}
	byPath := map[string]*template.Template{}
	var errs []error
	load := func(path string) *template.Template {
		if tm, ok := byPath[path]; ok {
			return tm
		}
		tm, err := Load(path)
		if err != nil {
			errs = append(errs, err)
		}
		byPath[path] = tm
		return tm
	}
	if global != "" {
		t.Global = load(global)
	}
	names := make([]string, 0, len(clients))
	for name := range clients {
		names = append(names, name)
	}
	sort.Strings(names) // errors in a stable order
	for _, name := range names {
		if p := clients[name]; p != "" {
			if tm := load(p); tm != nil {
				t.Clients[name] = tm
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// For returns the custom template of client, or nil for the built-in one
// (Render picks it).
func (t *Templates) For(client string) *template.Template {
	if t == nil {
		return nil
	}
	if tm := t.Clients[client]; tm != nil {
		return tm
	}
	return t.Global
}
