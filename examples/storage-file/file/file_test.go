package file_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

const imageSize = 64 << 10

// source writes a raw image of size bytes filled with fill and returns its
// path.
func source(t *testing.T, size int, fill byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), fmt.Sprintf("src-%d.raw", fill))
	if err := os.WriteFile(p, slices.Repeat([]byte{fill}, size), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInfoAndDefaultRoot(t *testing.T) {
	h := plugintest.Start(t, file.New())
	if h.Info.Type != "file" || !slices.Contains(h.Info.Capabilities, storage.CapabilityPromote) {
		t.Errorf("Info = %+v, want type file with the promote capability", h.Info)
	}
	for _, d := range []string{"images", "volumes"} {
		if fi, err := os.Stat(filepath.Join(h.DataDir, file.DefaultRoot, d)); err != nil || !fi.IsDir() {
			t.Errorf("default root: %s directory: %v", d, err)
		}
	}
	if err := h.Base.Health(t.Context()); err != nil {
		t.Errorf("Health: %v", err)
	}
}

func TestConfig(t *testing.T) {
	abs := t.TempDir()
	h := plugintest.Start(t, file.New(), plugintest.WithConfig(map[string]any{"root": abs}))
	st := h.Storage()
	if _, err := st.ImportImage(t.Context(), storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(abs, "images", "lab", "1.img")); err != nil {
		t.Errorf("absolute root not used: %v", err)
	}

	errs, err := h.Configure(map[string]any{"root": ""})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Path != "root" {
		t.Errorf("Configure with an empty root: %v, want one error at \"root\"", errs)
	}
	blocker := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	errs, err = h.Configure(map[string]any{"root": filepath.Join(blocker, "sub")})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Path != "root" || !strings.Contains(errs[0].Message, "not a directory") {
		t.Errorf("Configure with a root under a file: %v, want one error at \"root\" saying why", errs)
	}
}

func TestHealthUnwritableRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	h := plugintest.Start(t, file.New(), plugintest.WithConfig(map[string]any{"root": root}))
	if err := h.Base.Health(t.Context()); err != nil {
		t.Fatalf("Health: %v", err)
	}
	// Removing the root works for every user, root included (a read-only
	// directory would not stop root).
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if err := h.Base.Health(t.Context()); err == nil || !strings.Contains(err.Error(), root) {
		t.Errorf("Health without its root = %v, want an error naming it", err)
	}
}

func TestConcurrentCreateVolumes(t *testing.T) {
	h := plugintest.Start(t, file.New())
	st := h.Storage()
	if _, err := st.ImportImage(t.Context(), storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 7)}); err != nil {
		t.Fatal(err)
	}

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = st.CreateVolume(t.Context(), storage.VolumeRequest{Volume: fmt.Sprintf("pc-%02d", i), Image: "lab"})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("CreateVolume pc-%02d: %v", i, err)
		}
	}
	vols, err := st.ListVolumes(t.Context())
	if err != nil || len(vols) != n {
		t.Fatalf("ListVolumes = %d volumes, %v; want %d", len(vols), err, n)
	}

	// The same name from 8 goroutines: one wins, the others hear it exists.
	for i := range n {
		wg.Go(func() {
			_, errs[i] = st.CreateVolume(t.Context(), storage.VolumeRequest{Volume: "shared", Image: "lab"})
		})
	}
	wg.Wait()
	var won int
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, storage.ErrExists):
			t.Errorf("CreateVolume shared: %v, want success or storage.ErrExists", err)
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent creations of one volume succeeded, want 1", won, n)
	}
	assertNoTempFiles(t, filepath.Join(h.DataDir, file.DefaultRoot))
}

