package bootscript_test

import (
	"strings"
	"testing"

	"github.com/dls-project/dls/core/bootscript"
)

// TestIPv6Scripts: on an IPv6 boot network the built-in scripts carry
// bracketed literals: the iSCSI root path as iPXE parses it
// (iscsi:[addr]::port:lun:target, its split skipping colons in
// brackets), and the kernel, initrd and /boot/done URLs from a bracketed
// boot URL.
func TestIPv6Scripts(t *testing.T) {
	d := client()
	d.Server, d.BootURL, d.ISCSIPort = "fd00:77::1", "http://[fd00:77::1]:9184", 3260
	if got := render(t, d); !strings.Contains(got, "\nsanboot iscsi:[fd00:77::1]::3260:0:iqn.2026-11.io.dls:pc-01\n") {
		t.Errorf("sanboot script:\n%s", got)
	}
	k := kernelClient()
	k.Server, k.BootURL = "fd00:77::1", "http://[fd00:77::1]:9184"
	k.Arch, k.ArchKnown, k.UEFI = 7, true, true
	k.Confirm, k.Token = true, "Zm9vYmFyLWJhei1xdXV4LXRva2VuLXRva2VuLXRva2Vu"
	s := render(t, k)
	for _, line := range []string{
		"\nsanhook iscsi:[fd00:77::1]:::0:iqn.2026-11.io.dls:pc-01\n",
		"\nkernel http://[fd00:77::1]:9184/boot/files/lab/vmlinuz ",
		" dls.url=http://[fd00:77::1]:9184 dls.token=",
		"\ninitrd http://[fd00:77::1]:9184/boot/files/lab/initrd.img\n",
	} {
		if !strings.Contains(s, line) {
			t.Errorf("kernel script lacks %q:\n%s", line, s)
		}
	}
}

func TestServerHost(t *testing.T) {
	for server, want := range map[string]string{
		"192.168.77.1":   "192.168.77.1",
		"fd00::1":        "[fd00::1]",
		"[fd00::1]":      "[fd00::1]",
		"boot.lab":       "boot.lab",
		"fe80::1%net0":   "[fe80::1%net0]",
		"::ffff:1.2.3.4": "[::ffff:1.2.3.4]",
	} {
		d := bootscript.ScriptData{Server: server, TargetIQN: "iqn.x:t"}
		if got := d.ServerHost(); got != want {
			t.Errorf("ServerHost(%q) = %q, want %q", server, got, want)
		}
		if got := d.ISCSIURI(); got != "iscsi:"+want+":::0:iqn.x:t" {
			t.Errorf("ISCSIURI with server %q = %q", server, got)
		}
	}
}

// TestCustomTemplateServerHost: a site template can write the TFTP URL
// of an IPv6 server with ServerHost.
func TestCustomTemplateServerHost(t *testing.T) {
	tm, err := bootscript.Load(writeFile(t, "v6.ipxe.tmpl", "#!ipxe\nchain tftp://{{.ServerHost}}/menu.ipxe\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := client()
	d.Server = "fd00:77::1"
	s, err := bootscript.Render(d, tm)
	if err != nil || !strings.Contains(s, "chain tftp://[fd00:77::1]/menu.ipxe") {
		t.Errorf("custom script %q, %v", s, err)
	}
}
