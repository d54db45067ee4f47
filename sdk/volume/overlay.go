package volume

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Descriptor options that FormatOverlay reads from Descriptor.Options.
const (
	// OptionFlushInterval bounds how long a copy-on-write stays out of the
	// map on disk when no one calls Flush: a Go duration ("5s", "250ms"),
	// or "0" to flush only when asked. Default DefaultFlushInterval.
	OptionFlushInterval = "flush_interval"

	// DefaultFlushInterval is the flush interval of an overlay whose
	// descriptor does not set OptionFlushInterval: after a crash, at most
	// the last 5 seconds of first writes into clusters can be lost even if
	// the initiator never flushes.
	DefaultFlushInterval = 5 * time.Second
)

// maxCowRun bounds how many clusters one copy-on-write locks at once.
const maxCowRun = 256

// overlayVolume is a FormatOverlay volume: clusters written since the
// overlay was made live in the delta at their own offsets, the rest is
// read from the base. See FORMAT.md.
//
// Reads and in-place writes take no lock: they read the in-memory bitmap
// with atomic loads and use pread/pwrite. A first write into a cluster
// (copy-on-write) locks that cluster, writes the whole cluster to the
// delta, queues it in pending, and only then sets its bit, so a reader
// that sees the bit finds the data, and a Flush that follows a write that
// saw the bit records the cluster.
type overlayVolume struct {
	delta, mapf, base       *os.File
	path, mapPath, basePath string
	size                    int64
	blockSize               uint32
	readOnly                bool
	shift                   uint // log2 of the cluster size
	clusterSize             int64
	alloc                   []atomic.Uint64 // bit c set: cluster c is in the delta
	locks                   clusterLocks
	cannotPunch, punched    atomic.Bool
	closed                  atomic.Bool
	flushInterval           time.Duration

	pendingMu sync.Mutex
	pending   []int64     // clusters allocated in memory, not yet in the map file
	timer     *time.Timer // auto flush, armed while pending is not empty
	armed     bool

	flushMu sync.Mutex // one flush at a time; guards onDisk and failed
	onDisk  []byte     // the bitmap as in the map file (padded to pages)
	failed  error      // a failed flush fails every later one

	// trace, when set (by tests), is called at each step of a flush.
	trace func(step string)
}

var _ Volume = (*overlayVolume)(nil)

func openOverlay(d Descriptor) (*overlayVolume, error) {
	deltaPath, mapPath, basePath := d.Paths[0], d.Paths[1], d.Paths[2]
	fail := func(err error) (*overlayVolume, error) {
		return nil, fmt.Errorf("open volume %s: %w", deltaPath, err)
	}
	interval := DefaultFlushInterval
	if s, ok := d.Options[OptionFlushInterval]; ok {
		iv, err := time.ParseDuration(s)
		if err != nil || iv < 0 {
			return fail(fmt.Errorf("%w: option %s=%q is not a duration of 0 or more", ErrInvalidDescriptor, OptionFlushInterval, s))
		}
		interval = iv
	}
	flag := os.O_RDWR
	if d.ReadOnly {
		flag = os.O_RDONLY
	}

	mapf, err := openLockedMap(mapPath, flag, !d.ReadOnly)
	if err != nil {
		return fail(fmt.Errorf("map %s: %w", mapPath, err))
	}
	v := &overlayVolume{mapf: mapf, path: deltaPath, mapPath: mapPath, basePath: basePath}
	ok := false
	defer func() {
		if !ok {
			v.closeFiles()
		}
	}()

	h, bitmap, err := readMap(mapf)
	if err != nil {
		return fail(fmt.Errorf("map %s: %w", mapPath, err))
	}
	if h.volumeSize != d.Size {
		return fail(fmt.Errorf("%w: size %d, the overlay map says %d", ErrInvalidDescriptor, d.Size, h.volumeSize))
	}

	if v.base, err = openRegular(basePath, os.O_RDONLY); err != nil {
		return fail(fmt.Errorf("base %s: %w", basePath, err))
	}
	fi, err := v.base.Stat()
	if err != nil {
		return fail(fmt.Errorf("base %s: %w", basePath, unwrapPathError(err)))
	}
	if err := h.checkBase(fi); err != nil {
		return fail(fmt.Errorf("base %s: %w", basePath, err))
	}

	if v.delta, err = openRegular(deltaPath, flag); err != nil {
		return fail(fmt.Errorf("delta %s: %w", deltaPath, err))
	}
	if fi, err = v.delta.Stat(); err != nil {
		return fail(fmt.Errorf("delta %s: %w", deltaPath, unwrapPathError(err)))
	}
	if fi.Size() < d.Size {
		return fail(fmt.Errorf("delta %s: %w: file is %d bytes, descriptor size is %d bytes", deltaPath, ErrTooSmall, fi.Size(), d.Size))
	}

	v.size = d.Size
	v.blockSize = d.EffectiveBlockSize()
	v.readOnly = d.ReadOnly
	v.clusterSize = int64(h.clusterSize)
	v.shift = uint(bits.TrailingZeros32(h.clusterSize))
	v.flushInterval = interval
	v.onDisk = bitmap
	v.alloc = make([]atomic.Uint64, (h.clusters+63)/64)
	for i := range v.alloc {
		var w uint64
		for j := range 8 {
			if k := i*8 + j; k < len(bitmap) {
				w |= uint64(bitmap[k]) << (8 * j)
			}
		}
		v.alloc[i].Store(w)
	}
	v.locks.busy = make(map[int64]chan struct{})
	ok = true
	return v, nil
}

