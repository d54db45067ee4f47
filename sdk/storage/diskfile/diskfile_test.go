package diskfile_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/storage/diskfile"
)

func TestNoSpace(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
		err := diskfile.NoSpace(fmt.Errorf("import lab: %w", &os.PathError{Op: "write", Path: "/x", Err: errno}))
		if !errors.Is(err, storage.ErrNoSpace) || !errors.Is(err, errno) {
			t.Errorf("NoSpace(wrapped %v) = %v, want it to wrap ErrNoSpace and the errno", errno, err)
		}
		if again := diskfile.NoSpace(err); again != err {
			t.Errorf("NoSpace of a marked error = %q, want it unchanged (%q)", again, err)
		}
	}
	if err := diskfile.NoSpace(syscall.EIO); errors.Is(err, storage.ErrNoSpace) || err != syscall.EIO {
		t.Errorf("NoSpace(EIO) = %v, want EIO unchanged", err)
	}
	if err := diskfile.NoSpace(nil); err != nil {
		t.Errorf("NoSpace(nil) = %v", err)
	}
}

func TestWriteAtomicReplacesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := diskfile.WriteAtomic(path, 0o440, func(f *os.File) error {
		_, err := f.WriteString("new")
		return err
	})
	if err != nil {
		t.Fatalf("WriteAtomic: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("content %q, want new", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o440 {
		t.Errorf("mode %v, want 0440", fi.Mode().Perm())
	}
	assertOnly(t, dir, "manifest.json")
	if err := diskfile.WriteFile(path, []byte("newer"), 0o600); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "newer" {
		t.Errorf("content after WriteFile %q, want newer", b)
	}
	assertOnly(t, dir, "manifest.json")
}

func TestWriteAtomicFailureLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "v1.raw")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := diskfile.WriteAtomic(path, 0o600, func(f *os.File) error {
		if !strings.HasPrefix(filepath.Base(f.Name()), diskfile.TempPrefix) {
			t.Errorf("temporary file %s does not start with %q", f.Name(), diskfile.TempPrefix)
		}
		f.WriteString("half")
		return fmt.Errorf("write: %w", syscall.ENOSPC)
	})
	if !errors.Is(err, storage.ErrNoSpace) {
		t.Errorf("WriteAtomic with fill failing on ENOSPC = %v, want ErrNoSpace", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("content after a failed write %q, want old", b)
	}
	assertOnly(t, dir, "v1.raw")
}

func TestCopySparse(t *testing.T) {
	dir := t.TempDir()
	const size = 4 << 20
	data := make([]byte, size)
	copy(data[1<<20:], "data in block one")
	copy(data[size-512:], "last sector")
	src := filepath.Join(dir, "src.raw")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, "dst.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var last, calls int64
	err = diskfile.CopySparse(t.Context(), out, in, size, func(done, total int64) {
		if done < last || total != size {
			t.Errorf("progress(%d, %d) after %d: must not go back, total %d", done, total, last, size)
		}
		last = done
		calls++
	})
	if err != nil {
		t.Fatalf("CopySparse: %v", err)
	}
	if last != size || calls == 0 {
		t.Errorf("progress ended at %d after %d calls, want %d", last, calls, size)
	}
	got, _ := os.ReadFile(out.Name())
	if !bytes.Equal(got, data) {
		t.Fatal("copy differs from the source")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(out.Name(), &st); err == nil && st.Blocks*512 >= size {
		t.Errorf("copy allocates %d bytes of %d: zero blocks were written", st.Blocks*512, size)
	}
}

func TestCopySparseStops(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "short.raw")
	if err := os.WriteFile(src, bytes.Repeat([]byte{1}, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	in, _ := os.Open(src)
	defer in.Close()
	out, _ := os.Create(filepath.Join(dir, "dst.raw"))
	defer out.Close()
	if err := diskfile.CopySparse(t.Context(), out, in, 8192, nil); err == nil || !strings.Contains(err.Error(), "source ended at byte 4096") {
		t.Errorf("CopySparse of a short source = %v, want it to say where the source ended", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := diskfile.CopySparse(ctx, out, in, 4096, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("CopySparse with a cancelled context = %v, want context.Canceled", err)
	}
}

// assertOnly fails t unless dir holds exactly the file name.
func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != name {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %v, want only %s (no temporary file left)", dir, names, name)
	}
}

func TestCopyRaw(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.raw")
	data := bytes.Repeat([]byte("disk"), 1024)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "v1.raw")
	if n, err := diskfile.CopyRaw(t.Context(), dst, src, 0o440, nil); err != nil || n != int64(len(data)) {
		t.Fatalf("CopyRaw = %d, %v; want %d, nil", n, err, len(data))
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Error("copy differs from the source")
	}
	odd := filepath.Join(dir, "odd.raw")
	if err := os.WriteFile(odd, data[:1000], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{odd, dir, filepath.Join(dir, "missing.raw")} {
		if _, err := diskfile.CopyRaw(t.Context(), filepath.Join(dir, "out.raw"), bad, 0o600, nil); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("CopyRaw from %s = %v, want an error naming it", bad, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.raw")); err == nil {
		t.Error("a refused copy left its destination")
	}
}
