package volume

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/bits"
	"time"
)

// Cluster sizes of an overlay: the unit of copy-on-write and of the
// allocation map. See FORMAT.md for the trade-off.
const (
	// DefaultClusterSize is the cluster size CreateOverlay uses when given
	// 0: 64 KiB. A first write into a cluster copies the whole cluster, so
	// small clusters make first small writes cheaper (a first 4 KiB write
	// costs about 8 µs at 4 KiB clusters, 60 µs at 64 KiB, 200 µs at
	// 256 KiB, bound by writing the cluster out); large ones keep
	// sequential reads of a partly written overlay fast (1 MiB reads when
	// every other cluster is written: 0.22x the raw speed at 4 KiB
	// clusters, 0.72x at 64 KiB, 0.88x at 256 KiB). First writes happen
	// once per cluster, reads at every boot; FORMAT.md has the numbers.
	DefaultClusterSize uint32 = 64 << 10

	// MinClusterSize is the smallest cluster size: 4 KiB, the page and
	// filesystem block size, below which copy-on-write would tear pages.
	MinClusterSize uint32 = 4 << 10

	// MaxClusterSize is the largest cluster size: 1 MiB.
	MaxClusterSize uint32 = 1 << 20
)

// Errors that Open, CreateOverlay and ResetOverlay wrap for overlays; test
// for them with errors.Is.
var (
	// ErrBadMap is wrapped when an overlay's map file is not a valid map:
	// wrong magic or checksum, impossible fields, or shorter than its
	// header says.
	ErrBadMap = errors.New("not a valid overlay map")

	// ErrBaseChanged is wrapped when an overlay's base is not the file the
	// overlay was made over: its size or modification time differs from
	// what the map recorded. Serving the overlay would mix the delta with
	// other data, so Open refuses it; ResetOverlay starts the overlay over
	// on the new base.
	ErrBaseChanged = errors.New("overlay base changed since the overlay was made")

	// ErrInUse is wrapped when an overlay is already open for writing (by
	// this or another process), or open at all when a writer or
	// ResetOverlay asks. Two writers would each copy-on-write the same
	// clusters and lose each other's data.
	ErrInUse = errors.New("overlay is in use")
)

// The map file: a 4 KiB header, then the allocation bitmap padded to whole
// 4 KiB pages. FORMAT.md documents every byte.
const (
	mapMagic      = "DLSOVMAP"
	mapVersion    = 1
	mapHeaderSize = 4096
	mapPageSize   = 4096

	// maxClusters bounds the map (and the two copies of it held in memory)
	// to 256 MiB: 2^31 clusters, 8 TiB at 4 KiB clusters, 2 PiB at 1 MiB.
	maxClusters = 1 << 31
)