// openLockedMap opens and locks a map file, making sure the lock is on the
// file that path names now: a ResetOverlay may have renamed a new map into
// place between the open and the lock.
func openLockedMap(path string, flag int, exclusive bool) (*os.File, error) {
	for range 3 {
		f, err := openRegular(path, flag)
		if err != nil {
			return nil, err
		}
		if err := lockFile(f, exclusive); err != nil {
			f.Close()
			return nil, err
		}
		fi, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, now) {
			return f, nil
		}
		f.Close()
		if err2 != nil && !errors.Is(err2, fs.ErrNotExist) {
			return nil, unwrapPathError(err2)
		}
	}
	return nil, fmt.Errorf("%w: the map file keeps being replaced", ErrInUse)
}

// openRegular opens a regular file, checking its type first so that a FIFO
// cannot block the open.
func openRegular(path string, flag int) (*os.File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (mode %s)", fi.Mode())
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, unwrapPathError(err)
	}
	return f, nil
}

// readMap reads and checks a whole map file: its header and its bitmap,
// in which no bit past the last cluster may be set.
func readMap(f *os.File) (mapHeader, []byte, error) {
	buf := make([]byte, mapHeaderSize)
	n, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return mapHeader{}, nil, unwrapPathError(err)
	}
	h, err := decodeMapHeader(buf[:n])
	if err != nil {
		return mapHeader{}, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return mapHeader{}, nil, unwrapPathError(err)
	}
	if fi.Size() < h.fileLen() {
		return mapHeader{}, nil, fmt.Errorf("%w: file truncated: %d bytes, want %d", ErrBadMap, fi.Size(), h.fileLen())
	}
	bitmap := make([]byte, h.bitmapLen())
	if _, err := f.ReadAt(bitmap, mapHeaderSize); err != nil {
		return mapHeader{}, nil, unwrapPathError(err)
	}
	used := (h.clusters + 7) / 8
	if last := h.clusters % 8; last != 0 && bitmap[used-1]>>last != 0 {
		return mapHeader{}, nil, fmt.Errorf("%w: bits set past the last cluster", ErrBadMap)
	}
	for _, b := range bitmap[used:] {
		if b != 0 {
			return mapHeader{}, nil, fmt.Errorf("%w: bits set past the last cluster", ErrBadMap)
		}
	}
	return h, bitmap, nil
}

func (v *overlayVolume) Size() int64       { return v.size }
func (v *overlayVolume) BlockSize() uint32 { return v.blockSize }

func (v *overlayVolume) allocated(c int64) bool {
	return v.alloc[c>>6].Load()&(1<<(c&63)) != 0
}

// runEnd returns where the run of clusters that starts with cluster c and
// share its state (allocated or not) ends, as a byte offset no further
// than limit.
func (v *overlayVolume) runEnd(c int64, allocated bool, limit int64) int64 {
	last := (limit - 1) >> v.shift
	var same uint64 // a word of 64 clusters all in c's state
	if allocated {
		same = ^uint64(0)
	}
	for c < last {
		next := c + 1
		if next&63 == 0 && next+63 <= last && v.alloc[next>>6].Load() == same {
			c = next + 63
			continue
		}
		if v.allocated(next) != allocated {
			return next << v.shift
		}
		c = next
	}
	return limit
}

