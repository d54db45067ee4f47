package zfsstore

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// heldOpen tells whether any other open file description holds path, by
// asking the kernel for a write lease, which it grants only to the sole
// opener of a file. known is false when the kernel cannot tell (leases
// disabled, a filesystem without them, a file the plugin does not own).
//
// The lease is released at once. Should another process open the file in
// that instant, the kernel sends this process SIGIO, which Go ignores, and
// that open waits until the release.
func heldOpen(_ context.Context, path string) (held, known bool) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return false, false
	}
	defer f.Close()
	fd := int(f.Fd())
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK)
	switch {
	case err == nil:
		_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		return false, true
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY):
		return true, true
	}
	return false, false
}
