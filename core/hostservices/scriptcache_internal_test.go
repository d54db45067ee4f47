package hostservices

import (
	"strconv"
	"testing"

	"github.com/dls-project/dls/core/bootscript"
)

// BenchmarkScriptRender is the render step alone (no store, no binding):
// the built-in kernel template with a new token per request, executed
// every time ("render", the reference) and served from the script cache
// ("cached"), side by side.
func BenchmarkScriptRender(b *testing.B) {
	d := bootscript.ScriptData{
		Client: "pc-02", MAC: "52:54:00:aa:00:02", InitiatorIQN: "iqn.2026-11.io.dls:initiator:pc-02", TargetIQN: "iqn.2026-11.io.dls:pc-02",
		Server: "10.0.0.1", BootURL: "http://10.0.0.1:9180", Arch: 7, ArchKnown: true, UEFI: true,
		CHAPUser: "iqn.2026-11.io.dls:initiator:pc-02", CHAPSecret: "pc02-secret-1",
		Image: "linux", Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: "iscsi_auto root=/dev/sda rw", Confirm: true,
	}
	a := archOf{arch: 7, known: true}
	b.Run("render", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			d.Token = "tok-" + strconv.Itoa(i)
			if _, err := bootscript.Render(d, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		c, err := newScriptCache()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			d.Token = "tok-" + strconv.Itoa(i)
			if _, err := c.render(d.Client, a, d, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