func (v *overlayVolume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.check("read", off, int64(len(p))); err != nil {
		return 0, err
	}
	end := off + int64(len(p))
	for done := 0; done < len(p); {
		pos := off + int64(done)
		allocated := v.allocated(pos >> v.shift)
		n := int(v.runEnd(pos>>v.shift, allocated, end) - pos)
		f := v.base
		if allocated {
			f = v.delta
		}
		m, err := f.ReadAt(p[done:done+n], pos)
		done += m
		if err != nil {
			return done, v.ioError("read", off, len(p), err)
		}
	}
	return len(p), nil
}

func (v *overlayVolume) WriteAt(p []byte, off int64) (int, error) {
	if v.readOnly {
		return 0, fmt.Errorf("write volume %s: %w", v.path, ErrReadOnly)
	}
	if err := v.check("write", off, int64(len(p))); err != nil {
		return 0, err
	}
	n, err := v.write(p, off)
	if err != nil {
		return n, v.ioError("write", off, len(p), err)
	}
	return n, nil
}

// write writes p at off, in place where clusters are allocated and by
// copy-on-write where they are not.
func (v *overlayVolume) write(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	for done := 0; done < len(p); {
		pos := off + int64(done)
		c := pos >> v.shift
		allocated := v.allocated(c)
		var n int
		if allocated {
			n = int(v.runEnd(c, true, end) - pos)
			if _, err := v.delta.WriteAt(p[done:done+n], pos); err != nil {
				return done, err
			}
		} else {
			limit := min(end, (c+maxCowRun)<<v.shift)
			n = int(v.runEnd(c, false, limit) - pos)
			if err := v.cow(p[done:done+n], pos); err != nil {
				return done, err
			}
		}
		done += n
	}
	return len(p), nil
}

// cow writes p at off into clusters that were not allocated when the
// caller looked. It locks them, then writes each one still unallocated
// whole into the delta: straight from p where p covers it, or merged with
// the base where p covers part of it. Clusters another writer allocated
// meanwhile are written in place. The new clusters are queued for the map
// and only then marked allocated.
func (v *overlayVolume) cow(p []byte, off int64) error {
	end := off + int64(len(p))
	c0, c1 := off>>v.shift, (end-1)>>v.shift
	for c := c0; c <= c1; c++ {
		v.locks.lock(c)
	}
	defer func() {
		for c := c0; c <= c1; c++ {
			v.locks.unlock(c)
		}
	}()

	var fresh []int64
	for c := c0; c <= c1; {
		cs := c << v.shift
		ce := min(cs+v.clusterSize, v.size)
		ws, we := max(off, cs), min(end, ce)
		switch {
		case v.allocated(c):
			if _, err := v.delta.WriteAt(p[ws-off:we-off], ws); err != nil {
				return err
			}
			c++
		case ws == cs && we == ce:
			// A run of clusters p covers whole: one write, no base read.
			last := c
			for last < c1 && !v.allocated(last+1) && min((last+2)<<v.shift, v.size) <= end {
				last++
			}
			re := min((last+1)<<v.shift, v.size)
			if _, err := v.delta.WriteAt(p[cs-off:re-off], cs); err != nil {
				return err
			}
			for ; c <= last; c++ {
				fresh = append(fresh, c)
			}
		default:
			bp := getCOWBuf(v.shift)
			buf := (*bp)[:ce-cs]
			if _, err := v.base.ReadAt(buf, cs); err != nil {
				putCOWBuf(v.shift, bp)
				return err
			}
			copy(buf[ws-cs:], p[ws-off:we-off])
			_, err := v.delta.WriteAt(buf, cs)
			putCOWBuf(v.shift, bp)
			if err != nil {
				return err
			}
			fresh = append(fresh, c)
			c++
		}
	}
	v.markAllocated(fresh)
	return nil
}

// markAllocated queues clusters whose data is in the delta for the next
// flush, then sets their bits: any write that sees a bit set, and any
// Flush after it, finds the cluster queued or already on disk.
func (v *overlayVolume) markAllocated(clusters []int64) {
	if len(clusters) == 0 {
		return
	}
	v.pendingMu.Lock()
	v.pending = append(v.pending, clusters...)
	if !v.armed && v.flushInterval > 0 {
		v.armed = true
		if v.timer == nil {
			v.timer = time.AfterFunc(v.flushInterval, v.autoFlush)
		} else {
			v.timer.Reset(v.flushInterval)
		}
	}
	v.pendingMu.Unlock()
	for _, c := range clusters {
		v.alloc[c>>6].Or(1 << (c & 63))
	}
}

