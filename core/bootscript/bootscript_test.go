package bootscript_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/bootscript"
)

func client() bootscript.ScriptData {
	return bootscript.ScriptData{
		Client: "pc-01", MAC: "52:54:00:12:34:56",
		InitiatorIQN: "iqn.2026-11.io.dls:initiator:pc-01", TargetIQN: "iqn.2026-11.io.dls:pc-01",
		Server: "192.168.77.1", BootURL: "http://192.168.77.1:9180", Image: "lab",
	}
}

func kernelClient() bootscript.ScriptData {
	d := client()
	d.Kernel, d.Initrd, d.Cmdline = "lab/vmlinuz", "lab/initrd.img", "iscsi_auto root=/dev/sda rw console=ttyS0"
	return d
}

func render(t *testing.T, d bootscript.ScriptData) string {
	t.Helper()
	s, err := bootscript.Render(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSanbootDefault(t *testing.T) {
	got := render(t, client())
	want := "#!ipxe\n" +
		"# DLS: pc-01 (52:54:00:12:34:56) boots its volume\n" +
		"set initiator-iqn iqn.2026-11.io.dls:initiator:pc-01\n" +
		"sanboot iscsi:192.168.77.1:::0:iqn.2026-11.io.dls:pc-01\n"
	if got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}

// TestISCSIPortInScripts: a target on another port than 3260 is named
// with its port in both built-in scripts, so machines find it.
func TestISCSIPortInScripts(t *testing.T) {
	d := client()
	d.ISCSIPort = 3261
	if got := render(t, d); !strings.Contains(got, "\nsanboot iscsi:192.168.77.1::3261:0:iqn.2026-11.io.dls:pc-01\n") {
		t.Errorf("sanboot script:\n%s", got)
	}
	k := kernelClient()
	k.ISCSIPort = 3261
	if got := render(t, k); !strings.Contains(got, "\nsanhook iscsi:192.168.77.1::3261:0:iqn.2026-11.io.dls:pc-01\n") {
		t.Errorf("kernel script:\n%s", got)
	}
	d.ISCSIPort = 3260
	if got := d.ISCSIURI(); got != "iscsi:192.168.77.1::3260:0:iqn.2026-11.io.dls:pc-01" {
		t.Errorf("ISCSIURI %q", got)
	}
}

func TestSanbootCHAP(t *testing.T) {
	d := client()
	d.CHAPUser, d.CHAPSecret = d.InitiatorIQN, "s3cret-s3cret"
	got := render(t, d)
	if !strings.Contains(got, "set username iqn.2026-11.io.dls:initiator:pc-01\nset password s3cret-s3cret\nsanboot ") {
		t.Errorf("one-way CHAP script:\n%s", got)
	}
	if strings.Contains(got, "reverse") {
		t.Errorf("one-way CHAP sets reverse credentials:\n%s", got)
	}
	d.CHAPMutualUser, d.CHAPMutualSecret = d.TargetIQN, "mutual-s3cret"
	got = render(t, d)
	if !strings.Contains(got, "set reverse-username iqn.2026-11.io.dls:pc-01\nset reverse-password mutual-s3cret\nsanboot ") {
		t.Errorf("mutual CHAP script:\n%s", got)
	}
}

func kernelLine(t *testing.T, script string) string {
	t.Helper()
	for _, l := range strings.Split(script, "\n") {
		if strings.HasPrefix(l, "kernel ") {
			return l
		}
	}
	t.Fatalf("no kernel line in\n%s", script)
	return ""
}

func TestKernelBIOSAndUEFI(t *testing.T) {
	const base = "kernel http://192.168.77.1:9180/boot/files/lab/vmlinuz iscsi_auto root=/dev/sda rw console=ttyS0"
	const confirm = " dls.url=http://192.168.77.1:9180 dls.token=Zm9vYmFyLWJhei1xdXV4LXRva2VuLXRva2VuLXRva2Vu"
	for _, tc := range []struct {
		name      string
		arch      uint16
		archKnown bool
		token     bool
		want      string
		runtime   bool // the script tests ${platform}
	}{
		{name: "BIOS", arch: 0, archKnown: true, want: base},
		{name: "UEFI x64 (7)", arch: 7, archKnown: true, want: base + " initrd=initrd.img"},
		{name: "UEFI x64 (9)", arch: 9, archKnown: true, want: base + " initrd=initrd.img"},
		{name: "UEFI confirm", arch: 7, archKnown: true, token: true, want: base + " initrd=initrd.img" + confirm},
		{name: "BIOS confirm", arch: 0, archKnown: true, token: true, want: base + confirm},
		{name: "unknown arch", want: base + " ${dls-initrd}", runtime: true},
		{name: "unknown arch confirm", token: true, want: base + " ${dls-initrd}" + confirm, runtime: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := kernelClient()
			d.Arch, d.ArchKnown, d.UEFI = tc.arch, tc.archKnown, tc.archKnown && bootscript.UEFIArch(tc.arch)
			if tc.token {
				d.Confirm, d.Token = true, "Zm9vYmFyLWJhei1xdXV4LXRva2VuLXRva2VuLXRva2Vu"
			}
			s := render(t, d)
			if got := kernelLine(t, s); got != tc.want {
				t.Errorf("kernel line\n%s\nwant\n%s", got, tc.want)
			}
			for _, line := range []string{
				"#!ipxe\n",
				"\nset initiator-iqn iqn.2026-11.io.dls:initiator:pc-01\nsanhook iscsi:192.168.77.1:::0:iqn.2026-11.io.dls:pc-01\n",
				"\ninitrd http://192.168.77.1:9180/boot/files/lab/initrd.img\nboot\n",
			} {
				if !strings.Contains(s, line) {
					t.Errorf("script lacks %q:\n%s", line, s)
				}
			}
			rt := strings.Contains(s, "set dls-initrd initrd=initrd.img\niseq ${platform} efi || clear dls-initrd\nkernel ")
			if rt != tc.runtime {
				t.Errorf("run-time ${platform} test present: %v, want %v:\n%s", rt, tc.runtime, s)
			}
			if strings.Contains(s, "sanboot") {
				t.Errorf("kernel script sanboots:\n%s", s)
			}
		})
	}
}

func TestKernelWithoutInitrd(t *testing.T) {
	d := kernelClient()
	d.Initrd = ""
	d.ArchKnown, d.UEFI, d.Arch = true, true, 7
	s := render(t, d)
	if strings.Contains(s, "initrd") {
		t.Errorf("script without an initrd mentions one:\n%s", s)
	}
	if !strings.HasSuffix(s, "iscsi_auto root=/dev/sda rw console=ttyS0\nboot\n") {
		t.Errorf("script:\n%s", s)
	}
}

func TestFileURLsAreEscaped(t *testing.T) {
	d := kernelClient()
	d.Kernel, d.Initrd = "/lab 2/vmlinuz?x", "lab/init#rd"
	if got := d.KernelURL(); got != "http://192.168.77.1:9180/boot/files/lab%202/vmlinuz%3Fx" {
		t.Errorf("KernelURL = %s", got)
	}
	if got := d.InitrdURL(); got != "http://192.168.77.1:9180/boot/files/lab/init%23rd" {
		t.Errorf("InitrdURL = %s", got)
	}
	if got := d.DoneURL(); got != "http://192.168.77.1:9180/boot/done" {
		t.Errorf("DoneURL = %s", got)
	}
	d.Kernel, d.Initrd = "", ""
	if d.KernelURL() != "" || d.InitrdURL() != "" || d.InitrdName() != "" || d.ConfirmArgs() != "" {
		t.Errorf("sanboot client has kernel URLs: %q %q %q %q", d.KernelURL(), d.InitrdURL(), d.InitrdName(), d.ConfirmArgs())
	}
}

func TestRefusesInjection(t *testing.T) {
	for _, tc := range []struct {
		field string
		set   func(*bootscript.ScriptData)
	}{
		{"Client", func(d *bootscript.ScriptData) { d.Client = "pc-01\nshell" }},
		{"TargetIQN", func(d *bootscript.ScriptData) { d.TargetIQN += "\r\nchain http://evil/" }},
		{"InitiatorIQN", func(d *bootscript.ScriptData) { d.InitiatorIQN += " extra" }},
		{"Cmdline", func(d *bootscript.ScriptData) { d.Cmdline = "root=/dev/sda\nshell" }},
		{"Cmdline", func(d *bootscript.ScriptData) { d.Cmdline = "root=/dev/sda\tquiet" }},
		{"Cmdline", func(d *bootscript.ScriptData) { d.Cmdline = "root=/dev/sda\x00" }},
		{"Kernel", func(d *bootscript.ScriptData) { d.Kernel = "lab/vmlinuz\x1b[2J" }},
		{"CHAPSecret", func(d *bootscript.ScriptData) { d.CHAPSecret = "a b" }},
		{"Token", func(d *bootscript.ScriptData) { d.Token = "tok\n" }},
		{"BootURL", func(d *bootscript.ScriptData) { d.BootURL = "http://x\u2028" }},
	} {
		d := kernelClient()
		tc.set(&d)
		s, err := bootscript.Render(d, nil)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Render = %q, %v; want an error naming the field", tc.field, s, err)
		}
		if err != nil && !strings.Contains(err.Error(), bootscript.KernelName) {
			t.Errorf("%s: error %v does not name the template", tc.field, err)
		}
	}
	// Spaces are the kernel command line's separators: they stay.
	d := kernelClient()
	if _, err := bootscript.Render(d, nil); err != nil {
		t.Errorf("command line with spaces: %v", err)
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCustomTemplate(t *testing.T) {
	p := writeFile(t, "site.ipxe.tmpl", `#!ipxe
echo Booting {{.Client}} from {{.Server}}
set initiator-iqn {{.InitiatorIQN}}
{{if .Kernel}}sanhook iscsi:{{.Server}}::::{{.TargetIQN}}
kernel {{.KernelURL}} {{.Cmdline}} {{.ConfirmArgs}}
boot
{{else}}sanboot iscsi:{{.Server}}::::{{.TargetIQN}}
{{end}}`)
	tm, err := bootscript.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := bootscript.Render(client(), tm)
	if err != nil {
		t.Fatal(err)
	}
	want := "#!ipxe\necho Booting pc-01 from 192.168.77.1\nset initiator-iqn iqn.2026-11.io.dls:initiator:pc-01\n" +
		"sanboot iscsi:192.168.77.1::::iqn.2026-11.io.dls:pc-01\n"
	if s != want {
		t.Errorf("custom script:\n%s\nwant:\n%s", s, want)
	}
	// The checks hold for custom templates too.
	d := client()
	d.Client = "x\nshell"
	if _, err := bootscript.Render(d, tm); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("custom template with a newline in Client: %v, want an error naming %s", err, p)
	}
}

func TestBadTemplateNamesFile(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"syntax.tmpl", "#!ipxe\nset initiator-iqn {{.InitiatorIQN\n", "unclosed action"},
		{"field.tmpl", "#!ipxe\nsanboot iscsi:{{.Server}}:::0:{{.TargetIqn}}\n", "TargetIqn"},
		{"func.tmpl", "#!ipxe\n{{nope .Client}}\n", `"nope" not defined`},
		{"magic.tmpl", "sanboot iscsi:{{.Server}}:::0:{{.TargetIQN}}\n", "#!ipxe"},
	} {
		p := writeFile(t, tc.name, tc.body)
		_, err := bootscript.Load(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Load = %v, want an error naming the file and %q", tc.name, err, tc.want)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.tmpl")
	if _, err := bootscript.Load(missing); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}
}

