package dirstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

func startDir(t testing.TB, dataDir string, cfg map[string]any) *plugintest.StorageClient {
	t.Helper()
	h := plugintest.Start(t, New(), plugintest.WithDataDir(dataDir), plugintest.WithConfig(cfg))
	return h.Storage()
}

// TestConformance holds the plugin to the SDK's storage suite through the
// real gRPC path, for each clone strategy this filesystem supports, with
// pruning on, restarts, and a full disk (a small tmpfs; root only).
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		keep int
	}{
		{"overlay", map[string]any{"clone": "overlay"}, 0},
		{"auto_keep_2", map[string]any{"keep_versions": 2}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			newPlugin := func() storage.Storage { return New() }
			start, restart := plugintest.StorageInProcess(newPlugin, plugintest.WithConfig(tc.cfg))
			plugintest.RunStorageSuite(t, plugintest.StorageSuite{
				Start: start, Restart: restart, Scratch: t.TempDir(),
				KeepVersions: tc.keep, CheapClones: true,
				Full: func(t *testing.T) *plugintest.StorageClient {
					cfg := map[string]any{"root": smallFS(t)}
					for k, v := range tc.cfg {
						cfg[k] = v
					}
					return startDir(t, t.TempDir(), cfg)
				},
			})
		})
	}
}

func rawImage(t *testing.T, size int64, fill byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.img")
	b := make([]byte, size)
	for i := range b {
		b[i] = fill + byte(i%7)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestKeepVersionsPrunesUnused(t *testing.T) {
	ctx := context.Background()
	st := startDir(t, t.TempDir(), map[string]any{"keep_versions": 2})
	src := rawImage(t, 64<<10, 1)
	for i := 0; i < 2; i++ {
		if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: "lab", Source: src}); err != nil {
			t.Fatal(err)
		}
	}
	// v2 is current; a volume pins v1.
	if err := st.SetCurrentVersion(ctx, "lab", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc1", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := st.CreateVersion(ctx, "lab"); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := st.ListVersions(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for _, v := range vs {
		got = append(got, v.Number)
	}
	// v1 is kept for pc1, then the two newest.
	if len(got) != 3 || got[0] != 1 || got[1] != 4 || got[2] != 5 {
		t.Fatalf("versions %v, want [1 4 5]", got)
	}
}

func TestRestartKeepsStateAndCleansLeftovers(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	st := startDir(t, data, map[string]any{"clone": "overlay"})
	src := rawImage(t, 128<<10, 3)
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
	if _, err := v.WriteAt([]byte("persist me"), 4096); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	v.Close()
	root := filepath.Join(data, "storage")
	// What a crash mid-clone and mid-import leave behind.
	for _, p := range []string{
		filepath.Join(root, "volumes", "ghost", "g1.delta"),
		filepath.Join(root, "volumes", "pc1", "g7.delta"),
		filepath.Join(root, "images", "half", "v1.raw"),
		filepath.Join(root, "images", "lab", ".tmp-v2.raw-123"),
	} {
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	st2 := startDir(t, data, map[string]any{"clone": "overlay"})
	imgs, err := st2.ListImages(ctx)
	if err != nil || len(imgs) != 1 || imgs[0].Name != "lab" {
		t.Fatalf("images after restart: %v %v", imgs, err)
	}
	d2, err := st2.Attach(ctx, "pc1")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := volume.Open(d2)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	buf := make([]byte, 10)
	if _, err := v2.ReadAt(buf, 4096); err != nil || string(buf) != "persist me" {
		t.Fatalf("after restart read %q, %v", buf, err)
	}
	for _, p := range []string{"volumes/ghost", "volumes/pc1/g7.delta", "images/half", "images/lab/.tmp-v2.raw-123"} {
		if _, err := os.Stat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s not cleaned: %v", p, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"clone": "magic", "cluster_size": 1000, "keep_versions": -1})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range errs {
		got[e.Path] = true
	}
	for _, p := range []string{"clone", "cluster_size", "keep_versions"} {
		if !got[p] {
			t.Errorf("no error for %s: %v", p, errs)
		}
	}
}

func TestImportRefusesNonDiskSource(t *testing.T) {
	ctx := context.Background()
	st := startDir(t, t.TempDir(), nil)
	odd := filepath.Join(t.TempDir(), "odd.img")
	if err := os.WriteFile(odd, []byte("not a multiple of 512"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{odd, t.TempDir()} {
		_, err := st.ImportImage(ctx, storage.ImportRequest{Image: "x", Source: src})
		if err == nil || !strings.Contains(err.Error(), "raw disk image") {
			t.Errorf("import of %s: %v", src, err)
		}
	}
	if imgs, _ := st.ListImages(ctx); len(imgs) != 0 {
		t.Errorf("half-made image listed: %v", imgs)
	}
}

func TestFullDiskIsClearAndLeavesNothing(t *testing.T) {
	ctx := context.Background()
	full := smallFS(t)
	st := startDir(t, t.TempDir(), map[string]any{"root": full})
	src := rawImage(t, 20<<20, 9) // no zero blocks: every byte must be stored
	_, err := st.ImportImage(ctx, storage.ImportRequest{Image: "big", Source: src})
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Fatalf("import onto a full disk: %v, want ErrNoSpace", err)
	}
	if !strings.Contains(err.Error(), "big") {
		t.Errorf("error does not name the image: %v", err)
	}
	if imgs, _ := st.ListImages(ctx); len(imgs) != 0 {
		t.Errorf("half-made image listed: %v", imgs)
	}
	entries, _ := os.ReadDir(filepath.Join(full, "images"))
	if len(entries) != 0 {
		t.Errorf("left in images/: %v", entries)
	}
}

// The clone modes per platform: auto reflinks only on Linux (FICLONE
// shares blocks or fails); on FreeBSD copy_file_range may copy every
// block, so auto makes overlays and reflink is asked for by name.
func TestClonePlan(t *testing.T) {
	for _, tc := range []struct {
		mode, goos       string
		reflink, overlay bool
	}{
		{cloneAuto, "linux", true, true},
		{cloneAuto, "freebsd", false, true},
		{cloneReflink, "linux", true, false},
		{cloneReflink, "freebsd", true, false},
		{cloneOverlay, "linux", false, true},
		{cloneOverlay, "freebsd", false, true},
	} {
		r, o := clonePlan(tc.mode, tc.goos)
		if r != tc.reflink || o != tc.overlay {
			t.Errorf("clonePlan(%s, %s) = reflink %v overlay %v, want %v %v", tc.mode, tc.goos, r, o, tc.reflink, tc.overlay)
		}
	}
}
