package zfsstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

// BenchmarkVolumeIO compares a volume cloned by the plugin with a raw file
// in a plain dataset of the same pool, in the same run: sequential 1 MiB
// and random 4 KiB reads and writes, reported as ratios to the raw file
// (median of three alternating rounds; make bench-storage; needs
// DLS_ZFS_POOL).
func BenchmarkVolumeIO(b *testing.B) {
	const size, work = 256 << 20, 128 << 20
	ctx := context.Background()
	ds := testDataset(b)
	r := testRunner(b)
	if _, err := r.zfsCmd(ctx, "create", "-p", ds+"/raw"); err != nil {
		b.Fatal(err)
	}
	out, err := r.zfsCmd(ctx, "get", "-H", "-o", "value", "mountpoint", ds+"/raw")
	if err != nil {
		b.Fatal(err)
	}
	rawPath := filepath.Join(strings.TrimSpace(string(out)), "disk.raw")
	src := writeSource(b, filepath.Dir(rawPath), "disk.raw", size, [2]int64{0, size})
	rawVol, err := volume.Open(volume.Descriptor{Format: volume.FormatRaw, Paths: []string{src}, Size: size, BlockSize: 512})
	if err != nil {
		b.Fatal(err)
	}
	defer rawVol.Close()

	_, st := startZFS(b, ds+"/dls", nil)
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
	cv, err := volume.Open(d)
	if err != nil {
		b.Fatal(err)
	}
	defer cv.Close()
	defer func() { _ = st.Detach(ctx, "pc") }()
	for b.Loop() {
		plugintest.CompareVolumeIO(b, rawVol, cv, work, 3)
	}
	_ = os.Remove(src)
}
