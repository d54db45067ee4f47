package volume

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Format names how a volume's data is laid out in its files.
type Format string

const (
	// FormatRaw is a plain disk image: one file or block device whose
	// bytes are the disk's bytes, from offset 0 to Size. Paths holds exactly
	// that one path.
	FormatRaw Format = "raw"

	// FormatOverlay is a copy-on-write overlay: a per-client delta file and
	// its allocation map over a shared, read-only base image, made by
	// CreateOverlay. Paths holds exactly three paths, in this order: the
	// delta, the map, the base. FORMAT.md describes the files.
	FormatOverlay Format = "overlay"
)

// Block sizes a volume may present to initiators.
const (
	// DefaultBlockSize is the logical block size used when a descriptor's
	// BlockSize is zero: 512 bytes, what every initiator and firmware
	// understands.
	DefaultBlockSize uint32 = 512

	// LargeBlockSize is the only other block size allowed: 4096 bytes
	// (4Kn). Firmware that cannot boot from 4Kn disks is common, so use it
	// only for data disks or clients known to support it.
	LargeBlockSize uint32 = 4096
)

// Errors that Validate and Open wrap; test for them with errors.Is.
var (
	// ErrInvalidDescriptor is wrapped by every error Validate returns.
	ErrInvalidDescriptor = errors.New("invalid volume descriptor")

	// ErrUnsupportedFormat is wrapped when a descriptor's format is
	// unknown, or when an overlay's map is of a newer format version than
	// this SDK reads.
	ErrUnsupportedFormat = errors.New("unsupported volume format")
)

// Descriptor tells a block target where a client's disk lives and how to
// present it. Storage plugins build descriptors; the iSCSI target opens
// them with Open. A descriptor is plain data and travels over gRPC as the
// VolumeDescriptor message, field for field.
type Descriptor struct {
	// Format says how the data is laid out in Paths: FormatRaw or
	// FormatOverlay. It must be set.
	Format Format

	// Paths are the absolute paths of the files or block devices holding
	// the volume, as seen by the target's process on the same machine.
	// FormatRaw: exactly one, the disk image itself. FormatOverlay: exactly
	// three, the delta, the block map, the base image.
	Paths []string

	// Size is the volume's size in bytes as presented to the initiator:
	// greater than zero and a multiple of the block size. A raw file may be
	// longer than Size (the rest is never read or written) but not shorter.
	Size int64

	// BlockSize is the logical block size in bytes presented to
	// initiators: 512 or 4096. Zero means DefaultBlockSize (512).
	BlockSize uint32

	// ReadOnly presents the volume write-protected: Open opens the files
	// read-only, and writes and discards fail with ErrReadOnly. Use it for
	// shared volumes many clients read at once.
	ReadOnly bool

	// Options carries format-specific settings as string pairs, for formats
	// that need more than the fields above. FormatRaw defines none;
	// FormatOverlay defines OptionFlushInterval. Formats ignore options they
	// do not define. May be nil.
	Options map[string]string
}

// EffectiveBlockSize returns the block size the volume presents:
// BlockSize, or DefaultBlockSize when BlockSize is zero.
func (d Descriptor) EffectiveBlockSize() uint32 {
	if d.BlockSize == 0 {
		return DefaultBlockSize
	}
	return d.BlockSize
}

// Validate checks the descriptor without touching any file: the format is
// known, Paths has the right number of entries for it and each is absolute,
// the block size is 512 or 4096 (or zero, meaning 512), and Size is greater
// than zero and a multiple of the block size. Every error it returns wraps
// ErrInvalidDescriptor; an unknown format also wraps ErrUnsupportedFormat.
func (d Descriptor) Validate() error {
	var wantPaths int
	switch d.Format {
	case FormatRaw:
		wantPaths = 1
	case FormatOverlay:
		wantPaths = 3
	case "":
		return invalid("format is empty (want %q or %q)", FormatRaw, FormatOverlay)
	default:
		return fmt.Errorf("%w: %w %q", ErrInvalidDescriptor, ErrUnsupportedFormat, d.Format)
	}
	if len(d.Paths) != wantPaths {
		return invalid("format %q takes %d path(s), got %d", d.Format, wantPaths, len(d.Paths))
	}
	for i, p := range d.Paths {
		if p == "" {
			return invalid("path %d is empty", i)
		}
		if !filepath.IsAbs(p) {
			return invalid("path %d %q is not absolute", i, p)
		}
	}
	bs := d.EffectiveBlockSize()
	if bs != DefaultBlockSize && bs != LargeBlockSize {
		return invalid("block size %d is not %d or %d", bs, DefaultBlockSize, LargeBlockSize)
	}
	if d.Size <= 0 {
		return invalid("size %d is not positive", d.Size)
	}
	if d.Size%int64(bs) != 0 {
		return invalid("size %d is not a multiple of the block size %d", d.Size, bs)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidDescriptor, fmt.Sprintf(format, args...))
}
