package volume_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/volume"
)

// makeBase writes a base image of size bytes filled with a pattern that
// has no all-zero 512-byte block, and returns its path and content.
func makeBase(t testing.TB, dir string, size int64) (string, []byte) {
	t.Helper()
	path := filepath.Join(dir, "base.raw")
	data := pattern(int(size), 0x11)
	for i := 0; i < len(data); i += 512 {
		data[i] = 0xBA // pattern() wraps to zero now and then
	}
	if err := os.WriteFile(path, data, 0o444); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// newOverlay makes an overlay over base in a new directory.
func newOverlay(t testing.TB, base string, clusterSize uint32) volume.Descriptor {
	t.Helper()
	dir := t.TempDir()
	d, err := volume.CreateOverlay(base, filepath.Join(dir, "delta"), filepath.Join(dir, "map"), clusterSize)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// openVolume opens d and closes it when the test ends.
func openVolume(t testing.TB, d volume.Descriptor) volume.Volume {
	t.Helper()
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

// readAll reads a whole volume.
func readAll(t testing.TB, v volume.Volume) []byte {
	t.Helper()
	got := make([]byte, v.Size())
	if n, err := v.ReadAt(got, 0); err != nil || int64(n) != v.Size() {
		t.Fatalf("ReadAt(whole volume) = %d, %v", n, err)
	}
	return got
}

// mustEqual fails with the first differing offset.
func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Fatalf("%s: byte %d = %#x, want %#x", what, i, got[i], want[i])
	}
}

func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

const cluster = 64 << 10

func TestCreateOverlay(t *testing.T) {
	base, _ := makeBase(t, t.TempDir(), 10*cluster+3*512)
	dir := t.TempDir()
	delta, mapPath := filepath.Join(dir, "delta"), filepath.Join(dir, "map")
	d, err := volume.CreateOverlay(base, delta, mapPath, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := volume.Descriptor{Format: volume.FormatOverlay, Paths: []string{delta, mapPath, base}, Size: 10*cluster + 3*512, BlockSize: 512}
	if d.Format != want.Format || d.Size != want.Size || d.BlockSize != want.BlockSize || strings.Join(d.Paths, " ") != strings.Join(want.Paths, " ") {
		t.Fatalf("CreateOverlay = %+v, want %+v", d, want)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(delta)
	if err != nil || fi.Size() != d.Size || allocated(t, delta) != 0 {
		t.Fatalf("delta: %v, %v, want an empty sparse file of %d bytes", fi, err, d.Size)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("delta mode %v, want 0640", fi.Mode())
	}
	if fi, err := os.Stat(mapPath); err != nil || fi.Size() != 8192 {
		t.Fatalf("map: %v, %v, want 8192 bytes (header + one bitmap page)", fi, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want delta and map only (no temporary files)", len(entries))
	}

	t.Run("refuses", func(t *testing.T) {
		odd := filepath.Join(t.TempDir(), "odd.raw")
		if err := os.WriteFile(odd, make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		empty := filepath.Join(t.TempDir(), "empty.raw")
		if err := os.WriteFile(empty, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		full := filepath.Join(t.TempDir(), "full.raw")
		if err := os.WriteFile(full, []byte("data"), 0o644); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name                 string
			base, delta, mapPath string
			cluster              uint32
			wantErr              string
			wantIs               error
		}{
			{"existing map", base, filepath.Join(t.TempDir(), "delta"), mapPath, 0, "map " + mapPath + ": file already exists", fs.ErrExist},
			{"existing delta with data", base, full, filepath.Join(t.TempDir(), "map"), 0, "delta " + full + ": file already exists", fs.ErrExist},
			{"relative delta", base, "delta", "/tmp/x/map", 0, `path 0 "delta" is not absolute`, volume.ErrInvalidDescriptor},
			{"relative base", "base.raw", "/tmp/x/delta", "/tmp/x/map", 0, `path 2 "base.raw" is not absolute`, volume.ErrInvalidDescriptor},
			{"delta is map", base, "/tmp/x/m", "/tmp/x/./m", 0, "given twice", volume.ErrInvalidDescriptor},
			{"cluster 2 KiB", base, "/tmp/x/d", "/tmp/x/m", 2048, "cluster size 2048 is not a power of two from 4096 to 1048576", nil},
			{"cluster 12 KiB", base, "/tmp/x/d", "/tmp/x/m", 12 << 10, "cluster size 12288", nil},
			{"cluster 2 MiB", base, "/tmp/x/d", "/tmp/x/m", 2 << 20, "cluster size 2097152", nil},
			{"base not a multiple of 512", odd, "/tmp/x/d", "/tmp/x/m", 0, "size 1000 is not a positive multiple of 512", nil},
			{"empty base", empty, "/tmp/x/d", "/tmp/x/m", 0, "size 0 is not a positive multiple of 512", nil},
			{"base is a directory", t.TempDir(), "/tmp/x/d", "/tmp/x/m", 0, "not a regular file", nil},
			{"missing base", "/nonexistent/base.raw", "/tmp/x/d", "/tmp/x/m", 0, "base /nonexistent/base.raw: no such file or directory", fs.ErrNotExist},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := volume.CreateOverlay(tt.base, tt.delta, tt.mapPath, tt.cluster)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "create overlay "+tt.delta+": ") {
					t.Fatalf("CreateOverlay = %v, want an error naming the delta containing %q", err, tt.wantErr)
				}
				if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
					t.Errorf("CreateOverlay = %v, want it to wrap %v", err, tt.wantIs)
				}
			})
		}
		// Nothing existing was touched.
		if data, _ := os.ReadFile(full); string(data) != "data" {
			t.Error("CreateOverlay changed an existing file")
		}
	})

	t.Run("reuses the empty delta a crash left", func(t *testing.T) {
		delta, mapPath := filepath.Join(t.TempDir(), "delta"), filepath.Join(t.TempDir(), "map")
		if err := os.WriteFile(delta, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(delta, d.Size); err != nil {
			t.Fatal(err)
		}
		if _, err := volume.CreateOverlay(base, delta, mapPath, 0); err != nil {
			t.Fatalf("CreateOverlay over a leftover empty delta = %v", err)
		}
		// But not one of another size.
		other := filepath.Join(t.TempDir(), "delta")
		if err := os.WriteFile(other, make([]byte, 512), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(other, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := volume.CreateOverlay(base, other, filepath.Join(t.TempDir(), "map"), 0); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("CreateOverlay over an empty delta of another size = %v, want fs.ErrExist", err)
		}
	})
}

func TestOverlayReadThrough(t *testing.T) {
	const size = 7*cluster + 512 // a short last cluster
	base, data := makeBase(t, t.TempDir(), size)
	v := openVolume(t, newOverlay(t, base, cluster))
	if v.Size() != size || v.BlockSize() != 512 {
		t.Fatalf("Size, BlockSize = %d, %d; want %d, 512", v.Size(), v.BlockSize(), size)
	}
	mustEqual(t, "fresh overlay", readAll(t, v), data)
	for _, r := range [][2]int64{{0, 1}, {cluster - 3, 7}, {size - 512, 512}, {100, 3 * cluster}} {
		got := make([]byte, r[1])
		if _, err := v.ReadAt(got, r[0]); err != nil {
			t.Fatal(err)
		}
		mustEqual(t, "read-through", got, data[r[0]:r[0]+r[1]])
	}
}

func TestOverlayCopyOnWrite(t *testing.T) {
	const size = 7*cluster + 512
	base, data := makeBase(t, t.TempDir(), size)
	for _, cs := range []uint32{4 << 10, cluster, 1 << 20} {
		t.Run(byteSize(int64(cs)), func(t *testing.T) {
			d := newOverlay(t, base, cs)
			v := openVolume(t, d)
			want := bytes.Clone(data)
			writes := []struct {
				off int64
				n   int
			}{
				{70000, 100},               // inside a cluster, unaligned
				{cluster - 10, 20},         // across a cluster boundary
				{2 * cluster, cluster},     // one whole cluster
				{3*cluster + 512, 3 * 512}, // then in place into it
				{3 * cluster, 2 * cluster}, // partly in place, partly new
				{size - 300, 300},          // the short last cluster
				{5*cluster - 1, cluster + 2},
			}
			for i, w := range writes {
				p := pattern(w.n, byte(0x40+i))
				if n, err := v.WriteAt(p, w.off); err != nil || n != w.n {
					t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", w.n, w.off, n, err)
				}
				copy(want[w.off:], p)
				mustEqual(t, "after write", readAll(t, v), want)
			}
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "reopened after Close", readAll(t, openVolume(t, d)), want)
			if got, _ := os.ReadFile(base); !bytes.Equal(got, data) {
				t.Fatal("the base changed")
			}
		})
	}
}

func byteSize(n int64) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

func TestOverlayIsolation(t *testing.T) {
	const size = 16 * cluster
	base, data := makeBase(t, t.TempDir(), size)
	past := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := os.Chtimes(base, past, past); err != nil {
		t.Fatal(err)
	}
	a := openVolume(t, newOverlay(t, base, 0))
	b := openVolume(t, newOverlay(t, base, 0))
	wantA, wantB := bytes.Clone(data), bytes.Clone(data)
	for i := range 20 {
		off := int64(i) * 3 * 4096 % (size - 8192)
		pa, pb := pattern(8192, byte(i)), pattern(8192, byte(100+i))
		if _, err := a.WriteAt(pa, off); err != nil {
			t.Fatal(err)
		}
		if _, err := b.WriteAt(pb, off+512); err != nil {
			t.Fatal(err)
		}
		copy(wantA[off:], pa)
		copy(wantB[off+512:], pb)
	}
	if err := a.Discard(0, 4*cluster); err != nil {
		t.Fatal(err)
	}
	clear(wantA[:4*cluster])
	for _, v := range []volume.Volume{a, b} {
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	mustEqual(t, "overlay a", readAll(t, a), wantA)
	mustEqual(t, "overlay b", readAll(t, b), wantB)
	if got, _ := os.ReadFile(base); !bytes.Equal(got, data) {
		t.Fatal("the base changed")
	}
	if fi, err := os.Stat(base); err != nil || !fi.ModTime().Equal(past) {
		t.Fatalf("base modification time = %v, %v; want %v", fi.ModTime(), err, past)
	}
}

func TestOverlayReopen(t *testing.T) {
	const size = 32 * cluster
	base, data := makeBase(t, t.TempDir(), size)
	d := newOverlay(t, base, 0)
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	r := rand.New(rand.NewPCG(1, 1))
	for i := range 200 {
		n := 1 + r.IntN(3*cluster)
		off := r.Int64N(size - int64(n))
		p := pattern(n, byte(i))
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		copy(want[off:], p)
	}
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	// The map on disk alone (read by a second reader after the writer is
	// gone) holds everything flushed: copy the files as a crash would
	// leave them, without Close.
	dir := t.TempDir()
	crashed := d
	crashed.Paths = []string{filepath.Join(dir, "delta"), filepath.Join(dir, "map"), base}
	for i := range 2 {
		b, err := os.ReadFile(d.Paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(crashed.Paths[i], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "copy of the files after Flush", readAll(t, openVolume(t, crashed)), want)
	mustEqual(t, "reopened", readAll(t, openVolume(t, d)), want)
}

func TestOverlayDiscard(t *testing.T) {
	const size = 20*cluster + 1024 // a short last cluster
	base, data := makeBase(t, t.TempDir(), size)
	d := newOverlay(t, base, 0)
	v := openVolume(t, d)
	want := bytes.Clone(data)
	// Clusters 4-11 are written (allocated); the rest read the base.
	p := pattern(8*cluster, 0x77)
	if _, err := v.WriteAt(p, 4*cluster); err != nil {
		t.Fatal(err)
	}
	copy(want[4*cluster:], p)
	if err := v.Flush(); err != nil {
		t.Fatal(err)
	}
	before := allocated(t, d.Paths[0])

	ranges := [][2]int64{
		{2 * cluster, 4 * cluster},         // two unallocated clusters, then two allocated
		{9*cluster + 100, 2*cluster - 200}, // allocated, unaligned ends
		{13*cluster + 512, 1024},           // inside one unallocated cluster
		{15*cluster + 4096, 2 * cluster},   // partial, whole, partial, all unallocated
		{size - 1024 - cluster, cluster + 1024},
	}
	for i, r := range ranges {
		if err := v.Discard(r[0], r[1]); err != nil {
			t.Fatalf("Discard(%d, %d) = %v", r[0], r[1], err)
		}
		clear(want[r[0] : r[0]+r[1]])
		mustEqual(t, "after Discard", readAll(t, v), want)
		if i == 0 {
			// Two written clusters were punched out of the delta.
			if err := v.Flush(); err != nil {
				t.Fatal(err)
			}
			if after := allocated(t, d.Paths[0]); after > before-2*cluster {
				t.Errorf("delta holds %d bytes after discarding 2 of its clusters, %d before", after, before)
			}
		}
	}
	// A write into a discarded cluster keeps the zeros around it.
	if _, err := v.WriteAt([]byte("hello"), 2*cluster+7); err != nil {
		t.Fatal(err)
	}
	copy(want[2*cluster+7:], "hello")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "reopened after Discard", readAll(t, openVolume(t, d)), want)
}

func TestOverlayBounds(t *testing.T) {
	const size = 4 * cluster
	base, _ := makeBase(t, t.TempDir(), size)
	d := newOverlay(t, base, 0)
	v := openVolume(t, d)
	buf := make([]byte, 4096)
	for _, tt := range []struct {
		off int64
		n   int
	}{{-1, 10}, {size, 1}, {size - 100, 4096}, {1 << 40, 4096}, {math.MaxInt64, 4096}, {math.MaxInt64 - 1, 2}} {
		if n, err := v.ReadAt(buf[:tt.n], tt.off); n != 0 || !errors.Is(err, volume.ErrOutOfRange) {
			t.Errorf("ReadAt(%d, %d) = %d, %v; want 0, ErrOutOfRange", tt.n, tt.off, n, err)
		}
		if n, err := v.WriteAt(buf[:tt.n], tt.off); n != 0 || !errors.Is(err, volume.ErrOutOfRange) {
			t.Errorf("WriteAt(%d, %d) = %d, %v; want 0, ErrOutOfRange", tt.n, tt.off, n, err)
		}
		if err := v.Discard(tt.off, int64(tt.n)); !errors.Is(err, volume.ErrOutOfRange) {
			t.Errorf("Discard(%d, %d) = %v; want ErrOutOfRange", tt.off, tt.n, err)
		}
	}
	if err := v.Discard(1, math.MaxInt64); !errors.Is(err, volume.ErrOutOfRange) {
		t.Errorf("Discard(1, MaxInt64) = %v; want ErrOutOfRange", err)
	}
	_, err := v.WriteAt(buf, size-100)
	want := "write volume " + d.Paths[0] + ": 4096 bytes at offset 262044: outside the volume (size 262144)"
	if err == nil || err.Error() != want {
		t.Errorf("WriteAt error = %q, want %q", err, want)
	}
	for _, off := range []int64{0, size / 2, size} {
		if n, err := v.ReadAt(nil, off); n != 0 || err != nil {
			t.Errorf("ReadAt(nil, %d) = %d, %v", off, n, err)
		}
		if n, err := v.WriteAt(nil, off); n != 0 || err != nil {
			t.Errorf("WriteAt(nil, %d) = %d, %v", off, n, err)
		}
		if err := v.Discard(off, 0); err != nil {
			t.Errorf("Discard(%d, 0) = %v", off, err)
		}
	}
	if _, err := v.WriteAt([]byte{0xAB}, size-1); err != nil {
		t.Errorf("WriteAt last byte = %v", err)
	}
	if fi, err := os.Stat(d.Paths[0]); err != nil || fi.Size() != size {
		t.Fatalf("delta size = %d, %v after out-of-range writes, want %d", fi.Size(), err, size)
	}
}

func TestOverlayReadOnly(t *testing.T) {
	const size = 4 * cluster
	base, data := makeBase(t, t.TempDir(), size)
	d := newOverlay(t, base, 0)
	v := openVolume(t, d)
	if _, err := v.WriteAt([]byte("written"), 100); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(data)
	copy(want[100:], "written")
	files := func() [2][]byte {
		var b [2][]byte
		for i := range b {
			b[i], _ = os.ReadFile(d.Paths[i])
		}
		return b
	}
	before := files()

	ro := d
	ro.ReadOnly = true
	v1, v2 := openVolume(t, ro), openVolume(t, ro) // readers share
	mustEqual(t, "read-only overlay", readAll(t, v1), want)
	mustEqual(t, "second reader", readAll(t, v2), want)
	if n, err := v1.WriteAt([]byte{1}, 0); n != 0 || !errors.Is(err, volume.ErrReadOnly) {
		t.Errorf("WriteAt = %d, %v; want 0, ErrReadOnly", n, err)
	}
	if err := v1.Discard(0, cluster); !errors.Is(err, volume.ErrReadOnly) {
		t.Errorf("Discard = %v; want ErrReadOnly", err)
	}
	if err := v1.Flush(); err != nil {
		t.Errorf("Flush = %v; want nil", err)
	}
	if _, err := volume.Open(d); !errors.Is(err, volume.ErrInUse) {
		t.Errorf("Open for writing while readers have it open = %v, want ErrInUse", err)
	}
	v1.Close()
	v2.Close()
	if after := files(); !bytes.Equal(after[0], before[0]) || !bytes.Equal(after[1], before[1]) {
		t.Fatal("a read-only overlay changed its files")
	}
}

func TestOverlayInUse(t *testing.T) {
	base, _ := makeBase(t, t.TempDir(), 4*cluster)
	d := newOverlay(t, base, 0)
	v := openVolume(t, d)
	ro := d
	ro.ReadOnly = true
	for name, d := range map[string]volume.Descriptor{"writer": d, "reader": ro} {
		if _, err := volume.Open(d); !errors.Is(err, volume.ErrInUse) || !strings.Contains(err.Error(), d.Paths[1]) {
			t.Errorf("second Open as %s = %v, want ErrInUse naming the map", name, err)
		}
	}
	if err := volume.ResetOverlay(d); !errors.Is(err, volume.ErrInUse) {
		t.Errorf("ResetOverlay of an open overlay = %v, want ErrInUse", err)
	}
	v.Close()
	openVolume(t, d)
}

func TestOverlayOpenRefuses(t *testing.T) {
	const size = 9 * cluster // 9 clusters: the bitmap's last byte has unused bits
	base, _ := makeBase(t, t.TempDir(), size)
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	// edit changes the header and fixes its checksum.
	edit := func(t *testing.T, mapPath string, change func(h []byte)) {
		t.Helper()
		b, err := os.ReadFile(mapPath)
		if err != nil {
			t.Fatal(err)
		}
		change(b[:4096])
		binary.LittleEndian.PutUint32(b[4092:], crc32.Checksum(b[:4092], castagnoli))
		if err := os.WriteFile(mapPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		spoil   func(t *testing.T, d *volume.Descriptor)
		wantIs  error
		wantErr string
	}{
		{"bad magic", func(t *testing.T, d *volume.Descriptor) {
			edit(t, d.Paths[1], func(h []byte) { copy(h, "QFI\xfb") })
		}, volume.ErrBadMap, `bad magic "QFI\xfbVMAP"`},
		{"bad checksum", func(t *testing.T, d *volume.Descriptor) {
			f, _ := os.OpenFile(d.Paths[1], os.O_WRONLY, 0)
			f.WriteAt([]byte{1}, 100)
			f.Close()
		}, volume.ErrBadMap, "header checksum"},
		{"newer format version", func(t *testing.T, d *volume.Descriptor) {
			edit(t, d.Paths[1], func(h []byte) { h[8] = 2 })
		}, volume.ErrUnsupportedFormat, "overlay map format version 2 (this SDK reads version 1)"},
		{"bad cluster size", func(t *testing.T, d *volume.Descriptor) {
			edit(t, d.Paths[1], func(h []byte) { binary.LittleEndian.PutUint32(h[16:], 3000) })
		}, volume.ErrBadMap, "cluster size 3000"},
		{"wrong cluster count", func(t *testing.T, d *volume.Descriptor) {
			edit(t, d.Paths[1], func(h []byte) { h[32] = 8 })
		}, volume.ErrBadMap, "cluster count 8, want 9"},
		{"descriptor size differs", func(t *testing.T, d *volume.Descriptor) {
			d.Size -= 512
		}, volume.ErrInvalidDescriptor, "size 589312, the overlay map says 589824"},
		{"map header truncated", func(t *testing.T, d *volume.Descriptor) {
			os.Truncate(d.Paths[1], 100)
		}, volume.ErrBadMap, "header truncated: 100 of 4096 bytes"},
		{"map bitmap truncated", func(t *testing.T, d *volume.Descriptor) {
			os.Truncate(d.Paths[1], 4096+1)
		}, volume.ErrBadMap, "file truncated: 4097 bytes, want 8192"},
		{"bits past the last cluster", func(t *testing.T, d *volume.Descriptor) {
			f, _ := os.OpenFile(d.Paths[1], os.O_WRONLY, 0)
			f.WriteAt([]byte{0x01, 0x02}, 4096) // cluster 0, and cluster 9 of 9
			f.Close()
		}, volume.ErrBadMap, "bits set past the last cluster"},
		{"base replaced by a bigger file", func(t *testing.T, d *volume.Descriptor) {
			replaceBase(t, d, size+cluster, time.Now())
		}, volume.ErrBaseChanged, "base is 655360 bytes, the overlay was made over a 589824-byte base"},
		{"base replaced by a file of the same size", func(t *testing.T, d *volume.Descriptor) {
			replaceBase(t, d, size, time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC))
		}, volume.ErrBaseChanged, "base modified 2021-01-01T00:00:00Z"},
		{"base touched", func(t *testing.T, d *volume.Descriptor) {
			fi, _ := os.Stat(d.Paths[2])
			os.Chtimes(d.Paths[2], time.Time{}, fi.ModTime().Add(time.Nanosecond))
		}, volume.ErrBaseChanged, "base modified"},
		{"missing map", func(t *testing.T, d *volume.Descriptor) {
			os.Remove(d.Paths[1])
		}, fs.ErrNotExist, "map "},
		{"missing base", func(t *testing.T, d *volume.Descriptor) {
			os.Remove(d.Paths[2])
		}, fs.ErrNotExist, "base "},
		{"missing delta", func(t *testing.T, d *volume.Descriptor) {
			os.Remove(d.Paths[0])
		}, fs.ErrNotExist, "delta "},
		{"delta too small", func(t *testing.T, d *volume.Descriptor) {
			os.Truncate(d.Paths[0], size-512)
		}, volume.ErrTooSmall, "file is 589312 bytes"},
		{"bad flush interval", func(t *testing.T, d *volume.Descriptor) {
			d.Options = map[string]string{volume.OptionFlushInterval: "soon"}
		}, volume.ErrInvalidDescriptor, `option flush_interval="soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b := filepath.Join(dir, "base.raw")
			data, _ := os.ReadFile(base)
			if err := os.WriteFile(b, data, 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := volume.CreateOverlay(b, filepath.Join(dir, "delta"), filepath.Join(dir, "map"), cluster)
			if err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, &d)
			v, err := volume.Open(d)
			if err == nil {
				v.Close()
				t.Fatal("Open = nil error")
			}
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open = %q, want it to wrap %v and contain %q", err, tt.wantIs, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "open volume "+d.Paths[0]+": ") {
				t.Errorf("Open = %q, want it to name the delta first", err)
			}
		})
	}
}

// replaceBase renames a new base of size bytes over d's, with the given
// modification time.
func replaceBase(t *testing.T, d *volume.Descriptor, size int64, mtime time.Time) {
	t.Helper()
	tmp := d.Paths[2] + ".new"
	if err := os.WriteFile(tmp, pattern(int(size), 0x99), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, time.Time{}, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, d.Paths[2]); err != nil {
		t.Fatal(err)
	}
}

func TestResetOverlay(t *testing.T) {
	const size = 8 * cluster
	base, data := makeBase(t, t.TempDir(), size)
	d := newOverlay(t, base, 16<<10)
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt(pattern(3*cluster, 5), 1000); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := volume.ResetOverlay(d); err != nil {
		t.Fatalf("ResetOverlay = %v", err)
	}
	if allocated(t, d.Paths[0]) != 0 {
		t.Error("the delta still holds data after ResetOverlay")
	}
	v = openVolume(t, d)
	mustEqual(t, "after ResetOverlay", readAll(t, v), data)
	v.Close()
	if entries, _ := os.ReadDir(filepath.Dir(d.Paths[0])); len(entries) != 2 {
		t.Errorf("directory holds %d entries after ResetOverlay, want 2", len(entries))
	}

	// A changed base: Open refuses, ResetOverlay starts over on it.
	newData := pattern(size, 0x33)
	if err := os.Chmod(base, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(base, newData, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := volume.Open(d); !errors.Is(err, volume.ErrBaseChanged) {
		t.Fatalf("Open over a rewritten base = %v, want ErrBaseChanged", err)
	}
	if err := volume.ResetOverlay(d); err != nil {
		t.Fatalf("ResetOverlay over a rewritten base = %v", err)
	}
	mustEqual(t, "reset over a new base", readAll(t, openVolume(t, d)), newData)

	bad := d
	bad.Format = volume.FormatRaw
	bad.Paths = d.Paths[:1]
	if err := volume.ResetOverlay(bad); err == nil || !strings.Contains(err.Error(), `format "raw", want "overlay"`) {
		t.Errorf("ResetOverlay(raw) = %v", err)
	}
}

func TestOverlayAutoFlush(t *testing.T) {
	base, _ := makeBase(t, t.TempDir(), 16*cluster)
	onDisk := func(mapPath string, c int) bool {
		b, err := os.ReadFile(mapPath)
		if err != nil {
			t.Fatal(err)
		}
		return b[4096+c/8]&(1<<(c%8)) != 0
	}
	t.Run("interval", func(t *testing.T) {
		d := newOverlay(t, base, 0)
		d.Options = map[string]string{volume.OptionFlushInterval: "10ms"}
		v := openVolume(t, d)
		if _, err := v.WriteAt([]byte("x"), 3*cluster+5); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); !onDisk(d.Paths[1], 3); {
			if time.Now().After(deadline) {
				t.Fatal("the map on disk does not record the cluster 5s after the write")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("off", func(t *testing.T) {
		d := newOverlay(t, base, 0)
		d.Options = map[string]string{volume.OptionFlushInterval: "0"}
		v := openVolume(t, d)
		if _, err := v.WriteAt([]byte("x"), 3*cluster+5); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		if onDisk(d.Paths[1], 3) {
			t.Fatal("the map records a cluster nobody flushed")
		}
		if err := v.Flush(); err != nil {
			t.Fatal(err)
		}
		if !onDisk(d.Paths[1], 3) {
			t.Fatal("the map does not record the cluster after Flush")
		}
	})
}

func TestOverlayCloseErrors(t *testing.T) {
	base, _ := makeBase(t, t.TempDir(), 4*cluster)
	d := newOverlay(t, base, 0)
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); !errors.Is(err, fs.ErrClosed) || !strings.Contains(err.Error(), d.Paths[0]) {
		t.Errorf("Flush after Close = %v", err)
	}
	if _, err := v.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("ReadAt after Close = %v", err)
	}
	if _, err := v.WriteAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("WriteAt after Close = %v", err)
	}
	if err := v.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("second Close = %v, want fs.ErrClosed", err)
	}
}

// TestOverlayConcurrent runs writers that share clusters (each owns every
// writers-th 512-byte sector), readers, discards and flushes at once; every
// writer then finds its own last data, and so does a reopen.
func TestOverlayConcurrent(t *testing.T) {
	const (
		size    = 16 * cluster
		writers = 8
		rounds  = 60
	)
	base, data := makeBase(t, t.TempDir(), size)
	for _, cs := range []uint32{4 << 10, cluster} {
		t.Run(byteSize(int64(cs)), func(t *testing.T) {
			d := newOverlay(t, base, cs)
			d.Options = map[string]string{volume.OptionFlushInterval: "1ms"}
			v := openVolume(t, d)
			want := make([][]byte, writers) // each writer's model of the volume
			var wg sync.WaitGroup
			start := make(chan struct{})
			for w := range writers {
				want[w] = bytes.Clone(data)
				wg.Go(func() {
					<-start
					r := rand.New(rand.NewPCG(uint64(w), 7))
					for round := range rounds {
						// A few sectors of this writer's, spread over a few clusters.
						first := r.Int64N((size-cluster)/512/writers - 8)
						for k := range int64(8) {
							sector := (first+k)*writers + int64(w)
							off := sector * 512
							p := pattern(512, byte(w*rounds+round))
							var err error
							if r.IntN(8) == 0 {
								err = v.Discard(off, 512)
								clear(p)
							} else {
								_, err = v.WriteAt(p, off)
							}
							if err != nil {
								t.Error(err)
								return
							}
							copy(want[w][off:], p)
						}
						got := make([]byte, 512)
						for k := range int64(8) {
							off := ((first+k)*writers + int64(w)) * 512
							if _, err := v.ReadAt(got, off); err != nil {
								t.Error(err)
								return
							}
							if !bytes.Equal(got, want[w][off:off+512]) {
								t.Errorf("writer %d round %d: sector at %d reads other bytes", w, round, off)
								return
							}
						}
						if round%10 == 0 {
							if err := v.Flush(); err != nil {
								t.Error(err)
							}
						}
					}
				})
			}
			// Whole-cluster discards of clusters nobody writes, at the same time.
			wg.Go(func() {
				<-start
				for range rounds {
					if err := v.Discard(size-cluster, cluster); err != nil {
						t.Error(err)
					}
				}
			})
			close(start)
			wg.Wait()
			if t.Failed() {
				return
			}
			final := bytes.Clone(data)
			clear(final[size-cluster:])
			for sector := range int64(size / 512) {
				if sector*512 >= size-cluster {
					break
				}
				w := sector % writers
				copy(final[sector*512:(sector+1)*512], want[w][sector*512:])
			}
			mustEqual(t, "after concurrent writes", readAll(t, v), final)
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "reopened", readAll(t, openVolume(t, d)), final)
		})
	}
}

// TestOverlaySameClusterRace starts many first writes into the same
// unallocated clusters at the same instant: none may lose another's bytes.
func TestOverlaySameClusterRace(t *testing.T) {
	const size = 8 * cluster
	base, data := makeBase(t, t.TempDir(), size)
	v := openVolume(t, newOverlay(t, base, 0))
	want := bytes.Clone(data)
	for c := range int64(size / cluster) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for w := range int64(16) {
			off := c*cluster + w*4096 + 100
			p := pattern(1000, byte(c*16+w))
			copy(want[off:], p)
			wg.Go(func() {
				<-start
				if _, err := v.WriteAt(p, off); err != nil {
					t.Error(err)
				}
			})
		}
		close(start)
		wg.Wait()
	}
	mustEqual(t, "after racing first writes", readAll(t, v), want)
}

func TestCopyVolume(t *testing.T) {
	const size = 64 * cluster
	dir := t.TempDir()
	// A base with holes: data in its first and last quarter only.
	base := filepath.Join(dir, "base.raw")
	data := make([]byte, size)
	copy(data, pattern(size/4, 1))
	copy(data[3*size/4:], pattern(size/4, 2))
	for i := 0; i < size/4; i += 512 {
		data[i], data[3*size/4+i] = 0xBA, 0xBA
	}
	f, err := os.Create(base)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.WriteAt(data[:size/4], 0)
	f.WriteAt(data[3*size/4:], 3*size/4)
	f.Close()

	d := newOverlay(t, base, 0)
	v := openVolume(t, d)
	want := bytes.Clone(data)
	for _, w := range [][2]int64{{100, 5000}, {size / 2, 3 * cluster}, {size - 4096, 4096}} {
		p := pattern(int(w[1]), 9)
		p[0] = 0xBA
		if _, err := v.WriteAt(p, w[0]); err != nil {
			t.Fatal(err)
		}
		copy(want[w[0]:], p)
	}
	if err := v.Discard(8*cluster, 4*cluster); err != nil {
		t.Fatal(err)
	}
	clear(want[8*cluster : 12*cluster])
	if _, err := v.WriteAt(make([]byte, cluster), 4*cluster); err != nil { // written zeros
		t.Fatal(err)
	}
	clear(want[4*cluster : 5*cluster])
	v.Close()
	ro := d
	ro.ReadOnly = true
	src := openVolume(t, ro)

	out := filepath.Join(t.TempDir(), "flat.raw")
	if err := volume.CopyVolume(context.Background(), out, src); err != nil {
		t.Fatalf("CopyVolume = %v", err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	mustEqual(t, "flattened copy", got, want)
	nonzero := int64(0)
	for i := 0; i < size; i += 4096 {
		if !bytes.Equal(want[i:i+4096], make([]byte, 4096)) {
			nonzero += 4096
		}
	}
	if a := allocated(t, out); a > nonzero+64<<10 {
		t.Errorf("copy allocates %d bytes, its non-zero blocks are %d: not sparse", a, nonzero)
	}
	// The copy opens as a raw volume.
	flat := openVolume(t, volume.Descriptor{Format: volume.FormatRaw, Paths: []string{out}, Size: size})
	mustEqual(t, "copy opened raw", readAll(t, flat), want)

	if err := volume.CopyVolume(context.Background(), out, src); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CopyVolume onto an existing file = %v, want fs.ErrExist", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	outDir := t.TempDir()
	if err := volume.CopyVolume(ctx, filepath.Join(outDir, "x.raw"), src); !errors.Is(err, context.Canceled) {
		t.Errorf("CopyVolume with a canceled context = %v", err)
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 0 {
		t.Errorf("a canceled CopyVolume left %d files behind", len(entries))
	}
}

// TestOverlayLargeSparseBase: a 10 GiB base costs nothing to clone, open,
// or write near its end.
func TestOverlayLargeSparseBase(t *testing.T) {
	const size = 10 << 30
	base := filepath.Join(t.TempDir(), "big.raw")
	f, err := os.Create(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("tail"), size-4)
	f.Close()
	d := newOverlay(t, base, 0)
	v := openVolume(t, d)
	got := make([]byte, 8)
	if _, err := v.ReadAt(got, size-8); err != nil || string(got) != "\x00\x00\x00\x00tail" {
		t.Fatalf("ReadAt end = %q, %v", got, err)
	}
	if _, err := v.WriteAt([]byte("new"), size-8); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ReadAt(got, size-8); err != nil || string(got) != "new\x00tail" {
		t.Fatalf("ReadAt end after write = %q, %v", got, err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if a := allocated(t, d.Paths[0]) + allocated(t, d.Paths[1]); a > 1<<20 {
		t.Errorf("delta and map allocate %d bytes after one write", a)
	}
}