// Header field offsets, all integers little-endian.
const (
	hdrMagic       = 0  // [8]byte "DLSOVMAP"
	hdrVersion     = 8  // uint32, 1
	hdrHeaderSize  = 12 // uint32, 4096: where the bitmap starts
	hdrClusterSize = 16 // uint32, power of two, 4 KiB to 1 MiB
	hdrFlags       = 20 // uint32, 0: no flags are defined
	hdrVolumeSize  = 24 // uint64, bytes
	hdrClusters    = 32 // uint64, ceil(volume size / cluster size)
	hdrBaseSize    = 40 // uint64, the base file's size when the map was made
	hdrBaseMtime   = 48 // int64, its modification time, Unix nanoseconds
	hdrUsed        = 56 // bytes 56..4091 are zero
	hdrCRC         = mapHeaderSize - 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// mapHeader is the decoded header of an overlay map.
type mapHeader struct {
	clusterSize uint32
	volumeSize  int64
	clusters    int64
	baseSize    int64
	baseMtime   int64 // Unix nanoseconds
}

// newMapHeader describes an empty overlay over base, whose size is the
// volume size.
func newMapHeader(clusterSize uint32, base fs.FileInfo) mapHeader {
	cs := int64(clusterSize)
	return mapHeader{
		clusterSize: clusterSize,
		volumeSize:  base.Size(),
		clusters:    (base.Size() + cs - 1) / cs,
		baseSize:    base.Size(),
		baseMtime:   base.ModTime().UnixNano(),
	}
}

// bitmapLen is the length of the bitmap region: one bit per cluster,
// padded to whole pages so that every map write is of whole pages.
func (h mapHeader) bitmapLen() int64 {
	n := (h.clusters + 7) / 8
	return (n + mapPageSize - 1) / mapPageSize * mapPageSize
}

// fileLen is the length of a complete map file.
func (h mapHeader) fileLen() int64 { return mapHeaderSize + h.bitmapLen() }

func (h mapHeader) encode() []byte {
	b := make([]byte, mapHeaderSize)
	le := binary.LittleEndian
	copy(b[hdrMagic:], mapMagic)
	le.PutUint32(b[hdrVersion:], mapVersion)
	le.PutUint32(b[hdrHeaderSize:], mapHeaderSize)
	le.PutUint32(b[hdrClusterSize:], h.clusterSize)
	le.PutUint32(b[hdrFlags:], 0)
	le.PutUint64(b[hdrVolumeSize:], uint64(h.volumeSize))
	le.PutUint64(b[hdrClusters:], uint64(h.clusters))
	le.PutUint64(b[hdrBaseSize:], uint64(h.baseSize))
	le.PutUint64(b[hdrBaseMtime:], uint64(h.baseMtime))
	le.PutUint32(b[hdrCRC:], crc32.Checksum(b[:hdrCRC], castagnoli))
	return b
}

// decodeMapHeader parses and checks a map header. Errors wrap ErrBadMap,
// or ErrUnsupportedFormat for a version this code does not know.
func decodeMapHeader(b []byte) (mapHeader, error) {
	bad := func(format string, args ...any) (mapHeader, error) {
		return mapHeader{}, fmt.Errorf("%w: %s", ErrBadMap, fmt.Sprintf(format, args...))
	}
	if len(b) < mapHeaderSize {
		return bad("header truncated: %d of %d bytes", len(b), mapHeaderSize)
	}
	b = b[:mapHeaderSize]
	le := binary.LittleEndian
	if string(b[hdrMagic:hdrMagic+8]) != mapMagic {
		return bad("bad magic %q", b[hdrMagic:hdrMagic+8])
	}
	if got, want := le.Uint32(b[hdrCRC:]), crc32.Checksum(b[:hdrCRC], castagnoli); got != want {
		return bad("header checksum %#08x, want %#08x", got, want)
	}
	if v := le.Uint32(b[hdrVersion:]); v != mapVersion {
		return mapHeader{}, fmt.Errorf("%w: overlay map format version %d (this SDK reads version %d)",
			ErrUnsupportedFormat, v, mapVersion)
	}
	if n := le.Uint32(b[hdrHeaderSize:]); n != mapHeaderSize {
		return bad("header size %d, want %d", n, mapHeaderSize)
	}
	if f := le.Uint32(b[hdrFlags:]); f != 0 {
		return bad("unknown flags %#x", f)
	}
	if !bytes.Equal(b[hdrUsed:hdrCRC], make([]byte, hdrCRC-hdrUsed)) {
		return bad("reserved header bytes are not zero")
	}
	h := mapHeader{
		clusterSize: le.Uint32(b[hdrClusterSize:]),
		volumeSize:  int64(le.Uint64(b[hdrVolumeSize:])),
		clusters:    int64(le.Uint64(b[hdrClusters:])),
		baseSize:    int64(le.Uint64(b[hdrBaseSize:])),
		baseMtime:   int64(le.Uint64(b[hdrBaseMtime:])),
	}
	if err := checkClusterSize(h.clusterSize); err != nil {
		return bad("%v", err)
	}
	cs := int64(h.clusterSize)
	if h.volumeSize <= 0 || h.volumeSize%int64(DefaultBlockSize) != 0 {
		return bad("volume size %d is not a positive multiple of %d", h.volumeSize, DefaultBlockSize)
	}
	if want := (h.volumeSize + cs - 1) / cs; h.clusters != want || h.clusters > maxClusters {
		return bad("cluster count %d, want %d for %d bytes in %d-byte clusters", h.clusters, want, h.volumeSize, cs)
	}
	if h.baseSize < h.volumeSize {
		return bad("base size %d is smaller than the volume size %d", h.baseSize, h.volumeSize)
	}
	return h, nil
}

// checkClusterSize accepts powers of two from MinClusterSize to
// MaxClusterSize.
func checkClusterSize(cs uint32) error {
	if cs < MinClusterSize || cs > MaxClusterSize || bits.OnesCount32(cs) != 1 {
		return fmt.Errorf("cluster size %d is not a power of two from %d to %d", cs, MinClusterSize, MaxClusterSize)
	}
	return nil
}

// checkBase refuses a base whose size or modification time differs from
// what the map recorded when the overlay was made.
func (h mapHeader) checkBase(fi fs.FileInfo) error {
	if fi.Size() != h.baseSize {
		return fmt.Errorf("%w: base is %d bytes, the overlay was made over a %d-byte base",
			ErrBaseChanged, fi.Size(), h.baseSize)
	}
	if got := fi.ModTime().UnixNano(); got != h.baseMtime {
		return fmt.Errorf("%w: base modified %s, the overlay was made over a base modified %s",
			ErrBaseChanged, fmtTime(got), fmtTime(h.baseMtime))
	}
	return nil
}

func fmtTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}
