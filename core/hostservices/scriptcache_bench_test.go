package hostservices_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// BenchmarkScript serves a client's script as /boot/<mac>.ipxe does
// (binding check, client and image from a SQLite store, a new token per
// boot), rendered at every request ("render", the reference) and from the
// script cache ("cached"), side by side: compare them as a ratio.
func BenchmarkScript(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "dls.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	for _, img := range []store.Image{
		{Name: "lab", Storage: "tank"},
		{Name: "linux", Storage: "tank", Boot: &store.BootProfile{Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: "iscsi_auto root=/dev/sda rw", Confirm: true}},
	} {
		if err := st.PutImage(ctx, img); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []store.Client{
		{Name: "pc-01", MAC: "52:54:00:aa:00:01", Image: "lab", CHAPSecret: "pc01-secret-1", CHAPMutualSecret: "target-secret-1"},
		{Name: "pc-02", MAC: "52:54:00:aa:00:02", Image: "linux", CHAPSecret: "pc02-secret-1"},
	} {
		if err := st.PutClient(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	for _, client := range []struct{ name, mac, addr string }{
		{"sanboot", "52:54:00:aa:00:01", "10.0.0.51"},
		{"kernel+token", "52:54:00:aa:00:02", "10.0.0.52"},
	} {
		for _, mode := range []struct {
			name string
			opts []hostservices.Option
		}{{"render", []hostservices.Option{hostservices.WithoutScriptCache()}}, {"cached", nil}} {
			b.Run(client.name+"/"+mode.name, func(b *testing.B) {
				opts := append([]hostservices.Option{hostservices.WithSessions(&bootTokens{})}, mode.opts...)
				s := hostservices.New(boot, st, nil, hclog.NewNullLogger(), opts...)
				rs, err := s.Commit(ctx, []host.Lease{{Pool: "lan", Address: client.addr, MAC: client.mac, Expires: time.Now().Add(time.Hour), State: host.LeaseBound}})
				if err != nil || !rs[0].OK {
					b.Fatalf("lease: %+v, %v", rs, err)
				}
				q := host.ScriptQuery{MAC: client.mac, Peer: client.addr, Platform: hostservices.PlatformEFI}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					sc, err := s.Script(ctx, q)
					if err != nil || !sc.Found {
						b.Fatalf("script: %+v, %v", sc, err)
					}
				}
			})
		}
	}
}
