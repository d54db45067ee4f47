package volume

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// fileMode is the mode of the files CreateOverlay, ResetOverlay and
// CopyVolume create.
const fileMode fs.FileMode = 0o640

// CreateOverlay makes an empty copy-on-write overlay over base, an existing
// raw disk image (a regular file) whose size becomes the volume's size, and
// returns its descriptor: Format FormatOverlay, Paths {delta, mapPath,
// base}, Size the base's size, BlockSize 512. The overlay reads as the
// base until written; writes go to the delta. Any number of overlays may
// share one base, which they only read: it must never change afterwards
// (Open refuses an overlay whose base did, see ErrBaseChanged).
//
// It creates the delta, a sparse file as long as the base, and the map,
// a 4 KiB header and an allocation bitmap, each in a temporary file; syncs
// both; links the delta under its name without replacing anything and
// syncs its directory; then does the same for the map. The map comes last
// and is what makes an overlay: a crash can leave a delta without a map,
// never a map without its delta, nor a half-written file under either
// name.
// CreateOverlay refuses paths that exist (fs.ErrExist), except a delta
// that holds no data (no allocated blocks), has the base's size and no map
// beside it: the leftover of a crashed CreateOverlay, which it replaces, so
// a retry succeeds. Its time does not depend on the base's size.
//
// clusterSize is the copy-on-write unit, a power of two from
// MinClusterSize to MaxClusterSize; 0 means DefaultClusterSize. The base's
// size must be a positive multiple of 512, and paths must be absolute and
// distinct. Files are created with mode 0640. Errors read
// "create overlay <delta>: ...".
func CreateOverlay(base, delta, mapPath string, clusterSize uint32) (Descriptor, error) {
	fail := func(err error) (Descriptor, error) {
		return Descriptor{}, fmt.Errorf("create overlay %s: %w", delta, err)
	}
	if clusterSize == 0 {
		clusterSize = DefaultClusterSize
	}
	if err := checkClusterSize(clusterSize); err != nil {
		return fail(err)
	}
	if err := checkOverlayPaths(delta, mapPath, base); err != nil {
		return fail(err)
	}
	h, err := baseHeader(base, clusterSize)
	if err != nil {
		return fail(err)
	}

	if _, err := os.Lstat(mapPath); err == nil {
		return fail(fmt.Errorf("map %s: %w", mapPath, fs.ErrExist))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("map %s: %w", mapPath, unwrapPathError(err)))
	}
	replaceDelta := false
	if fi, err := os.Lstat(delta); err == nil {
		if !holdsNoData(fi) || fi.Size() != h.volumeSize {
			return fail(fmt.Errorf("delta %s: %w", delta, fs.ErrExist))
		}
		replaceDelta = true // an empty leftover: nothing to lose
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fail(fmt.Errorf("delta %s: %w", delta, unwrapPathError(err)))
	}

	tmpDelta, tmpMap, err := makeOverlayFiles(delta, mapPath, h)
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmpDelta)
	defer os.Remove(tmpMap)

	if replaceDelta {
		err = os.Rename(tmpDelta, delta)
	} else {
		err = os.Link(tmpDelta, delta)
	}
	if err != nil {
		return fail(fmt.Errorf("delta %s: %w", delta, unwrapLinkError(err)))
	}
	os.Remove(tmpDelta)
	if err := syncDir(filepath.Dir(delta)); err != nil {
		return fail(err)
	}
	if err := os.Link(tmpMap, mapPath); err != nil {
		return fail(fmt.Errorf("map %s: %w", mapPath, unwrapLinkError(err)))
	}
	os.Remove(tmpMap)
	if err := syncDir(filepath.Dir(mapPath)); err != nil {
		return fail(err)
	}
	return Descriptor{
		Format:    FormatOverlay,
		Paths:     []string{delta, mapPath, base},
		Size:      h.volumeSize,
		BlockSize: DefaultBlockSize,
	}, nil
}

