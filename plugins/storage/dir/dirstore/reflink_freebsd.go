package dirstore

import (
	"fmt"
	"os"

	"github.com/dls-project/dls/sdk/storage/diskfile"
	"golang.org/x/sys/unix"
)

// reflinkCall is the system call that shares a file's blocks.
const reflinkCall = "copy_file_range"

// sysCopyFileRange is copy_file_range(2)'s number (FreeBSD 13 and later,
// sys/kern/syscalls.master); golang.org/x/sys/unix does not wrap it on
// FreeBSD.
const sysCopyFileRange = 569

// reflinkFile copies src to dst with copy_file_range(2), which OpenZFS
// (2.2 and later, vfs.zfs.bclone_enabled=1) turns into block cloning;
// other filesystems copy the blocks, holes kept.
func reflinkFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	return diskfile.WriteAtomic(dst, 0o640, func(f *os.File) error {
		for left := st.Size(); left > 0; {
			n, err := copyFileRange(int(in.Fd()), int(f.Fd()), left)
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("copy_file_range: %s ended %d bytes early", src, left)
			}
			left -= n
		}
		// A hole at the end is skipped, not written: the size is set.
		return f.Truncate(st.Size())
	})
}

// copyFileRange copies up to n bytes from in's offset to out's, moving
// both; it returns how many it copied.
func copyFileRange(in, out int, n int64) (int64, error) {
	for {
		// NULL offsets: the descriptors' own offsets are used and moved.
		r, _, errno := unix.Syscall6(sysCopyFileRange, uintptr(in), 0, uintptr(out), 0, uintptr(n), 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int64(r), nil
	}
}
