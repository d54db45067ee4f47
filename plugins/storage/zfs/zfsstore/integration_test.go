package zfsstore

// Tests against real ZFS. They need a pool to make datasets in, named by
// DLS_ZFS_POOL (.ci/zfs-setup.sh makes one with zfs-fuse); without it they
// skip, except under CI, where they must run.

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

// testDataset returns a new, unique dataset name under DLS_ZFS_POOL that
// the test may use, and destroys it (and all under it) when the test ends.
func testDataset(t testing.TB) string {
	t.Helper()
	pool := os.Getenv("DLS_ZFS_POOL")
	if pool == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("DLS_ZFS_POOL is not set, and CI is: CI must run the ZFS tests (eval \"$(.ci/zfs-setup.sh)\" first)")
		}
		t.Skip("DLS_ZFS_POOL is not set: ZFS integration tests skipped (eval \"$(.ci/zfs-setup.sh)\" to run them)")
	}
	r := testRunner(t)
	ds := pool + "/dls-test-" + randomSuffix()
	t.Cleanup(func() { destroyTree(t, r, ds) })
	return ds
}

func testRunner(t testing.TB) *runner {
	t.Helper()
	zfsPath, err := findBinary("zfs")
	if err != nil {
		t.Fatal(err)
	}
	zpoolPath, err := findBinary("zpool")
	if err != nil {
		t.Fatal(err)
	}
	return &runner{zfs: zfsPath, zpool: zpoolPath, timeout: time.Minute}
}

