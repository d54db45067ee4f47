package volume

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// punchHole deallocates length bytes at off, keeping the file size, so the
// range reads back as zeros. Control holds the descriptor open for the
// duration, so a concurrent Close cannot recycle it underneath.
func punchHole(f *os.File, off, length int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno error
	err = rc.Control(func(fd uintptr) {
		for {
			errno = unix.Fallocate(int(fd), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
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
	case errors.Is(errno, unix.EOPNOTSUPP), errors.Is(errno, unix.ENOSYS), errors.Is(errno, unix.ENODEV):
		return fmt.Errorf("%w: fallocate: %w", errCannotPunch, errno)
	case errors.Is(errno, unix.EINVAL):
		return fmt.Errorf("%w: fallocate: %w", errCannotPunchRange, errno)
	default:
		return fmt.Errorf("fallocate: %w", errno)
	}
}

// datasync makes f's written data durable (fdatasync), holding the
// descriptor open for the duration like punchHole.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno error
	err = rc.Control(func(fd uintptr) {
		for {
			errno = unix.Fdatasync(int(fd))
			if errno != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	if errno != nil {
		return fmt.Errorf("fdatasync: %w", errno)
	}
	return nil
}