// autoFlush runs on the timer markAllocated arms. A failure is kept and
// returned by the next Flush.
func (v *overlayVolume) autoFlush() {
	v.pendingMu.Lock()
	v.armed = false
	v.pendingMu.Unlock()
	if !v.closed.Load() {
		_ = v.flush()
	}
}

func (v *overlayVolume) Flush() error {
	if v.closed.Load() {
		return fmt.Errorf("flush volume %s: %w", v.path, fs.ErrClosed)
	}
	if v.readOnly {
		return nil
	}
	return v.flush()
}

// flush makes the delta durable, then records the clusters queued before
// that in the map, then makes the map durable: a bit on disk never points
// at data that is not. A failure is sticky: after a failed fdatasync the
// kernel may have dropped the unwritten pages, so no later flush may
// report success.
func (v *overlayVolume) flush() error {
	v.flushMu.Lock()
	defer v.flushMu.Unlock()
	if v.failed != nil {
		return v.failed
	}
	v.pendingMu.Lock()
	batch := v.pending
	v.pending = nil
	v.pendingMu.Unlock()

	v.step("sync delta")
	sync := datasync
	if v.punched.Swap(false) {
		// A punched hole changes the file's extents, not its data: make
		// sure the metadata goes too.
		sync = (*os.File).Sync
	}
	if err := sync(v.delta); err != nil {
		v.failed = fmt.Errorf("flush volume %s: delta: %w", v.path, err)
		return v.failed
	}
	if len(batch) == 0 {
		return nil
	}

	pages := make([]int64, 0, len(batch))
	for _, c := range batch {
		v.onDisk[c>>3] |= 1 << (c & 7)
		pages = append(pages, (c>>3)/mapPageSize)
	}
	slices.Sort(pages)
	pages = slices.Compact(pages)
	for i := 0; i < len(pages); {
		j := i + 1
		for j < len(pages) && pages[j] == pages[j-1]+1 {
			j++
		}
		lo, hi := pages[i]*mapPageSize, (pages[j-1]+1)*mapPageSize
		v.step("write map")
		if _, err := v.mapf.WriteAt(v.onDisk[lo:hi], mapHeaderSize+lo); err != nil {
			v.failed = fmt.Errorf("flush volume %s: map %s: %w", v.path, v.mapPath, unwrapPathError(err))
			return v.failed
		}
		i = j
	}
	v.step("sync map")
	if err := datasync(v.mapf); err != nil {
		v.failed = fmt.Errorf("flush volume %s: map %s: %w", v.path, v.mapPath, err)
		return v.failed
	}
	return nil
}

func (v *overlayVolume) step(name string) {
	if v.trace != nil {
		v.trace(name)
	}
}

func (v *overlayVolume) Discard(off, length int64) error {
	if v.readOnly {
		return fmt.Errorf("discard volume %s: %w", v.path, ErrReadOnly)
	}
	if err := v.check("discard", off, length); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	if err := v.discard(off, length); err != nil {
		return fmt.Errorf("discard volume %s: %d bytes at offset %d: %w", v.path, length, off, err)
	}
	return nil
}