// destroyTree destroys a dataset and everything under it, clones
// included, unmounting first (zfs-fuse needs it).
func destroyTree(t testing.TB, r *runner, ds string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := r.zfsCmd(ctx, "list", "-H", "-r", "-o", "name", "-t", "filesystem,volume", ds)
	if errors.Is(err, storage.ErrNotFound) {
		return
	}
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	names := strings.Fields(string(out))
	// zfs-fuse keeps a dataset busy for a while after its last file is
	// closed, longer on a loaded machine: force the unmounts and retry
	// for up to 30 s.
	for attempt := 0; attempt < 60; attempt++ {
		for i := len(names) - 1; i >= 0; i-- {
			_, _ = r.zfsCmd(ctx, "umount", "-f", names[i])
		}
		if _, err = r.zfsCmd(ctx, "destroy", "-R", ds); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A dataset zfs-fuse still calls busy is left behind under its unique
	// test name: it does not change what the test proved.
	t.Logf("cleanup left %s: %v", ds, err)
}

func startZFS(t testing.TB, dataset string, extra map[string]any, opts ...plugintest.Option) (*plugintest.Harness, *plugintest.StorageClient) {
	t.Helper()
	cfg := map[string]any{"dataset": dataset}
	for k, v := range extra {
		cfg[k] = v
	}
	h := plugintest.Start(t, New(), append([]plugintest.Option{plugintest.WithConfig(cfg)}, opts...)...)
	return h, h.Storage()
}

// writeSource writes a raw image: size bytes, random data in the given
// ranges ([offset, length] pairs), zeros elsewhere (a sparse file).
func writeSource(t testing.TB, dir, name string, size int64, data ...[2]int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, d := range data {
		b := make([]byte, d[1])
		_, _ = rand.Read(b)
		if _, err := f.WriteAt(b, d[0]); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestZFSStorageBasics(t *testing.T) {
	ds := testDataset(t)
	_, st := startZFS(t, ds, nil)
	plugintest.RunStorageBasics(t, st, t.TempDir())
}

// TestZFSStorageSuite runs the whole conformance suite with the zfs
// plugin's knobs: a restart, keep_versions, cheap clones, and a dataset
// with a quota for the no-space checks.
func TestZFSStorageSuite(t *testing.T) {
	ds := testDataset(t)
	const keep = 3
	start, restart := plugintest.StorageInProcess(func() storage.Storage { return New() },
		plugintest.WithConfig(map[string]any{"dataset": ds + "/main", "keep_versions": keep}))
	r := testRunner(t)
	plugintest.RunStorageSuite(t, plugintest.StorageSuite{
		Start:        start,
		Restart:      restart,
		KeepVersions: keep,
		CheapClones:  true,
		Full: func(t *testing.T) *plugintest.StorageClient {
			full := ds + "/full"
			if _, err := r.zfsCmd(t.Context(), "create", "-p", "-o", "quota=32M", full); err != nil {
				t.Fatal(err)
			}
			_, st := startZFS(t, full, nil)
			return st
		},
	})
}

func TestZFSCloneTimeIndependentOfSize(t *testing.T) {
	ds := testDataset(t)
	_, st := startZFS(t, ds, nil)
	ctx := t.Context()
	dir := t.TempDir()
	small := writeSource(t, dir, "small.raw", 1<<20, [2]int64{0, 1 << 20})
	big := writeSource(t, dir, "big.raw", 1<<30, [2]int64{0, 1 << 20}, [2]int64{512 << 20, 1 << 20}, [2]int64{1<<30 - 1<<20, 1 << 20})

	start := time.Now()
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "small", Source: small}); err != nil {
		t.Fatal(err)
	}
	t.Logf("import of a 1 MiB image: %s", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "big", Source: big}); err != nil {
		t.Fatal(err)
	}
	t.Logf("import of a 1 GiB sparse image (3 MiB of data): %s", time.Since(start).Round(time.Millisecond))

	const rounds = 5
	clone := func(image string) time.Duration {
		var times []time.Duration
		for i := range rounds {
			name := image + "-pc-" + string(rune('a'+i))
			start := time.Now()
			v, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: name, Image: image})
			times = append(times, time.Since(start))
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]int64{"small": 1 << 20, "big": 1 << 30}[image]; v.Size != want {
				t.Errorf("CreateVolume %s: size %d, want %d", name, v.Size, want)
			}
		}
		slices.Sort(times)
		return times[rounds/2]
	}
	smallT, bigT := clone("small"), clone("big")
	t.Logf("clone (median of %d): 1 MiB image %s, 1 GiB image %s", rounds, smallT.Round(time.Microsecond), bigT.Round(time.Microsecond))
	if bigT > 3*smallT+100*time.Millisecond {
		t.Errorf("cloning a 1 GiB image took %s, a 1 MiB one %s: clone time should not depend on size", bigT, smallT)
	}

	// The big clone is a whole disk, shared with its image.
	d, err := st.Attach(ctx, "big-pc-a")
	if err != nil {
		t.Fatal(err)
	}
	if d.Size != 1<<30 || d.BlockSize != 512 || !filepath.IsAbs(d.Paths[0]) {
		t.Errorf("Attach = %+v, want an absolute path, 1 GiB, 512-byte blocks", d)
	}
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	srcFile, err := os.Open(big)
	if err != nil {
		t.Fatal(err)
	}
	defer srcFile.Close()
	for _, off := range []int64{0, 512 << 20, 1<<30 - 1<<20, 100 << 20} {
		got, want := make([]byte, 1<<20), make([]byte, 1<<20)
		if _, err := v.ReadAt(got, off); err != nil {
			t.Fatal(err)
		}
		if _, err := srcFile.ReadAt(want, off); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("clone of the big image differs from its source at %d", off)
		}
	}
	v.Close()
	if err := st.Detach(ctx, "big-pc-a"); err != nil {
		t.Fatal(err)
	}
	c, err := st.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("capacity after 2 images and 10 clones: used %d MiB, available %d MiB", c.Used>>20, c.Available>>20)
	if c.Used > 200<<20 {
		t.Errorf("used %d bytes: the sparse image or its clones take real space", c.Used)
	}
}

func versionNumbers(t *testing.T, st *plugintest.StorageClient, image string) []uint64 {
	t.Helper()
	vs, err := st.ListVersions(t.Context(), image)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, v := range vs {
		out = append(out, v.Number)
	}
	return out
}

