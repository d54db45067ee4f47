package volume

import (
	"errors"
	"fmt"
	"io"
)

// Errors that a Volume's methods and Open wrap; test for them with
// errors.Is.
var (
	// ErrReadOnly is wrapped when WriteAt or Discard is called on a volume
	// opened from a ReadOnly descriptor.
	ErrReadOnly = errors.New("volume is read-only")

	// ErrOutOfRange is wrapped when ReadAt, WriteAt or Discard is asked for
	// bytes before offset 0 or past Size. Nothing is read or written.
	ErrOutOfRange = errors.New("outside the volume")

	// ErrTooSmall is wrapped when Open finds a file or device shorter than
	// the descriptor's Size.
	ErrTooSmall = errors.New("volume file smaller than the descriptor's size")
)

// Volume is an open volume: a disk of Size bytes presented in blocks of
// BlockSize. All methods are safe for concurrent use by many goroutines;
// ReadAt and WriteAt on disjoint ranges never wait for each other.
//
// ReadAt and WriteAt follow io.ReaderAt and io.WriterAt, bounded by Size: a
// request that reaches before 0 or past Size fails with ErrOutOfRange and
// transfers nothing (it is never cut short at the end, and never grows the
// file). Offsets and lengths need not be block-aligned; aligning them is
// the caller's business.
type Volume interface {
	io.ReaderAt
	io.WriterAt

	// Size returns the volume's size in bytes, from the descriptor.
	Size() int64

	// BlockSize returns the logical block size presented to initiators:
	// 512 or 4096.
	BlockSize() uint32

	// Flush makes every write that returned before the call durable
	// (fdatasync). An iSCSI SYNCHRONIZE CACHE or FUA write maps to it.
	Flush() error

	// Discard frees length bytes at off: afterwards they read as zeros. It
	// punches a hole in the file (fallocate PUNCH_HOLE|KEEP_SIZE) so the
	// space returns to the filesystem; where the filesystem or device
	// cannot, it writes zeros instead. An iSCSI UNMAP maps to it. It fails
	// with ErrReadOnly on a read-only volume and ErrOutOfRange outside it.
	Discard(off, length int64) error

	// Close releases the volume's files. Calls after Close fail.
	Close() error
}

// Open opens the volume a descriptor describes, after checking it with
// Validate. Open never creates or resizes files: the storage plugin that
// made the descriptor owns them.
//
// For FormatRaw, Paths[0] must be a regular file or a block device at least
// Size bytes long; it is opened read-write, or read-only when ReadOnly is
// set. FormatOverlay is refused with an error wrapping ErrUnsupportedFormat.
// Errors name the path: "open volume /path: ...".
func Open(d Descriptor) (Volume, error) {
	if err := d.Validate(); err != nil {
		if len(d.Paths) == 0 {
			return nil, fmt.Errorf("open volume: %w", err)
		}
		return nil, fmt.Errorf("open volume %s: %w", d.Paths[0], err)
	}
	switch d.Format {
	case FormatRaw:
		return openRaw(d)
	default:
		return nil, fmt.Errorf("open volume %s: %w %q: not implemented yet",
			d.Paths[0], ErrUnsupportedFormat, d.Format)
	}
}
