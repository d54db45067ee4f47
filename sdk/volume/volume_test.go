package volume_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dls-project/dls/sdk/volume"
)

// makeFile creates a sparse file of size bytes in dir and returns its path.
func makeFile(t testing.TB, dir string, size int64) string {
	t.Helper()
	path := filepath.Join(dir, "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func rawDescriptor(path string, size int64) volume.Descriptor {
	return volume.Descriptor{Format: volume.FormatRaw, Paths: []string{path}, Size: size}
}

// openTemp opens a fresh read-write raw volume of size bytes.
func openTemp(t testing.TB, size int64) (volume.Volume, string) {
	t.Helper()
	path := makeFile(t, t.TempDir(), size)
	v, err := volume.Open(rawDescriptor(path, size))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v, path
}

func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = seed + byte(i*7)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	const size = 1 << 20
	v, path := openTemp(t, size)
	if v.Size() != size || v.BlockSize() != 512 {
		t.Fatalf("Size, BlockSize = %d, %d; want %d, 512", v.Size(), v.BlockSize(), size)
	}
	writes := []struct {
		off int64
		n   int
	}{{0, 512}, {4096, 8192}, {size - 512, 512}, {777, 13}} // the last one unaligned
	for i, w := range writes {
		p := pattern(w.n, byte(i+1))
		if n, err := v.WriteAt(p, w.off); err != nil || n != w.n {
			t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", w.n, w.off, n, err)
		}
		got := make([]byte, w.n)
		if n, err := v.ReadAt(got, w.off); err != nil || n != w.n {
			t.Fatalf("ReadAt(%d bytes, %d) = %d, %v", w.n, w.off, n, err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("ReadAt(%d bytes, %d) returned other bytes than written", w.n, w.off)
		}
	}
	// Untouched space reads as zeros.
	got := make([]byte, 1024)
	if _, err := v.ReadAt(got, 64<<10); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, 1024)) {
		t.Fatal("unwritten range does not read as zeros")
	}
	if err := v.Flush(); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	// The data reached the file.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data[4096:4096+8192], pattern(8192, 2)) {
		t.Fatal("file does not hold what was written")
	}
}

func TestBlockSize4096(t *testing.T) {
	path := makeFile(t, t.TempDir(), 1<<20)
	d := rawDescriptor(path, 1<<20)
	d.BlockSize = 4096
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.BlockSize() != 4096 {
		t.Fatalf("BlockSize() = %d, want 4096", v.BlockSize())
	}
}

func TestFileLongerThanSize(t *testing.T) {
	// A file longer than Size is allowed; the rest is never touched.
	path := makeFile(t, t.TempDir(), 2<<20)
	v, err := volume.Open(rawDescriptor(path, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Size() != 1<<20 {
		t.Fatalf("Size() = %d, want the descriptor's %d", v.Size(), 1<<20)
	}
	if _, err := v.WriteAt([]byte{1}, 1<<20); !errors.Is(err, volume.ErrOutOfRange) {
		t.Fatalf("WriteAt at Size = %v, want ErrOutOfRange", err)
	}
}

func TestBounds(t *testing.T) {
	const size = 64 << 10
	v, path := openTemp(t, size)
	buf := make([]byte, 4096)
	bad := []struct {
		name string
		off  int64
		n    int
	}{
		{"negative offset", -1, 10},
		{"at end", size, 1},
		{"straddles end", size - 100, 4096},
		{"far past end", 1 << 40, 4096},
		{"offset overflows", math.MaxInt64, 4096},
		{"offset at MaxInt64-1", math.MaxInt64 - 1, 2},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if n, err := v.ReadAt(buf[:tt.n], tt.off); n != 0 || !errors.Is(err, volume.ErrOutOfRange) {
				t.Errorf("ReadAt = %d, %v; want 0, ErrOutOfRange", n, err)
			}
			if n, err := v.WriteAt(buf[:tt.n], tt.off); n != 0 || !errors.Is(err, volume.ErrOutOfRange) {
				t.Errorf("WriteAt = %d, %v; want 0, ErrOutOfRange", n, err)
			}
			if err := v.Discard(tt.off, int64(tt.n)); !errors.Is(err, volume.ErrOutOfRange) {
				t.Errorf("Discard = %v; want ErrOutOfRange", err)
			}
		})
	}
	if err := v.Discard(0, -1); !errors.Is(err, volume.ErrOutOfRange) {
		t.Errorf("Discard(0, -1) = %v; want ErrOutOfRange", err)
	}
	if err := v.Discard(1, math.MaxInt64); !errors.Is(err, volume.ErrOutOfRange) {
		t.Errorf("Discard(1, MaxInt64) = %v; want ErrOutOfRange", err)
	}

	// The message says what was asked of which volume.
	_, err := v.WriteAt(buf, size-100)
	want := fmt.Sprintf("write volume %s: 4096 bytes at offset %d: outside the volume (size %d)", path, size-100, size)
	if err == nil || err.Error() != want {
		t.Errorf("WriteAt error = %q, want %q", err, want)
	}

	// Edges that are inside: empty requests anywhere in [0, size], and the last byte.
	for _, off := range []int64{0, size / 2, size} {
		if n, err := v.ReadAt(nil, off); n != 0 || err != nil {
			t.Errorf("ReadAt(nil, %d) = %d, %v; want 0, nil", off, n, err)
		}
		if n, err := v.WriteAt(nil, off); n != 0 || err != nil {
			t.Errorf("WriteAt(nil, %d) = %d, %v; want 0, nil", off, n, err)
		}
		if err := v.Discard(off, 0); err != nil {
			t.Errorf("Discard(%d, 0) = %v; want nil", off, err)
		}
	}
	if _, err := v.WriteAt([]byte{0xAB}, size-1); err != nil {
		t.Errorf("WriteAt last byte = %v", err)
	}

	// Nothing was ever written past the end.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Fatalf("file size = %d after out-of-range writes, want %d", fi.Size(), size)
	}
}

