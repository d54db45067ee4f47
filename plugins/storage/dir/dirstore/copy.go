package dirstore

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

// copyBlock is the unit of the sparse copy: all-zero blocks of the source
// become holes in the destination.
const copyBlock = 1 << 20

// writeAtomic creates path with the content fill writes into a temporary
// file beside it, synced and renamed into place, then syncs the directory.
// On error nothing is left behind: no half-made file ever has the final
// name.
func writeAtomic(path string, perm os.FileMode, fill func(f *os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return noSpace(fmt.Errorf("create temporary file in %s: %w", dir, err))
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := fill(tmp); err != nil {
		return noSpace(err)
	}
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return noSpace(fmt.Errorf("sync %s: %w", tmp.Name(), err))
	}
	if err := tmp.Close(); err != nil {
		return noSpace(fmt.Errorf("close %s: %w", tmp.Name(), err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
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

// copySparse copies size bytes of srcFile into dst (already sized by the
// caller), skipping holes (SEEK_DATA) and all-zero blocks, so a mostly
// empty disk image costs only its data. progress is called per block.
func copySparse(ctx context.Context, dst *os.File, srcFile *os.File, size int64, progress func(done, total int64)) error {
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
		next, err := unix.Seek(int(srcFile.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err == nil && next > off {
			off = next &^ (copyBlock - 1)
		}
		n := int(min(int64(len(buf)), size-off))
		if got, err := srcFile.ReadAt(buf[:n], off); got < n {
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("source ended at byte %d, before its size %d", off+int64(got), size)
			}
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if !allZero(buf[:n]) {
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

var zeroBlock = make([]byte, copyBlock)

func allZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }

// reflink makes dst a copy-on-write clone of src (FICLONE: XFS, Btrfs,
// bcachefs). It fails with EOPNOTSUPP, EXDEV or EINVAL where the
// filesystem cannot.
func reflink(dst, src *os.File) error {
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
}

// noSpace marks a full disk with the SDK's sentinel so the host can tell
// the admin precisely.
func noSpace(err error) error {
	if err != nil && (errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) && !errors.Is(err, storage.ErrNoSpace) {
		return fmt.Errorf("%w: %w", storage.ErrNoSpace, err)
	}
	return err
}
