package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync/atomic"
)

// rawVolume is a FormatRaw volume: one file or block device, read and
// written with pread/pwrite, so concurrent calls need no lock.
type rawVolume struct {
	f         *os.File
	path      string
	size      int64
	blockSize uint32
	readOnly  bool

	// cannotPunch is set once the file's filesystem or device has refused
	// to punch holes, so that Discard goes straight to writing zeros.
	cannotPunch atomic.Bool
}

var _ Volume = (*rawVolume)(nil)

// Errors punchHole returns when it cannot punch, so that Discard writes
// zeros instead.
var (
	// errCannotPunch: the filesystem or device never punches holes.
	errCannotPunch = errors.New("cannot punch holes")
	// errCannotPunchRange: it refused this range (say, unaligned on a
	// block device) but may take others.
	errCannotPunchRange = errors.New("cannot punch a hole in this range")
)

// zeros is what Discard writes where it cannot punch a hole. It is never
// written to, so any number of goroutines may write from it at once.
var zeros [64 << 10]byte

func openRaw(d Descriptor) (*rawVolume, error) {
	path := d.Paths[0]
	fail := func(err error) (*rawVolume, error) {
		return nil, fmt.Errorf("open volume %s: %w", path, err)
	}

	// Check the type before opening: opening a FIFO read-only would block.
	fi, err := os.Stat(path)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	if err := checkFileType(fi); err != nil {
		return fail(err)
	}

	flag := os.O_RDWR
	if d.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	n, err := fileSize(f)
	if err != nil {
		f.Close()
		return fail(err)
	}
	if n < d.Size {
		f.Close()
		return fail(fmt.Errorf("%w: file is %d bytes, descriptor size is %d bytes", ErrTooSmall, n, d.Size))
	}
	return &rawVolume{
		f:         f,
		path:      path,
		size:      d.Size,
		blockSize: d.EffectiveBlockSize(),
		readOnly:  d.ReadOnly,
	}, nil
}

// checkFileType accepts regular files and block devices.
func checkFileType(fi fs.FileInfo) error {
	m := fi.Mode()
	if m.IsRegular() || (m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0) {
		return nil
	}
	return fmt.Errorf("not a regular file or block device (mode %s)", m)
}

// fileSize returns the size of an open regular file or block device (whose
// Stat size is 0, so it asks by seeking to the end; the offset is unused,
// as all I/O is positional).
func fileSize(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, unwrapPathError(err)
	}
	if err := checkFileType(fi); err != nil {
		return 0, err
	}
	if fi.Mode().IsRegular() {
		return fi.Size(), nil
	}
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, unwrapPathError(err)
	}
	return n, nil
}

// unwrapPathError drops an *fs.PathError's op and path, which the caller's
// "open volume <path>" message already says.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func (v *rawVolume) Size() int64       { return v.size }
func (v *rawVolume) BlockSize() uint32 { return v.blockSize }

func (v *rawVolume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.checkRange("read", off, int64(len(p))); err != nil {
		return 0, err
	}
	return v.f.ReadAt(p, off)
}

func (v *rawVolume) WriteAt(p []byte, off int64) (int, error) {
	if v.readOnly {
		return 0, fmt.Errorf("write volume %s: %w", v.path, ErrReadOnly)
	}
	if err := v.checkRange("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	return v.f.WriteAt(p, off)
}

func (v *rawVolume) Flush() error {
	if err := datasync(v.f); err != nil {
		return fmt.Errorf("flush volume %s: %w", v.path, err)
	}
	return nil
}

func (v *rawVolume) Discard(off, length int64) error {
	if v.readOnly {
		return fmt.Errorf("discard volume %s: %w", v.path, ErrReadOnly)
	}
	if err := v.checkRange("discard", off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if !v.cannotPunch.Load() {
		err := punchHole(v.f, off, length)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errCannotPunch):
			v.cannotPunch.Store(true)
		case errors.Is(err, errCannotPunchRange):
			// This range only (say, unaligned on a block device): zero it.
		default:
			return fmt.Errorf("discard volume %s: %d bytes at offset %d: %w", v.path, length, off, err)
		}
	}
	return v.writeZeros(off, length)
}

func (v *rawVolume) writeZeros(off, length int64) error {
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if _, err := v.f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("discard volume %s: %w", v.path, err)
		}
		off += n
		length -= n
	}
	return nil
}

func (v *rawVolume) Close() error {
	return v.f.Close()
}

// checkRange refuses a request for length bytes at off that does not lie
// inside [0, size). It is written so that off+length cannot overflow.
func (v *rawVolume) checkRange(op string, off, length int64) error {
	if off < 0 || length < 0 || off > v.size || length > v.size-off {
		return fmt.Errorf("%s volume %s: %d bytes at offset %d: %w (size %d)",
			op, v.path, length, off, ErrOutOfRange, v.size)
	}
	return nil
}
