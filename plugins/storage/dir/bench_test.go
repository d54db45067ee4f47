package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dls-project/dls/sdk/storage"
)

// sparseImage makes a sparse raw image of size with data at both ends.
func sparseImage(b *testing.B, size int64) string {
	path := filepath.Join(b.TempDir(), "src.img")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	for _, off := range []int64{0, size - 4096} {
		if _, err := f.WriteAt([]byte("DLS boot sector and tail"), off); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

// BenchmarkClone measures creating a client volume through the plugin's
// gRPC API for a 1 MiB and a 10 GiB image: an instant clone does not
// depend on the size.
func BenchmarkClone(b *testing.B) {
	for _, mode := range []string{"overlay", "auto"} {
		for _, size := range []int64{1 << 20, 10 << 30} {
			b.Run(fmt.Sprintf("%s/%dMiB", mode, size>>20), func(b *testing.B) {
				ctx := context.Background()
				st := startDir(b, b.TempDir(), map[string]any{"clone": mode})
				if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "img", Source: sparseImage(b, size)}); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: fmt.Sprintf("pc%d", i), Image: "img"}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/clone")
			})
		}
	}
}
