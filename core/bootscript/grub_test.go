package bootscript

import (
	"strings"
	"testing"
)

func TestRenderGRUB(t *testing.T) {
	d := sample(true)
	got, err := RenderGRUB(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `# DLS: sample (52:54:00:00:00:01) boots sample/vmlinuz through shim and GRUB, root on its volume
echo 'DLS: sample: loading sample/vmlinuz'
linux '/files/sample/vmlinuz' 'root=/dev/sda' 'rw' 'iscsi_initiator=iqn.2026-11.io.dls:initiator:sample' 'iscsi_target_name=iqn.2026-11.io.dls:sample' 'iscsi_target_ip=192.0.2.1' 'iscsi_target_port=3260' 'iscsi_username=iqn.2026-11.io.dls:initiator:sample' 'iscsi_password=secret-secret' 'iscsi_in_username=iqn.2026-11.io.dls:sample' 'iscsi_in_password=mutual-secret' 'dls.url=http://192.0.2.1:9180' 'dls.token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'
echo 'DLS: sample: loading sample/initrd.img'
initrd '/files/sample/initrd.img'
boot
source "$prefix/failed/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
echo 'DLS: sample: sample/vmlinuz did not boot (refused by Secure Boot, or not loaded): reported to the server'
`
	if got != want {
		t.Errorf("RenderGRUB:\n%s\nwant:\n%s", got, want)
	}

	// No initrd, no CHAP, no token, port 0: the default port, nothing else.
	d.Initrd, d.CHAPSecret, d.CHAPMutualSecret, d.Token, d.ISCSIPort = "", "", "", "", 0
	got, err = RenderGRUB(d)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got, "initrd") || strings.Contains(got, "iscsi_username") || strings.Contains(got, "dls.token") || !strings.Contains(got, "'iscsi_target_port=3260'") {
		t.Errorf("minimal configuration:\n%s", got)
	}

	for name, mod := range map[string]func(*ScriptData){
		"no kernel":            func(d *ScriptData) { d.Kernel = "" },
		"quote in cmdline":     func(d *ScriptData) { d.Cmdline = `foo="a b"` },
		"single quote":         func(d *ScriptData) { d.Cmdline = "it's" },
		"backslash in secret":  func(d *ScriptData) { d.CHAPSecret = `a\b` },
		"newline in cmdline":   func(d *ScriptData) { d.Cmdline = "a\nlinux /evil" },
		"space in kernel path": func(d *ScriptData) { d.Kernel = "a b" },
	} {
		d := sample(true)
		mod(&d)
		if out, err := RenderGRUB(d); err == nil {
			t.Errorf("%s: rendered\n%s", name, out)
		}
	}
}

func TestGRUBWord(t *testing.T) {
	for in, want := range map[string]string{"a": "'a'", "": "''", "it's": `'it'\''s'`, "$x;y": "'$x;y'"} {
		if got := grubWord(in); got != want {
			t.Errorf("grubWord(%q) = %s, want %s", in, got, want)
		}
	}
}
