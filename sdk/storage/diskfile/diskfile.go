// Package diskfile is the file handling of storage plugins that keep disks
// as files: writes that are whole or absent after a crash, copies that
// keep a disk image's holes, and full disks reported as
// storage.ErrNoSpace.
//
// WriteAtomic and SyncDir take no context: they are a handful of local
// system calls, like os.WriteFile. A fill function that copies for long
// checks its caller's context itself, as CopySparse does.
package diskfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/dls-project/dls/sdk/storage"
	"golang.org/x/sys/unix"
)

// TempPrefix starts the name of every temporary file WriteAtomic makes, so
// that a plugin can remove what a crash left behind (at Configure, say).
const TempPrefix = ".tmp-"

// NoSpace marks a full filesystem or quota (ENOSPC, EDQUOT anywhere in
// err's chain) with storage.ErrNoSpace, so that the host can tell the
// admin precisely. Other errors, nil, and errors already marked are
// returned as they are.
func NoSpace(err error) error {
	if err != nil && (errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) && !errors.Is(err, storage.ErrNoSpace) {
		return fmt.Errorf("%w: %w", storage.ErrNoSpace, err)
	}
	return err
}

// WriteAtomic creates or replaces path with the content fill writes into a
// temporary file beside it (named TempPrefix+base+"-*"), which is given
// perm, synced, renamed into place, and the directory synced. On any error
// the temporary file is removed: no half-made file ever has the final
// name, and the old one, if any, is untouched. Errors from a full disk,
// fill's included, wrap storage.ErrNoSpace.
func WriteAtomic(path string, perm os.FileMode, fill func(f *os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return NoSpace(fmt.Errorf("create temporary file in %s: %w", dir, err))
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return NoSpace(err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return NoSpace(fmt.Errorf("sync %s: %w", tmp.Name(), err))
	}
	if err := tmp.Close(); err != nil {
		return NoSpace(fmt.Errorf("close %s: %w", tmp.Name(), err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	ok = true
	return SyncDir(dir)
}

// WriteFile is os.WriteFile through WriteAtomic: path has data, or its
// old content, never a part.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteAtomic(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// SyncDir makes the creations, renames and removals in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// CopyRaw copies the raw disk image at src, a regular file whose size is
// a non-zero multiple of 512 bytes, to dst: with CopySparse, atomically
// with WriteAtomic (dst gets perm). It returns the image's size; its
// errors name src.
func CopyRaw(ctx context.Context, dst, src string, perm os.FileMode, progress func(done, total int64)) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size()%512 != 0 {
		return 0, fmt.Errorf("%s is not a raw disk image: a regular file, a non-zero multiple of 512 bytes", src)
	}
	err = WriteAtomic(dst, perm, func(f *os.File) error { return CopySparse(ctx, f, in, fi.Size(), progress) })
	if err != nil {
		return 0, fmt.Errorf("copy %s: %w", src, err)
	}
	return fi.Size(), nil
}

// copyBlock is the unit of CopySparse: all-zero blocks of the source
// become holes in the destination.
const copyBlock = 1 << 20

var zeroBlock = make([]byte, copyBlock)

// CopySparse copies the first size bytes of src into dst, which it sizes
// to size bytes, skipping the source's holes (SEEK_DATA) and all-zero
// blocks, so that a mostly empty disk image costs only its data. dst must
// read as zeros where nothing is written: a new file. progress, if set, is
// called after each block with the bytes done and size, and once more at
// the end. It checks ctx between blocks and fails when src ends before
// size.
func CopySparse(ctx context.Context, dst, src *os.File, size int64, progress func(done, total int64)) error {
	if err := dst.Truncate(size); err != nil {
		return fmt.Errorf("size %s to %d bytes: %w", dst.Name(), size, err)
	}
	buf := make([]byte, copyBlock)
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Jump over holes of the source.
		next, err := unix.Seek(int(src.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err == nil && next > off {
			off = next &^ (copyBlock - 1)
		}
		n := int(min(int64(len(buf)), size-off))
		if got, err := src.ReadAt(buf[:n], off); got < n {
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("source ended at byte %d, before its size %d", off+int64(got), size)
			}
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if !bytes.Equal(buf[:n], zeroBlock[:n]) {
			if _, err := dst.WriteAt(buf[:n], off); err != nil {
				return fmt.Errorf("write %s at %d: %w", dst.Name(), off, err)
			}
		}
		off += int64(n)
		if progress != nil {
			progress(off, size)
		}
	}
	if progress != nil {
		progress(size, size)
	}
	return nil
}