// discard zeroes the clusters the range covers whole by punching them out
// of the delta and marking them allocated (so they read the hole, not the
// base), and writes zeros into the partly covered clusters at its ends.
func (v *overlayVolume) discard(off, length int64) error {
	end := off + length
	cs := v.clusterSize
	fullStart := (off + cs - 1) / cs * cs
	fullEnd := end / cs * cs
	if end == v.size {
		fullEnd = end // the last cluster may be short
	}
	if fullStart >= fullEnd {
		return v.writeZeros(off, length)
	}
	if off < fullStart {
		if err := v.writeZeros(off, fullStart-off); err != nil {
			return err
		}
	}
	if fullEnd < end {
		if err := v.writeZeros(fullEnd, end-fullEnd); err != nil {
			return err
		}
	}

	// Clear the delta first, without locks: unallocated clusters hold
	// nothing anyone reads, and allocated ones are zeroed in place.
	if err := v.zeroDelta(fullStart, fullEnd-fullStart); err != nil {
		return err
	}
	// Then mark the unallocated ones allocated, under their locks. One
	// that a concurrent copy-on-write allocated since is zeroed again: the
	// discard then comes after that write, as if it started later.
	for c0 := fullStart >> v.shift; c0 <= (fullEnd-1)>>v.shift; c0 += maxCowRun {
		c1 := min(c0+maxCowRun, (fullEnd-1)>>v.shift+1)
		var fresh []int64
		for c := c0; c < c1; c++ {
			if !v.allocated(c) {
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 {
			continue
		}
		for _, c := range fresh {
			v.locks.lock(c)
		}
		var err error
		still := make([]int64, 0, len(fresh))
		for _, c := range fresh {
			if v.allocated(c) {
				start := c << v.shift
				if err = v.zeroDelta(start, min(start+cs, v.size)-start); err != nil {
					break
				}
				continue
			}
			still = append(still, c)
		}
		if err == nil {
			v.markAllocated(still)
		}
		for _, c := range fresh {
			v.locks.unlock(c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// zeroDelta zeroes a range of the delta: it punches a hole, or writes
// zeros where the filesystem cannot punch.
func (v *overlayVolume) zeroDelta(off, length int64) error {
	if !v.cannotPunch.Load() {
		err := punchHole(v.delta, off, length)
		switch {
		case err == nil:
			v.punched.Store(true)
			return nil
		case errors.Is(err, errCannotPunch):
			v.cannotPunch.Store(true)
		case errors.Is(err, errCannotPunchRange):
			// This range only: write zeros.
		default:
			return err
		}
	}
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if _, err := v.delta.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// writeZeros writes zeros through the overlay: in place, or by
// copy-on-write into unallocated clusters.
func (v *overlayVolume) writeZeros(off, length int64) error {
	for length > 0 {
		n := min(length, int64(len(zeros)))
		if _, err := v.write(zeros[:n], off); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// Close flushes (a writable overlay's map must record its copy-on-writes,
// or they would be lost) and closes the files, releasing the lock.
func (v *overlayVolume) Close() error {
	if v.closed.Swap(true) {
		return fmt.Errorf("close volume %s: %w", v.path, fs.ErrClosed)
	}
	v.pendingMu.Lock()
	if v.timer != nil {
		v.timer.Stop()
	}
	v.pendingMu.Unlock()
	var err error
	if !v.readOnly {
		err = v.flush()
	}
	v.flushMu.Lock()
	defer v.flushMu.Unlock()
	if cerr := v.closeFiles(); err == nil && cerr != nil {
		err = fmt.Errorf("close volume %s: %w", v.path, cerr)
	}
	return err
}

func (v *overlayVolume) closeFiles() error {
	var errs []error
	for _, f := range []*os.File{v.delta, v.base, v.mapf} {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	return errors.Join(errs...)
}

// check refuses I/O on a closed volume and requests outside [0, size),
// written so that off+length cannot overflow.
func (v *overlayVolume) check(op string, off, length int64) error {
	if v.closed.Load() {
		return fmt.Errorf("%s volume %s: %w", op, v.path, fs.ErrClosed)
	}
	if off < 0 || length < 0 || off > v.size || length > v.size-off {
		return fmt.Errorf("%s volume %s: %d bytes at offset %d: %w (size %d)",
			op, v.path, length, off, ErrOutOfRange, v.size)
	}
	return nil
}

func (v *overlayVolume) ioError(op string, off int64, n int, err error) error {
	if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, err)
	}
	return fmt.Errorf("%s volume %s: %d bytes at offset %d: %w", op, v.path, n, off, err)
}

// clusterLocks locks single clusters for copy-on-write: writers into
// different clusters never wait for each other. Lock clusters in
// ascending order when holding several.
type clusterLocks struct {
	mu   sync.Mutex
	busy map[int64]chan struct{} // closed when the cluster is unlocked
}

func (l *clusterLocks) lock(c int64) {
	l.mu.Lock()
	for {
		ch, held := l.busy[c]
		if !held {
			break
		}
		l.mu.Unlock()
		<-ch
		l.mu.Lock()
	}
	l.busy[c] = make(chan struct{})
	l.mu.Unlock()
}

func (l *clusterLocks) unlock(c int64) {
	l.mu.Lock()
	ch := l.busy[c]
	delete(l.busy, c)
	l.mu.Unlock()
	close(ch)
}
