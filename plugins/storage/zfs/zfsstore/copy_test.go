package zfsstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// file writes a file of size bytes: zeros (a hole), with random data at
// the given block indexes (of copyBlock bytes).
func file(t *testing.T, size int64, blocks ...int64) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "f")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		p := make([]byte, min(copyBlock, size-b*copyBlock))
		_, _ = rand.Read(p)
		if _, err := f.WriteAt(p, b*copyBlock); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func content(t *testing.T, f *os.File, size int64) []byte {
	t.Helper()
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCopyDeltaIntoNewFile(t *testing.T) {
	const size = 200*copyBlock + 512 // a partial last block
	src := file(t, size, 0, 1, 70, 71, 72, 199, 200)
	dst := file(t, size)
	var last int64
	written, err := copyDelta(t.Context(), dst, src, size, 0, func(done, total int64) {
		if done < last || total != size {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last = done
	})
	if err != nil {
		t.Fatal(err)
	}
	if last != size {
		t.Errorf("progress ended at %d, want %d", last, size)
	}
	if !bytes.Equal(content(t, dst, size), content(t, src, size)) {
		t.Fatal("copy differs from source")
	}
	if want := int64(6*copyBlock + 512); written != want {
		t.Errorf("wrote %d bytes, want %d: only the source's data blocks", written, want)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(dst.Fd()), &st); err == nil && st.Blocks*512 > 2*size/10 {
		t.Errorf("copy takes %d bytes on disk for %d of data: zero blocks were written", st.Blocks*512, written)
	}
}

func TestCopyDeltaOverOldContent(t *testing.T) {
	const size = 64 * copyBlock
	old := file(t, size, 0, 1, 2, 3, 10, 20, 30, 40, 63)
	src := file(t, size)
	if _, err := src.WriteAt(content(t, old, size), 0); err != nil {
		t.Fatal(err)
	}
	// Change two blocks, zero a third, fill a hole.
	for _, b := range []int64{2, 30} {
		if _, err := src.WriteAt([]byte("changed"), b*copyBlock+100); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.WriteAt(make([]byte, copyBlock), 40*copyBlock); err != nil {
		t.Fatal(err)
	}
	if _, err := src.WriteAt([]byte("new"), 50*copyBlock); err != nil {
		t.Fatal(err)
	}
	written, err := copyDelta(t.Context(), old, src, size, size, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(content(t, old, size), content(t, src, size)) {
		t.Fatal("copy differs from source")
	}
	if written != 4*copyBlock {
		t.Errorf("wrote %d bytes, want the 4 blocks that differ (%d)", written, 4*copyBlock)
	}
}

func TestCopyDeltaSourceHolesOverData(t *testing.T) {
	// The source is all hole; the destination's old data must become zeros,
	// and only before zeroFrom (not block-aligned) is anything compared.
	const size = 40 * copyBlock
	dst := file(t, size, 5, 6, 7, 35)
	zeroFrom := int64(6*copyBlock + 1000)
	// What lies past zeroFrom is, by contract, zeros: make it so.
	if _, err := dst.WriteAt(make([]byte, size-zeroFrom), zeroFrom); err != nil {
		t.Fatal(err)
	}
	src := file(t, size)
	written, err := copyDelta(t.Context(), dst, src, size, zeroFrom, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(content(t, dst, size), make([]byte, size)) {
		t.Error("destination not zeroed where the source is a hole")
	}
	if written != 2*copyBlock {
		t.Errorf("wrote %d bytes, want blocks 5 and 6 (%d)", written, 2*copyBlock)
	}
}

func TestCopyDeltaStops(t *testing.T) {
	const size = 4 * copyChunk
	src := file(t, size, 0, 40, 100)
	dst := file(t, size)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := copyDelta(ctx, dst, src, size, 0, func(done, _ int64) {
		if done >= copyChunk {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled copy: %v", err)
	}
	short := file(t, copyBlock)
	if _, err := copyDelta(t.Context(), dst, short, 2*copyBlock, 0, nil); err == nil {
		t.Error("copy of a source shorter than size succeeded")
	}
}

func TestHeldOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	held, known := heldOpen(t.Context(), p)
	if !known {
		t.Skip("this kernel or filesystem does not grant leases")
	}
	if held {
		t.Error("a closed file is held open")
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if held, known := heldOpen(t.Context(), p); !held || !known {
		t.Errorf("an open file: held %v known %v", held, known)
	}
	f.Close()
	if held, _ := heldOpen(t.Context(), p); held {
		t.Error("held after close")
	}
	if _, known := heldOpen(t.Context(), p+".missing"); known {
		t.Error("a missing file is known")
	}
}

func TestKeyLock(t *testing.T) {
	k := newKeyLock()
	unlock, err := k.lock(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	other, err := k.lock(t.Context(), "b")
	if err != nil {
		t.Fatalf("another key waits: %v", err)
	}
	other()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := k.lock(ctx, "a"); !errors.Is(err, context.Canceled) || !bytes.Contains([]byte(err.Error()), []byte("a")) {
		t.Errorf("lock of a held key with an ended context: %v", err)
	}
	got := make(chan struct{})
	go func() {
		u, err := k.lock(t.Context(), "a")
		if err == nil {
			u()
		}
		close(got)
	}()
	unlock()
	<-got
	if len(k.locks) != 0 {
		t.Errorf("%d lock entries left", len(k.locks))
	}
}

func TestPins(t *testing.T) {
	p := newPins()
	ref := versionRef{"lab", 2}
	unpin, ok := p.pin(ref)
	if !ok {
		t.Fatal("pin refused")
	}
	if _, ok := p.startDelete(ref); ok {
		t.Error("a pinned version can be deleted")
	}
	if _, ok := p.startDelete(versionRef{"lab", 0}); ok {
		t.Error("an image with a pinned version can be deleted")
	}
	done, ok := p.startDelete(versionRef{"lab", 1})
	if !ok {
		t.Fatal("an unpinned version cannot be deleted")
	}
	if _, ok := p.pin(versionRef{"lab", 1}); ok {
		t.Error("a version being deleted can be pinned")
	}
	done()
	unpin()
	done, ok = p.startDelete(versionRef{"lab", 0})
	if !ok {
		t.Fatal("image delete refused with nothing pinned")
	}
	if _, ok := p.pin(ref); ok {
		t.Error("a version of an image being deleted can be pinned")
	}
	done()
	if len(p.pinned)+len(p.deleting) != 0 {
		t.Error(fmt.Sprint("left: ", p.pinned, p.deleting))
	}
}