func TestMetrics(t *testing.T) {
	h := plugintest.Start(t, file.New())
	st := h.Storage()
	if _, err := st.ImportImage(t.Context(), storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(t.Context(), storage.VolumeRequest{Volume: "pc-01", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(t.Context(), storage.VolumeRequest{Volume: "../x", Image: "lab"}); err == nil {
		t.Fatal("CreateVolume ../x succeeded")
	}

	for name, want := range map[string]float64{
		"dls_disk_images":        1,
		"dls_storage_snapshots":  1,
		"dls_storage_used_bytes": 2 * imageSize,
	} {
		if got := h.MetricValue(t, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := h.MetricValue(t, "dls_storage_available_bytes"); got <= 0 {
		t.Errorf("dls_storage_available_bytes = %v, want > 0", got)
	}
	cloned := h.MetricValue(t, "dls_image_operations_total", storage.OpClone, "ok")
	refused := h.MetricValue(t, "dls_image_operations_total", storage.OpClone, "error")
	if cloned != 1 || refused != 1 {
		t.Errorf("dls_image_operations_total{op=clone} ok %v error %v, want 1 and 1", cloned, refused)
	}
	s, ok := h.MetricSample(t, "dls_image_operation_duration_seconds", storage.OpImport)
	if !ok || s.Count != 1 || len(s.BucketCounts) == 0 {
		t.Errorf("dls_image_operation_duration_seconds{op=import} = %+v, %v; want one observation", s, ok)
	}
}

func TestRestartKeepsStateAndCleansUp(t *testing.T) {
	data := t.TempDir()
	h := plugintest.Start(t, file.New(), plugintest.WithDataDir(data))
	st := h.Storage()
	ctx := t.Context()
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 2)}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetCurrentVersion(ctx, "lab", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc-01", Image: "lab", Version: 2}); err != nil {
		t.Fatal(err)
	}
	d, err := st.Attach(ctx, "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	writeVolume(t, d, []byte("written before the restart"))

	// What a crash leaves: temporary files, a volume file without its
	// metadata, an image directory without a manifest.
	root := filepath.Join(data, file.DefaultRoot)
	for _, p := range []string{
		"volumes/.tmp-pc-02.img-123", "volumes/pc-03.img", "images/lab/.tmp-3.img-456", "images/half/.tmp-1.img-789",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	h2 := plugintest.Start(t, file.New(), plugintest.WithDataDir(data))
	st2 := h2.Storage()
	vs, err := st2.ListVersions(ctx, "lab")
	if err != nil || len(vs) != 2 || !vs[0].Current || vs[1].Current {
		t.Errorf("ListVersions after restart = %+v, %v; want 2 versions, 1 current", vs, err)
	}
	vols, err := st2.ListVolumes(ctx)
	if err != nil || len(vols) != 1 || vols[0] != (storage.Volume{Name: "pc-01", Image: "lab", Version: 2, Size: imageSize}) {
		t.Errorf("ListVolumes after restart = %+v, %v; want pc-01 from lab version 2", vols, err)
	}
	imgs, err := st2.ListImages(ctx)
	if err != nil || len(imgs) != 1 {
		t.Errorf("ListImages after restart = %+v, %v; want only lab", imgs, err)
	}
	if err := st2.DeleteVersion(ctx, "lab", 2); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("DeleteVersion 2 after restart: %v, want storage.ErrInUse (pc-01 was cloned from it)", err)
	}
	d, err = st2.Attach(ctx, "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	got := readVolume(t, d, len("written before the restart"))
	if string(got) != "written before the restart" {
		t.Errorf("volume after restart starts with %q", got)
	}
	assertNoTempFiles(t, root)
	for _, p := range []string{"volumes/pc-03.img", "images/half"} {
		if _, err := os.Stat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left by a crash still exists (%v)", p, err)
		}
	}
}

func TestImportRefusesBadSources(t *testing.T) {
	h := plugintest.Start(t, file.New())
	st := h.Storage()
	for name, src := range map[string]string{
		"odd size":  source(t, 1000, 1),
		"empty":     source(t, 0, 1),
		"directory": t.TempDir(),
	} {
		if _, err := st.ImportImage(t.Context(), storage.ImportRequest{Image: "lab", Source: src}); err == nil {
			t.Errorf("ImportImage from a source that is %s succeeded", name)
		}
	}
	if imgs, _ := st.ListImages(t.Context()); len(imgs) != 0 {
		t.Errorf("ListImages after refused imports = %+v", imgs)
	}
	if _, err := os.Stat(filepath.Join(h.DataDir, file.DefaultRoot, "images", "lab")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("refused import left its directory (%v)", err)
	}
}

func TestAttachedVolumeIsLeftAlone(t *testing.T) {
	h := plugintest.Start(t, file.New())
	st := h.Storage()
	ctx := t.Context()
	if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc-01", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	d, err := st.Attach(ctx, "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	if d.Format != volume.FormatRaw || d.EffectiveBlockSize() != 512 || !filepath.IsAbs(d.Paths[0]) {
		t.Errorf("descriptor = %+v, want raw, 512-byte blocks, absolute path", d)
	}
	if _, err := st.ResetVolume(ctx, storage.VolumeRequest{Volume: "pc-01"}); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("ResetVolume of an attached volume: %v, want storage.ErrInUse", err)
	}
	if _, err := st.Promote(ctx, "pc-01", "lab"); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("Promote of an attached volume: %v, want storage.ErrInUse", err)
	}
	if err := st.Detach(ctx, "pc-01"); err != nil {
		t.Fatal(err)
	}
	v, err := st.Promote(ctx, "pc-01", "lab-edited")
	if err != nil || v != (storage.Version{Image: "lab-edited", Number: 1, Size: imageSize, Created: v.Created, Current: true}) {
		t.Errorf("Promote to a new image = %+v, %v; want version 1 of lab-edited", v, err)
	}
}

// TestFailedCopyLeavesNothing calls the plugin directly (no gRPC) with a
// cancelled context, which fails the copy after its temporary file exists.
func TestFailedCopyLeavesNothing(t *testing.T) {
	p := file.New()
	data := t.TempDir()
	if err := p.Configure(t.Context(), base.ConfigureRequest{Config: p.NewConfig(), DataDir: data}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 1)}); !errors.Is(err, context.Canceled) {
		t.Errorf("ImportImage with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := p.ImportImage(t.Context(), storage.ImportRequest{Image: "lab", Source: source(t, imageSize, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc-01", Image: "lab"}); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateVolume with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := p.CreateVolume(t.Context(), storage.VolumeRequest{Volume: "pc-01", Image: "lab"}); err != nil {
		t.Errorf("CreateVolume after a cancelled one: %v", err)
	}
	root := filepath.Join(data, file.DefaultRoot)
	assertNoTempFiles(t, root)
	entries, _ := os.ReadDir(filepath.Join(root, "volumes"))
	if len(entries) != 2 {
		t.Errorf("volumes directory holds %d entries, want pc-01.img and pc-01.json", len(entries))
	}
}

func writeVolume(t *testing.T, d volume.Descriptor, p []byte) {
	t.Helper()
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
}

func readVolume(t *testing.T, d volume.Descriptor, n int) []byte {
	t.Helper()
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	p := make([]byte, n)
	if _, err := v.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	}
	return p
}

func assertNoTempFiles(t *testing.T, root string) {
	t.Helper()
	_ = filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(filepath.Base(path), ".tmp-") {
			t.Errorf("temporary file left behind: %s", path)
		}
		return nil
	})
}