// ResetOverlay discards every write to an overlay: it replaces the delta
// and the map with empty ones, so the volume reads as its base again. The
// overlay must not be open (ErrInUse). The new map is renamed into place
// first and is the commit point: after a crash the overlay is either as it
// was or reset (then perhaps with the old delta's data still taking space
// until the next reset, but never read).
//
// The map must be a valid overlay map for d.Size. The base may have
// changed since CreateOverlay (that is one reason to reset): the new map
// records the base as it is now, whose size must still be d.Size. The
// cluster size stays.
func ResetOverlay(d Descriptor) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("reset overlay: %w", err)
	}
	if d.Format != FormatOverlay {
		return fmt.Errorf("reset overlay %s: %w: format %q, want %q", d.Paths[0], ErrInvalidDescriptor, d.Format, FormatOverlay)
	}
	delta, mapPath, base := d.Paths[0], d.Paths[1], d.Paths[2]
	fail := func(err error) error {
		return fmt.Errorf("reset overlay %s: %w", delta, err)
	}
	old, err := openLockedMap(mapPath, os.O_RDONLY, true)
	if err != nil {
		return fail(fmt.Errorf("map %s: %w", mapPath, err))
	}
	defer old.Close()
	oh, _, err := readMap(old)
	if err != nil {
		return fail(fmt.Errorf("map %s: %w", mapPath, err))
	}
	if oh.volumeSize != d.Size {
		return fail(fmt.Errorf("%w: size %d, the overlay map says %d", ErrInvalidDescriptor, d.Size, oh.volumeSize))
	}
	h, err := baseHeader(base, oh.clusterSize)
	if err != nil {
		return fail(err)
	}
	if h.volumeSize != d.Size {
		return fail(fmt.Errorf("base %s: %w: %d bytes, the volume is %d", base, ErrBaseChanged, h.volumeSize, d.Size))
	}

	tmpDelta, tmpMap, err := makeOverlayFiles(delta, mapPath, h)
	if err != nil {
		return fail(err)
	}
	defer os.Remove(tmpDelta)
	defer os.Remove(tmpMap)
	// Hold the new map locked until the new delta is in place too: an
	// Open that finds the new map before then is refused (ErrInUse).
	newMap, err := os.Open(tmpMap)
	if err != nil {
		return fail(unwrapPathError(err))
	}
	defer newMap.Close()
	if err := lockFile(newMap, true); err != nil {
		return fail(fmt.Errorf("map %s: %w", tmpMap, err))
	}
	if err := os.Rename(tmpMap, mapPath); err != nil {
		return fail(unwrapLinkError(err))
	}
	if err := syncDir(filepath.Dir(mapPath)); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmpDelta, delta); err != nil {
		return fail(unwrapLinkError(err))
	}
	if err := syncDir(filepath.Dir(delta)); err != nil {
		return fail(err)
	}
	return nil
}

// checkOverlayPaths wants three absolute, distinct paths.
func checkOverlayPaths(delta, mapPath, base string) error {
	paths := []string{delta, mapPath, base}
	for i, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("%w: path %d %q is not absolute", ErrInvalidDescriptor, i, p)
		}
		for _, q := range paths[:i] {
			if filepath.Clean(p) == filepath.Clean(q) {
				return fmt.Errorf("%w: path %q is given twice", ErrInvalidDescriptor, p)
			}
		}
	}
	return nil
}

// baseHeader describes an empty overlay over the base file at path.
func baseHeader(path string, clusterSize uint32) (mapHeader, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return mapHeader{}, fmt.Errorf("base %s: %w", path, unwrapPathError(err))
	}
	if !fi.Mode().IsRegular() {
		return mapHeader{}, fmt.Errorf("base %s: not a regular file (mode %s)", path, fi.Mode())
	}
	if fi.Size() <= 0 || fi.Size()%int64(DefaultBlockSize) != 0 {
		return mapHeader{}, fmt.Errorf("base %s: size %d is not a positive multiple of %d", path, fi.Size(), DefaultBlockSize)
	}
	h := newMapHeader(clusterSize, fi)
	if h.clusters > maxClusters {
		return mapHeader{}, fmt.Errorf("base %s: %d bytes make %d clusters of %d bytes, more than %d: use bigger clusters",
			path, fi.Size(), h.clusters, clusterSize, maxClusters)
	}
	return h, nil
}

// makeOverlayFiles creates an empty delta and map for h in temporary
// files beside delta and mapPath, syncs them (at once: a journaling
// filesystem commits both in one go) and returns their names.
func makeOverlayFiles(delta, mapPath string, h mapHeader) (tmpDelta, tmpMap string, err error) {
	d, err := createTemp(delta)
	if err != nil {
		return "", "", fmt.Errorf("delta %s: %w", delta, err)
	}
	m, err := createTemp(mapPath)
	if err != nil {
		d.Close()
		os.Remove(d.Name())
		return "", "", fmt.Errorf("map %s: %w", mapPath, err)
	}
	var errs [2]error
	errs[0] = d.Truncate(h.volumeSize)
	if _, errs[1] = m.WriteAt(h.encode(), 0); errs[1] == nil {
		errs[1] = m.Truncate(h.fileLen()) // the bitmap: a hole, all zeros
	}
	if errs[0] == nil && errs[1] == nil {
		var wg sync.WaitGroup
		wg.Go(func() { errs[0] = d.Sync() })
		wg.Go(func() { errs[1] = m.Sync() })
		wg.Wait()
	}
	for i, f := range []*os.File{d, m} {
		if cerr := f.Close(); errs[i] == nil {
			errs[i] = cerr
		}
	}
	if err := errors.Join(errs[:]...); err != nil {
		os.Remove(d.Name())
		os.Remove(m.Name())
		return "", "", err
	}
	return d.Name(), m.Name(), nil
}

// createTemp creates a temporary file with mode fileMode beside path.
func createTemp(path string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(fileMode); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, unwrapPathError(err))
	}
	return nil
}

// unwrapLinkError drops an *os.LinkError's op and paths, which the caller
// says.
func unwrapLinkError(err error) error {
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