func TestZFSKeepVersions(t *testing.T) {
	ds := testDataset(t)
	_, st := startZFS(t, ds, map[string]any{"keep_versions": 2})
	ctx := t.Context()
	dir := t.TempDir()
	importN := func(n int) {
		t.Helper()
		src := writeSource(t, dir, "v.raw", 256<<10, [2]int64{0, 64 << 10})
		v, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src})
		if err != nil {
			t.Fatal(err)
		}
		if v.Number != uint64(n) {
			t.Fatalf("import %d made version %d", n, v.Number)
		}
	}
	importN(1)
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc1", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	importN(2)
	importN(3)
	importN(4)
	// 2 was pruned; 1 is kept while pc1 is a clone of it.
	if got := versionNumbers(t, st, "lab"); !slices.Equal(got, []uint64{1, 3, 4}) {
		t.Errorf("versions with keep_versions = 2 and a clone of 1: %v, want [1 3 4]", got)
	}
	if err := st.SetCurrentVersion(ctx, "lab", 3); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteVolume(ctx, "pc1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVersion(ctx, "lab"); err != nil { // 5, a copy of 3
		t.Fatal(err)
	}
	importN(6)
	if got := versionNumbers(t, st, "lab"); !slices.Equal(got, []uint64{5, 6}) {
		t.Errorf("versions after two more: %v, want [5 6]", got)
	}
	// Deleting the newest version never lets its number be used again.
	if err := st.SetCurrentVersion(ctx, "lab", 5); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteVersion(ctx, "lab", 6); err != nil {
		t.Fatal(err)
	}
	importN(7)
}

func TestZFSVersionWithClonesRefused(t *testing.T) {
	ds := testDataset(t)
	_, st := startZFS(t, ds, nil)
	ctx := t.Context()
	dir := t.TempDir()
	for i := range 2 {
		src := writeSource(t, dir, "v.raw", 1<<20, [2]int64{int64(i) << 10, 4096})
		if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc1", Image: "lab"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	err := st.DeleteVersion(ctx, "lab", 1)
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "pc1") {
		t.Errorf("DeleteVersion of a version with a clone: %v, want storage.ErrInUse naming the clone", err)
	}
	if got := versionNumbers(t, st, "lab"); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("versions after a refused delete: %v", got)
	}
	if err := st.DeleteImage(ctx, "lab"); !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "pc1") {
		t.Errorf("DeleteImage with a clone: %v, want storage.ErrInUse naming the clone", err)
	}
	// The refused deletions left everything usable.
	if _, err := st.ResetVolume(ctx, storage.VolumeRequest{Volume: "pc1"}); err != nil {
		t.Fatal(err)
	}
	vols, err := st.ListVolumes(ctx)
	if err != nil || len(vols) != 1 || vols[0].Version != 2 {
		t.Errorf("ListVolumes after reset = %+v, %v; want pc1 on version 2", vols, err)
	}
	if err := st.DeleteVersion(ctx, "lab", 1); err != nil {
		t.Errorf("DeleteVersion 1 once no clone uses it: %v", err)
	}
}

