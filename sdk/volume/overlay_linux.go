package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockFile takes a non-blocking flock on f: exclusive for a writer, shared
// for a reader. It fails with ErrInUse when another open file holds a
// conflicting lock. Filesystems that cannot lock (some network
// filesystems) are let through unlocked. The lock goes with the file: it
// is released when f is closed or the process dies.
func lockFile(f *os.File, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno error
	err = rc.Control(func(fd uintptr) {
		for {
			errno = unix.Flock(int(fd), how|unix.LOCK_NB)
			if errno != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	switch {
	case errno == nil:
		return nil
	case errors.Is(errno, unix.EWOULDBLOCK):
		return ErrInUse
	case errors.Is(errno, unix.ENOLCK), errors.Is(errno, unix.EOPNOTSUPP), errors.Is(errno, unix.ENOSYS):
		return nil
	default:
		return fmt.Errorf("flock: %w", errno)
	}
}

// holdsNoData reports whether a regular file has no blocks allocated, so
// that it reads as zeros from end to end.
func holdsNoData(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode().IsRegular() && st.Blocks == 0
}