func TestLoadTemplates(t *testing.T) {
	global := writeFile(t, "global.tmpl", "#!ipxe\necho global {{.Client}}\n")
	own := writeFile(t, "own.tmpl", "#!ipxe\necho own {{.Client}}\n")
	ts, err := bootscript.LoadTemplates(global, map[string]string{"pc-02": own, "pc-03": own, "pc-04": ""})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"pc-01": "echo global", "pc-02": "echo own", "pc-03": "echo own", "pc-04": "echo global"} {
		d := client()
		d.Client = name
		s, err := bootscript.Render(d, ts.For(name))
		if err != nil || !strings.Contains(s, want+" "+name) {
			t.Errorf("%s: %q, %v; want %q", name, s, err, want)
		}
	}
	if ts.For("pc-02") != ts.For("pc-03") {
		t.Error("one file used by two clients was loaded twice")
	}

	// No custom templates: the built-in ones.
	var none *bootscript.Templates
	if none.For("pc-01") != nil {
		t.Error("nil Templates gave a template")
	}
	ts, err = bootscript.LoadTemplates("", nil)
	if err != nil || ts.For("pc-01") != nil {
		t.Errorf("LoadTemplates(\"\", nil) = %v, %v", ts, err)
	}

	// Every broken file is reported.
	bad1 := writeFile(t, "bad1.tmpl", "#!ipxe\n{{.Nope}}\n")
	bad2 := writeFile(t, "bad2.tmpl", "#!ipxe\n{{\n")
	_, err = bootscript.LoadTemplates(bad1, map[string]string{"pc-01": bad2})
	if err == nil || !strings.Contains(err.Error(), bad1) || !strings.Contains(err.Error(), bad2) {
		t.Errorf("LoadTemplates with two bad files: %v, want both named", err)
	}
}

func TestUEFIArch(t *testing.T) {
	for arch, want := range map[uint16]bool{0: false, 6: true, 7: true, 9: true, 10: true, 11: true, 16: true, 2: false, 1: false} {
		if got := bootscript.UEFIArch(arch); got != want {
			t.Errorf("UEFIArch(%d) = %v, want %v", arch, got, want)
		}
	}
}