func TestZFSRestartKeepsState(t *testing.T) {
	ds := testDataset(t)
	_, st := startZFS(t, ds, nil)
	ctx := t.Context()
	dir := t.TempDir()
	for i := range 2 {
		src := writeSource(t, dir, "v.raw", 1<<20, [2]int64{0, 1 << 20})
		if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "old", Image: "lab"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := st.SetCurrentVersion(ctx, "lab", 1); err != nil {
		t.Fatal(err)
	}
	// "open" is attached and its disk stays open, as in an iSCSI target
	// whose storage plugin crashed; "stale" was attached and closed
	// without a Detach.
	for _, name := range []string{"open", "stale"} {
		if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: name, Image: "lab", Version: 2}); err != nil {
			t.Fatal(err)
		}
	}
	d, err := st.Attach(ctx, "open")
	if err != nil {
		t.Fatal(err)
	}
	open, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if _, err := open.WriteAt([]byte("written before the restart"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := open.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, "stale"); err != nil {
		t.Fatal(err)
	}
	imagesBefore, _ := st.ListImages(ctx)
	volumesBefore, _ := st.ListVolumes(ctx)

	// A new plugin on the same dataset: what a restart finds.
	_, st2 := startZFS(t, ds, nil)
	imagesAfter, err := st2.ListImages(ctx)
	if err != nil || !slices.Equal(imagesBefore, imagesAfter) {
		t.Errorf("ListImages after restart = %+v, %v; before %+v", imagesAfter, err, imagesBefore)
	}
	volumesAfter, err := st2.ListVolumes(ctx)
	if err != nil || !slices.Equal(volumesBefore, volumesAfter) {
		t.Errorf("ListVolumes after restart = %+v, %v; before %+v", volumesAfter, err, volumesBefore)
	}
	if got := versionNumbers(t, st2, "lab"); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("versions after restart: %v", got)
	}
	if imagesAfter[0].CurrentVersion != 1 {
		t.Errorf("current version after restart: %d, want 1", imagesAfter[0].CurrentVersion)
	}
	if err := st2.DeleteVolume(ctx, "open"); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("DeleteVolume of a volume attached and open before the restart: %v, want storage.ErrInUse", err)
	}
	if _, err := st2.ResetVolume(ctx, storage.VolumeRequest{Volume: "open"}); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("ResetVolume of a volume attached and open before the restart: %v, want storage.ErrInUse", err)
	}
	if err := st2.DeleteVolume(ctx, "stale"); err != nil {
		t.Errorf("DeleteVolume of a volume attached before the restart but open nowhere: %v", err)
	}
	// The volume kept its data, and detaching it makes it deletable.
	d2, err := st2.Attach(ctx, "open")
	if err != nil {
		t.Fatal(err)
	}
	if d2.Paths[0] != d.Paths[0] {
		t.Errorf("Attach after restart: path %s, before %s", d2.Paths[0], d.Paths[0])
	}
	got := make([]byte, len("written before the restart"))
	if _, err := open.ReadAt(got, 4096); err != nil || string(got) != "written before the restart" {
		t.Errorf("volume content after restart: %q, %v", got, err)
	}
	open.Close()
	if err := st2.Detach(ctx, "open"); err != nil {
		t.Fatal(err)
	}
	if err := st2.DeleteVolume(ctx, "open"); err != nil {
		t.Errorf("DeleteVolume after Detach: %v", err)
	}
}

func TestZFSNoSpace(t *testing.T) {
	ds := testDataset(t)
	r := testRunner(t)
	if _, err := r.zfsCmd(t.Context(), "create", "-p", "-o", "quota=8M", ds); err != nil {
		t.Fatal(err)
	}
	_, st := startZFS(t, ds, nil)
	ctx := t.Context()
	src := writeSource(t, t.TempDir(), "big.raw", 32<<20, [2]int64{0, 32 << 20})
	_, err := st.ImportImage(ctx, storage.ImportRequest{Image: "huge", Source: src})
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("ImportImage of 32 MiB into an 8 MiB quota: %v, want storage.ErrNoSpace", err)
	}
	t.Logf("error: %v", err)
	imgs, err := st.ListImages(ctx)
	if err != nil || len(imgs) != 0 {
		t.Errorf("ListImages after a failed import = %+v, %v; want none", imgs, err)
	}
	if _, err := r.zfsCmd(ctx, "list", ds+"/images/huge"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the failed import left its dataset: %v", err)
	}
	// The storage still works for what fits.
	small := writeSource(t, t.TempDir(), "small.raw", 1<<20, [2]int64{0, 64 << 10})
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "small", Source: small}); err != nil {
		t.Errorf("ImportImage of a small image after a full one: %v", err)
	}
}

