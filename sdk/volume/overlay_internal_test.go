package volume

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func newTestOverlay(t *testing.T, clusters int64) (*overlayVolume, Descriptor) {
	t.Helper()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(base, make([]byte, clusters*int64(DefaultClusterSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := CreateOverlay(base, filepath.Join(dir, "delta"), filepath.Join(dir, "map"), 0)
	if err != nil {
		t.Fatal(err)
	}
	d.Options = map[string]string{OptionFlushInterval: "0"}
	v, err := openOverlay(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, d
}

// mapBit reads cluster c's bit from the map file on disk.
func mapBit(t *testing.T, mapPath string, c int64) bool {
	t.Helper()
	b, err := os.ReadFile(mapPath)
	if err != nil {
		t.Fatal(err)
	}
	return b[mapHeaderSize+c/8]&(1<<(c%8)) != 0
}

// TestFlushOrder pins the order a crash of the machine relies on: the
// delta is synced before the map is written, and the map records only
// clusters whose copy-on-write returned before that sync began.
func TestFlushOrder(t *testing.T) {
	v, d := newTestOverlay(t, 4)
	cs := int64(DefaultClusterSize)
	if _, err := v.WriteAt([]byte("before"), 0); err != nil {
		t.Fatal(err)
	}
	var steps []string
	v.trace = func(step string) {
		steps = append(steps, step)
		if step == "sync delta" && len(steps) == 1 {
			// A copy-on-write that returns while the flush runs: this
			// flush's sync may not cover it, so its map must not say so.
			if _, err := v.WriteAt([]byte("during"), 2*cs); err != nil {
				t.Error(err)
			}
		}
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sync delta", "write map", "sync map"}; !slices.Equal(steps, want) {
		t.Fatalf("flush steps %q, want %q", steps, want)
	}
	if !mapBit(t, d.Paths[1], 0) || mapBit(t, d.Paths[1], 2) {
		t.Fatalf("after the first flush, map bits 0 and 2 = %v, %v; want true, false",
			mapBit(t, d.Paths[1], 0), mapBit(t, d.Paths[1], 2))
	}
	steps = nil
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	if !mapBit(t, d.Paths[1], 2) {
		t.Fatal("the second flush does not record the cluster written during the first")
	}
	// A flush with nothing new syncs the delta (for in-place writes) only.
	steps = nil
	if _, err := v.WriteAt([]byte("in place"), 10); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sync delta"}; !slices.Equal(steps, want) {
		t.Fatalf("flush steps %q, want %q", steps, want)
	}
}

// TestFlushFailureSticks: once a flush failed, the kernel may have dropped
// the data, so every later flush fails too, and the map records nothing.
func TestFlushFailureSticks(t *testing.T) {
	v, d := newTestOverlay(t, 4)
	if _, err := v.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	v.delta.Close() // the next fdatasync fails
	err1 := v.Flush()
	if err1 == nil {
		t.Fatal("Flush with a failing delta = nil")
	}
	if err2 := v.Flush(); err2 == nil || err2.Error() != err1.Error() {
		t.Fatalf("second Flush = %v, want the first failure %v again", err2, err1)
	}
	if mapBit(t, d.Paths[1], 0) {
		t.Fatal("the map records a cluster whose data was never synced")
	}
	if err := v.Close(); err == nil || err.Error() != err1.Error() {
		t.Fatalf("Close = %v, want the flush failure", err)
	}
}
