package hostservices_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/plugins/storage/dir/dirstore"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
)

// BenchmarkFirstAttach is a client's first iSCSI login as the host serves
// it (Attach) on the dir storage plugin, with an image shaped as the
// storm's (64 MiB, its first 8 MiB data): "cold" makes the clone on the
// login path (before volume preparation, and still when a login overtakes
// it), "prepared" finds it made in the background. Side by side: compare
// them as a ratio.
func BenchmarkFirstAttach(b *testing.B) {
	ctx := context.Background()
	for _, mode := range []string{"cold", "prepared"} {
		b.Run(mode, func(b *testing.B) {
			h := plugintest.Start(b, dirstore.New(), plugintest.WithDataDir(b.TempDir()), plugintest.WithConfig(map[string]any{}))
			st := h.Storage()
			src := filepath.Join(b.TempDir(), "lab.img")
			f, err := os.Create(src)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := f.Write(make([]byte, 8<<20)); err != nil {
				b.Fatal(err)
			}
			if err := f.Truncate(64 << 20); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
				b.Fatal(err)
			}
			db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "dls.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = db.Close() })
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("pc-%05d", i)
				if err := db.PutClient(ctx, store.Client{Name: name, MAC: fmt.Sprintf("52:54:00:cc:%02x:%02x", i>>8&0xff, i&0xff), Image: "lab"}); err != nil {
					b.Fatal(err)
				}
				if mode == "prepared" {
					if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: name, Image: "lab"}); err != nil {
						b.Fatal(err)
					}
				}
			}
			s := hostservices.New(boot, db, oneStorage{st}, hclog.NewNullLogger())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("pc-%05d", i)
				if _, err := s.Attach(ctx, name); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Detach(ctx, name); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