func TestReadOnly(t *testing.T) {
	const size = 64 << 10
	path := makeFile(t, t.TempDir(), size)
	if err := os.WriteFile(path, pattern(size, 9), 0o600); err != nil {
		t.Fatal(err)
	}
	d := rawDescriptor(path, size)
	d.ReadOnly = true
	v, err := volume.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()

	got := make([]byte, 512)
	if _, err := v.ReadAt(got, 512); err != nil {
		t.Fatalf("ReadAt on read-only volume = %v", err)
	}
	if !bytes.Equal(got, pattern(size, 9)[512:1024]) {
		t.Fatal("read-only volume reads other bytes than the file holds")
	}
	if n, err := v.WriteAt([]byte{1}, 0); n != 0 || !errors.Is(err, volume.ErrReadOnly) {
		t.Errorf("WriteAt = %d, %v; want 0, ErrReadOnly", n, err)
	}
	if err := v.Discard(0, 512); !errors.Is(err, volume.ErrReadOnly) {
		t.Errorf("Discard = %v; want ErrReadOnly", err)
	}
	if err := v.Flush(); err != nil {
		t.Errorf("Flush on read-only volume = %v; want nil", err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Equal(data, pattern(size, 9)) {
		t.Fatal("read-only volume changed the file")
	}
}

func TestReadOnlyOpensUnwritableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write any file; the permission check does not apply")
	}
	path := makeFile(t, t.TempDir(), 4096)
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	d := rawDescriptor(path, 4096)
	if _, err := volume.Open(d); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Open read-write of a 0400 file = %v, want permission error", err)
	}
	d.ReadOnly = true
	v, err := volume.Open(d)
	if err != nil {
		t.Fatalf("Open read-only of a 0400 file = %v", err)
	}
	v.Close()
}

