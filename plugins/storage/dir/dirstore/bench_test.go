package dirstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
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

// BenchmarkVolumeIO compares an overlay clone with a raw file on the same
// disk in the same run: sequential 1 MiB and random 4 KiB reads and
// writes, reported as ratios (make bench-storage). The overlay is measured
// fresh (first writes copy clusters), then written, five times alternating
// with the raw file (median ratios).
func BenchmarkVolumeIO(b *testing.B) {
	const size, work = 512 << 20, 256 << 20
	ctx := context.Background()
	dir := b.TempDir()
	src := filepath.Join(dir, "golden.img")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for off := int64(0); off < size; off += 1 << 20 {
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	rawVol, err := volume.Open(volume.Descriptor{Format: volume.FormatRaw, Paths: []string{src}, Size: size, BlockSize: 512})
	if err != nil {
		b.Fatal(err)
	}
	defer rawVol.Close()

	st := startDir(b, filepath.Join(dir, "data"), map[string]any{"clone": "overlay"})
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "img", Source: src}); err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc", Image: "img"}); err != nil {
		b.Fatal(err)
	}
	d, err := st.Attach(ctx, "pc")
	if err != nil {
		b.Fatal(err)
	}
	ov, err := volume.Open(d)
	if err != nil {
		b.Fatal(err)
	}
	defer ov.Close()
	for b.Loop() {
		// First writes into the clone copy clusters: once, on a fresh clone.
		raw := plugintest.VolumeIO(b, rawVol, work)
		fresh := plugintest.VolumeIO(b, ov, work)
		b.ReportMetric(fresh.SeqWrite1M/raw.SeqWrite1M, "fresh-seqwrite1M-x-raw")
		b.ReportMetric(fresh.RandWrite4K/raw.RandWrite4K, "fresh-randwrite4K-x-raw")
		plugintest.CompareVolumeIO(b, rawVol, ov, work, 5)
	}
}
