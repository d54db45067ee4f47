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
// ReadAt and WriteAt on disjoint ranges never wait for each other, except
// that in an overlay two first writes into the same cluster take turns.
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

	// Flush makes every write and discard that returned before the call
	// durable (fdatasync; an overlay also records its new clusters in its
	// map). An iSCSI SYNCHRONIZE CACHE or FUA write maps to it. Once Flush
	// has failed on an overlay, it keeps failing: the data may be lost.
	Flush() error

	// Discard frees length bytes at off: afterwards they read as zeros. It
	// punches a hole in the file (fallocate PUNCH_HOLE|KEEP_SIZE) so the
	// space returns to the filesystem; where the filesystem or device
	// cannot, it writes zeros instead. An iSCSI UNMAP maps to it. It fails
	// with ErrReadOnly on a read-only volume and ErrOutOfRange outside it.
	Discard(off, length int64) error

	// Close releases the volume's files; a writable overlay flushes first,
	// as its map must record its new clusters. Calls after Close fail.
	Close() error
}

// Open opens the volume a descriptor describes, after checking it with
// Validate. Open never creates or resizes files: the storage plugin that
// made the descriptor owns them.
//
// For FormatRaw, Paths[0] must be a regular file or a block device at least
// Size bytes long; it is opened read-write, or read-only when ReadOnly is
// set.
//
// For FormatOverlay, Paths are the delta, the map and the base that
// CreateOverlay made. Open reads and checks the map's header (magic,
// version, checksum, cluster size, and a volume size equal to Size),
// refuses a base whose size or modification time differs from what the map
// recorded (ErrBaseChanged) and a map shorter than its header says
// (ErrBadMap), and opens the base read-only. On Linux it locks the map:
// one writer, or any number of readers (ErrInUse otherwise). Options may
// set OptionFlushInterval. FORMAT.md describes the files and what survives
// a crash.
//
// Errors name the path (the delta for an overlay): "open volume /path: ...".
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
	case FormatOverlay:
		return openOverlay(d)
	default:
		return nil, fmt.Errorf("open volume %s: %w %q: not implemented yet",
			d.Paths[0], ErrUnsupportedFormat, d.Format)
	}
}
