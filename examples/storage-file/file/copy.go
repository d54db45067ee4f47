package file

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dls-project/dls/sdk/storage"
)

// copyChunk is how much copyFile copies between checks of the context and
// progress reports. io.CopyN of a file into a file lets the kernel copy
// (copy_file_range), so a chunk costs little.
const copyChunk = 64 << 20

// copyFile copies the regular file src to dst: into a temporary file in
// dst's directory, synced, then renamed over dst, and the directory synced.
// On any error (a full disk, a cancelled ctx) the temporary file is removed
// and dst is untouched. progress, if set, is called after each chunk. It
// returns the bytes copied.
func copyFile(ctx context.Context, src, dst string, progress func(done, total int64)) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return 0, err
	}
	total := fi.Size()

	tmp, err := os.CreateTemp(filepath.Dir(dst), tmpPrefix+filepath.Base(dst)+"-*")
	if err != nil {
		return 0, noSpace(err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	var done int64
	for done < total {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
		n, err := io.CopyN(tmp, in, min(copyChunk, total-done))
		done += n
		if err != nil {
			return 0, fmt.Errorf("copy %s to %s: %w", src, dst, noSpace(err))
		}
		if progress != nil {
			progress(done, total)
		}
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("copy %s to %s: %w", src, dst, noSpace(err))
	}
	if err := tmp.Close(); err != nil {
		return 0, fmt.Errorf("copy %s to %s: %w", src, dst, noSpace(err))
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return 0, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	ok = true
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return 0, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return done, nil
}

// writeJSON writes v as JSON to path atomically, like copyFile.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), tmpPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, noSpace(err))
	}
	_, werr := tmp.Write(data)
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, noSpace(err))
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// noSpace marks a full filesystem or quota with storage.ErrNoSpace, so the
// host can tell the admin what happened.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", storage.ErrNoSpace, err)
	}
	return err
}
