package dirstore

import (
	"os"

	"github.com/dls-project/dls/sdk/storage/diskfile"
	"golang.org/x/sys/unix"
)

// reflinkCall is the system call that shares a file's blocks.
const reflinkCall = "FICLONE"

// reflinkFile makes dst share src's blocks.
func reflinkFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return diskfile.WriteAtomic(dst, 0o640, func(f *os.File) error {
		// FICLONE: XFS, Btrfs, bcachefs; EOPNOTSUPP, EXDEV or EINVAL
		// where the filesystem cannot.
		return unix.IoctlFileClone(int(f.Fd()), int(in.Fd()))
	})
}
