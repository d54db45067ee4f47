package file

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/dls-project/dls/sdk/storage/diskfile"
)

// copyChunk is how much copyFile copies between checks of the context and
// progress reports. io.CopyN of a file into a file lets the kernel copy
// (copy_file_range), so a chunk costs little.
const copyChunk = 64 << 20

// copyFile copies the regular file src to dst in full, atomically
// (diskfile.WriteAtomic): on any error (a full disk, a cancelled ctx) dst
// is untouched. progress, if set, is called after each chunk. It returns
// the bytes copied.
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
	var done int64
	err = diskfile.WriteAtomic(dst, 0o600, func(tmp *os.File) error {
		for done < total {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := io.CopyN(tmp, in, min(copyChunk, total-done))
			done += n
			if err != nil {
				return err
			}
			if progress != nil {
				progress(done, total)
			}
		}
		return nil
	})
	if err != nil {
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
	err = diskfile.WriteAtomic(path, 0o600, func(tmp *os.File) error {
		_, err := tmp.Write(data)
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