func TestZFSConfigure(t *testing.T) {
	ds := testDataset(t)
	h, st := startZFS(t, ds, nil)
	if !slices.Contains(h.Info.Capabilities, storage.CapabilityPromote) || h.Info.Type != "zfs" {
		t.Errorf("Info = %+v, want type zfs with the promote capability", h.Info)
	}
	if err := h.Base.Health(t.Context()); err != nil {
		t.Errorf("Health: %v", err)
	}
	r := testRunner(t)
	for _, child := range []string{"images", "volumes"} {
		if _, err := r.zfsCmd(t.Context(), "list", ds+"/"+child); err != nil {
			t.Errorf("child %s: %v", child, err)
		}
	}
	errs, err := h.Configure(map[string]any{"dataset": "no-such-pool-" + randomSuffix() + "/dls"})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Path != "dataset" || !strings.Contains(errs[0].Message, "no such pool") {
		t.Errorf("Configure on a missing pool: %v, want one error at dataset saying so", errs)
	}
	errs, err = h.Configure(map[string]any{"dataset": ds, "volume_mode": "zvol"})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case len(errs) == 0:
		t.Log("this ZFS makes zvols: volume_mode = \"zvol\" accepted")
	case len(errs) != 1 || errs[0].Path != "volume_mode":
		t.Errorf("Configure volume_mode = zvol: %v, want nothing or one error at volume_mode", errs)
	default:
		t.Logf("volume_mode = \"zvol\" refused: %v", errs[0])
	}
	// A refused reload leaves the plugin working as it was.
	if _, err := st.ListImages(t.Context()); err != nil {
		t.Errorf("ListImages after refused reloads: %v", err)
	}
	if errs, err := h.Configure(map[string]any{"dataset": ds}); err != nil || len(errs) > 0 {
		t.Errorf("Configure again: %v %v", errs, err)
	}
}

func TestZFSMetrics(t *testing.T) {
	ds := testDataset(t)
	h, st := startZFS(t, ds, nil)
	ctx := t.Context()
	src := writeSource(t, t.TempDir(), "v.raw", 1<<20, [2]int64{0, 64 << 10})
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVersion(ctx, "lab"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc1", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc1", Image: "lab"}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second CreateVolume pc1: %v", err)
	}
	for name, want := range map[string]float64{"dls_disk_images": 1, "dls_storage_snapshots": 2} {
		if got := h.MetricValue(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"dls_storage_used_bytes", "dls_storage_available_bytes"} {
		if got := h.MetricValue(t, name); got <= 0 {
			t.Errorf("%s = %v, want > 0", name, got)
		}
	}
	if got := h.MetricValue(t, "dls_image_operations_total", storage.OpClone, "ok"); got != 1 {
		t.Errorf("clone ok = %v, want 1", got)
	}
	if got := h.MetricValue(t, "dls_image_operations_total", storage.OpClone, "error"); got != 1 {
		t.Errorf("clone error = %v, want 1", got)
	}
	if s, ok := h.MetricSample(t, "dls_image_operation_duration_seconds", storage.OpImport); !ok || s.Count != 1 {
		t.Errorf("import duration = %+v, %v; want one observation", s, ok)
	}
}

// TestZFSOpenDiskRefusesDelete: a disk still open (a target that detached
// without closing it) makes the unmount, and so the deletion, fail with
// storage.ErrInUse, and leaves the volume whole.
func TestZFSOpenDiskRefusesDelete(t *testing.T) {
	ds := testDataset(t)
	_, st := startZFS(t, ds, nil)
	ctx := t.Context()
	src := writeSource(t, t.TempDir(), "v.raw", 1<<20, [2]int64{0, 1 << 20})
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc1", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	d, err := st.Attach(ctx, "pc1")
	if err != nil {
		t.Fatal(err)
	}
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := st.Detach(ctx, "pc1"); err != nil {
		t.Fatal(err)
	}
	err = st.DeleteVolume(ctx, "pc1")
	if !errors.Is(err, storage.ErrInUse) || !strings.Contains(err.Error(), "pc1") {
		t.Fatalf("DeleteVolume of a volume whose disk is open: %v, want storage.ErrInUse", err)
	}
	t.Logf("error: %v", err)
	if _, err := v.ReadAt(make([]byte, 512), 0); err != nil {
		t.Errorf("the open disk after a refused delete: %v", err)
	}
	v.Close()
	if _, err := st.Attach(ctx, "pc1"); err != nil {
		t.Errorf("Attach after a refused delete: %v", err)
	}
	if err := st.Detach(ctx, "pc1"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteVolume(ctx, "pc1"); err != nil {
		t.Errorf("DeleteVolume once closed: %v", err)
	}
}