func TestDiscardZeroes(t *testing.T) {
	const size = 1 << 20
	v, _ := openTemp(t, size)
	data := pattern(size, 3)
	if _, err := v.WriteAt(data, 0); err != nil {
		t.Fatal(err)
	}
	// One aligned range and one unaligned one.
	ranges := [][2]int64{{128 << 10, 256 << 10}, {1000, 3000}}
	for _, r := range ranges {
		if err := v.Discard(r[0], r[1]); err != nil {
			t.Fatalf("Discard(%d, %d) = %v", r[0], r[1], err)
		}
		clear(data[r[0] : r[0]+r[1]])
	}
	got := make([]byte, size)
	if _, err := v.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(got, data); i >= 0 {
		t.Fatalf("after Discard, byte %d = %#x, want %#x", i, got[i], data[i])
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func TestFlushAndCloseErrors(t *testing.T) {
	v, path := openTemp(t, 4096)
	if _, err := v.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Flush(); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if err := v.Flush(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Flush after Close = %v, want an error naming %s", err, path)
	}
	if _, err := v.ReadAt(make([]byte, 1), 0); err == nil {
		t.Error("ReadAt after Close = nil error")
	}
	if err := v.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("second Close = %v, want fs.ErrClosed", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	small := makeFile(t, t.TempDir(), 4096)

	t.Run("file smaller than size", func(t *testing.T) {
		_, err := volume.Open(rawDescriptor(small, 8192))
		if !errors.Is(err, volume.ErrTooSmall) {
			t.Fatalf("Open = %v, want ErrTooSmall", err)
		}
		for _, s := range []string{"open volume " + small + ": ", "4096", "8192"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not contain %q", err, s)
			}
		}
	})
	t.Run("missing file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.raw")
		_, err := volume.Open(rawDescriptor(missing, 4096))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open = %v, want fs.ErrNotExist", err)
		}
		want := "open volume " + missing + ": no such file or directory"
		if err.Error() != want {
			t.Errorf("Open error = %q, want %q", err, want)
		}
	})
	t.Run("directory", func(t *testing.T) {
		d := rawDescriptor(dir, 4096)
		d.ReadOnly = true
		if _, err := volume.Open(d); err == nil || !strings.Contains(err.Error(), "not a regular file or block device") {
			t.Fatalf("Open = %v, want a file type error", err)
		}
	})
	t.Run("character device", func(t *testing.T) {
		if _, err := os.Stat("/dev/zero"); err != nil {
			t.Skip("no /dev/zero")
		}
		if _, err := volume.Open(rawDescriptor("/dev/zero", 4096)); err == nil || !strings.Contains(err.Error(), "not a regular file or block device") {
			t.Fatalf("Open = %v, want a file type error", err)
		}
	})
	t.Run("invalid descriptor", func(t *testing.T) {
		_, err := volume.Open(rawDescriptor("relative.raw", 4096))
		if !errors.Is(err, volume.ErrInvalidDescriptor) || !strings.HasPrefix(err.Error(), "open volume relative.raw: ") {
			t.Fatalf("Open = %v, want ErrInvalidDescriptor naming the path", err)
		}
		_, err = volume.Open(volume.Descriptor{Format: volume.FormatRaw, Size: 512})
		if !errors.Is(err, volume.ErrInvalidDescriptor) || !strings.HasPrefix(err.Error(), "open volume: ") {
			t.Fatalf("Open without paths = %v", err)
		}
	})
	t.Run("overlay whose map is not a map", func(t *testing.T) {
		d := volume.Descriptor{Format: volume.FormatOverlay, Paths: []string{small, small, small}, Size: 4096}
		_, err := volume.Open(d)
		if !errors.Is(err, volume.ErrBadMap) || !strings.Contains(err.Error(), "map "+small+": ") {
			t.Fatalf("Open overlay = %v, want ErrBadMap naming the map", err)
		}
	})
}

func TestConcurrentWriters(t *testing.T) {
	const (
		writers = 16
		chunk   = 64 << 10
		rounds  = 8
	)
	v, _ := openTemp(t, writers*chunk)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			off := int64(w * chunk)
			for r := range rounds {
				p := pattern(chunk, byte(w*rounds+r))
				if _, err := v.WriteAt(p, off); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				got := make([]byte, chunk)
				if _, err := v.ReadAt(got, off); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				if !bytes.Equal(got, p) {
					t.Errorf("writer %d round %d: read back other bytes", w, r)
					return
				}
				if r == rounds/2 {
					if err := v.Flush(); err != nil {
						t.Errorf("writer %d: Flush: %v", w, err)
					}
				}
			}
		})
	}
	wg.Wait()
	// Every range holds its writer's last round.
	all := make([]byte, writers*chunk)
	if _, err := v.ReadAt(all, 0); err != nil {
		t.Fatal(err)
	}
	for w := range writers {
		if !bytes.Equal(all[w*chunk:(w+1)*chunk], pattern(chunk, byte(w*rounds+rounds-1))) {
			t.Fatalf("range of writer %d does not hold its last write", w)
		}
	}
}

// A Volume is a plain io.ReaderAt: io.SectionReader reads it to the end.
func TestSectionReader(t *testing.T) {
	const size = 8192
	v, _ := openTemp(t, size)
	if _, err := v.WriteAt(pattern(size, 5), 0); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.NewSectionReader(v, 0, v.Size()))
	if err != nil || !bytes.Equal(got, pattern(size, 5)) {
		t.Fatalf("ReadAll(SectionReader) = %d bytes, %v", len(got), err)
	}
}
