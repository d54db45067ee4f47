package zfsstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/dls-project/dls/sdk/storage/diskfile"
	"golang.org/x/sys/unix"
)

// Copy granularity. copyBlock is ZFS's default recordsize: a block that
// does not change is never rewritten, so the new version snapshot shares
// it with the old one, and a block of zeros on a fresh disk stays a hole.
const (
	copyBlock = 128 << 10
	copyChunk = 32 * copyBlock // read at a time, between checks of ctx
)

var zeroBlock [copyBlock]byte

// copyDelta makes the first size bytes of dst equal to those of src. It
// writes only the blocks that differ: dst's bytes before zeroFrom are read
// and compared, those from zeroFrom on are known to read as zeros (a new
// file, or the part a truncate grew) and are not read, so zero blocks of
// src are skipped there. Holes in src (SEEK_DATA) are not read either.
// Writing over an older copy (a re-import, a promotion) thus costs only
// the changed blocks, both in writes and in space once snapshotted.
//
// dst must already be at least size bytes long (the caller truncates a
// file, sizes a zvol). progress, if set, is called after each chunk with
// the bytes done. copyDelta syncs dst before it returns, and returns the
// bytes it wrote. A full pool or quota yields an error wrapping
// storage.ErrNoSpace.
func copyDelta(ctx context.Context, dst, src *os.File, size, zeroFrom int64, progress func(done, total int64)) (int64, error) {
	sbuf := make([]byte, copyChunk)
	dbuf := make([]byte, copyChunk)
	holes := newHoleFinder(src)
	var written int64
	for off := int64(0); off < size; off += copyChunk {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		n := int(min(copyChunk, size-off))
		s := sbuf[:n]
		srcHole := holes.isHole(off, int64(n))
		if srcHole && off >= zeroFrom {
			if progress != nil {
				progress(off+int64(n), size)
			}
			continue
		}
		if srcHole {
			clear(s)
		} else if _, err := src.ReadAt(s, off); err != nil {
			return written, fmt.Errorf("read %s at %d: %w", src.Name(), off, err)
		}
		// Bytes of dst to compare with: those before zeroFrom.
		known := int(max(0, min(int64(n), zeroFrom-off)))
		d := dbuf[:known]
		if known > 0 {
			if _, err := dst.ReadAt(d, off); err != nil && !errors.Is(err, io.EOF) {
				return written, fmt.Errorf("read %s at %d: %w", dst.Name(), off, err)
			}
		}
		// Write runs of changed blocks in one call each.
		runStart := -1
		flush := func(end int) error {
			if runStart < 0 {
				return nil
			}
			at := off + int64(runStart)
			w, err := dst.WriteAt(s[runStart:end], at)
			written += int64(w)
			runStart = -1
			if err != nil {
				return fmt.Errorf("write %s at %d: %w", dst.Name(), at, diskfile.NoSpace(err))
			}
			return nil
		}
		for b := 0; b < n; b += copyBlock {
			e := min(b+copyBlock, n)
			var same bool
			switch {
			case e <= known:
				same = bytes.Equal(s[b:e], d[b:e])
			case b >= known:
				same = bytes.Equal(s[b:e], zeroBlock[:e-b])
			default: // the block straddles zeroFrom
				same = bytes.Equal(s[b:known], d[b:known]) && bytes.Equal(s[known:e], zeroBlock[:e-known])
			}
			if same {
				if err := flush(b); err != nil {
					return written, err
				}
			} else if runStart < 0 {
				runStart = b
			}
		}
		if err := flush(n); err != nil {
			return written, err
		}
		if progress != nil {
			progress(off+int64(n), size)
		}
	}
	if err := dst.Sync(); err != nil {
		return written, fmt.Errorf("sync %s: %w", dst.Name(), diskfile.NoSpace(err))
	}
	return written, nil
}

// holeFinder tells which ranges of a file are holes, with SEEK_DATA. Where
// the filesystem cannot tell (zfs-fuse, a device), everything is data.
// Nothing past the file's end is a hole: reading there fails, as it must.
type holeFinder struct {
	f        *os.File
	end      int64 // the file's size
	nextData int64 // first data offset at or after the last query; end: none
	queried  int64 // offset of the last query, -1 before the first
	broken   bool
}

func newHoleFinder(f *os.File) *holeFinder {
	h := &holeFinder{f: f, queried: -1}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		h.broken = true
	} else {
		h.end = fi.Size()
	}
	return h
}

// isHole reports whether [off, off+n) holds no data. Queries must come in
// increasing offsets.
func (h *holeFinder) isHole(off, n int64) bool {
	if h.broken || off+n > h.end {
		return false
	}
	if h.queried < 0 || off > h.nextData || off < h.queried {
		next, err := unix.Seek(int(h.f.Fd()), off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, syscall.ENXIO): // no data from off to the end
			next = h.end
		case err != nil:
			h.broken = true
			return false
		}
		h.nextData, h.queried = next, off
	}
	return h.nextData >= off+n
}
