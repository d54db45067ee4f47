package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// copyChunk is how much CopyVolume reads at once; copyBlock is the unit it
// leaves as a hole when all zeros.
const (
	copyChunk = 1 << 20
	copyBlock = 4 << 10
)

// CopyVolume writes v's content, from byte 0 to v.Size(), into a new raw
// file at dst: the way to flatten an overlay into a standalone image (say,
// to promote a client's volume to a new image version). The copy is
// sparse: every all-zero 4 KiB block, whether a hole, a discarded range or
// written zeros, is left as a hole.
//
// The file is written under a temporary name beside dst, synced, linked as
// dst without replacing anything (fs.ErrExist if dst exists) and its
// directory synced, so dst never exists half-written, even after a crash.
// It has mode 0640. CopyVolume checks ctx between 1 MiB chunks and gives up
// with ctx's error, leaving nothing behind. v is only read: open it
// read-only, and make sure no one writes to it meanwhile (for an overlay,
// Open's lock does).
func CopyVolume(ctx context.Context, dst string, v Volume) error {
	fail := func(err error) error {
		return fmt.Errorf("copy volume to %s: %w", dst, err)
	}
	if _, err := os.Lstat(dst); err == nil {
		return fail(fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(unwrapPathError(err))
	}
	f, err := createTemp(dst)
	if err != nil {
		return fail(err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := copyInto(ctx, f, v); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Link(tmp, dst); err != nil {
		return fail(unwrapLinkError(err))
	}
	os.Remove(tmp)
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return fail(err)
	}
	return nil
}

// copyInto copies v into f (empty), writing only blocks that are not all
// zeros, then syncs f.
func copyInto(ctx context.Context, f *os.File, v Volume) error {
	size := v.Size()
	if err := f.Truncate(size); err != nil {
		return unwrapPathError(err)
	}
	buf := make([]byte, copyChunk)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buf[:min(int64(len(buf)), size-off)]
		if _, err := v.ReadAt(chunk, off); err != nil {
			return err
		}
		// Write each run of blocks that are not all zeros.
		for i := 0; i < len(chunk); {
			for i < len(chunk) && isZero(chunk[i:min(i+copyBlock, len(chunk))]) {
				i += copyBlock
			}
			j := i
			for j < len(chunk) && !isZero(chunk[j:min(j+copyBlock, len(chunk))]) {
				j += copyBlock
			}
			j = min(j, len(chunk))
			if i < j {
				if _, err := f.WriteAt(chunk[i:j], off+int64(i)); err != nil {
					return err
				}
			}
			i = j
		}
		off += int64(len(chunk))
	}
	return datasync(f)
}

// isZero reports whether p (at most len(zeros) bytes) is all zeros.
func isZero(p []byte) bool {
	return bytes.Equal(p, zeros[:len(p)])
}
