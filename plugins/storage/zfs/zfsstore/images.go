package zfsstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/storage/diskfile"
)

// importImage copies a raw file as an image's next version (version 1 of
// a new image).
func (s *store) importImage(ctx context.Context, req storage.ImportRequest) (storage.Version, error) {
	fail := func(err error) (storage.Version, error) {
		return storage.Version{}, fmt.Errorf("import image %s from %s: %w", req.Image, req.Source, err)
	}
	if err := storage.ValidName(req.Image); err != nil {
		return fail(err)
	}
	src, err := os.Open(req.Source)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	if fi.Size() == 0 || fi.Size()%int64(blockSize) != 0 {
		return fail(fmt.Errorf("size %d is not a positive multiple of %d bytes", fi.Size(), blockSize))
	}
	unlock, err := s.images.lock(ctx, "image "+req.Image)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	im, err := s.findImageForWrite(ctx, req.Image)
	if err != nil {
		return fail(err)
	}
	v, err := s.addVersion(ctx, req.Image, im, src, fi.Size(), req.Progress)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

// findImageForWrite reads an image about to get a version: nil when it
// does not exist. A dataset without any version is what a failed import
// could not clean up: it is destroyed and the image made anew. Call with
// the image lock held.
func (s *store) findImageForWrite(ctx context.Context, name string) (*imageInfo, error) {
	im, err := s.findImage(ctx, name)
	if err != nil || im == nil || len(im.versions) > 0 {
		return im, err
	}
	s.logger.Warn("destroying image dataset without a version before importing", "image", name)
	if err := s.destroy(ctx, im.dataset, im.kind, true); err != nil {
		return nil, err
	}
	return nil, nil
}

// addVersion writes size bytes of src into the image's head and snapshots
// it as the next version, made current. im is nil for a new image: its
// dataset is created, and destroyed again if anything fails before the
// version exists; an existing image's head is rolled back instead. Call
// with the image lock held.
func (s *store) addVersion(ctx context.Context, name string, im *imageInfo, src *os.File, size int64, progress func(done, total int64)) (storage.Version, error) {
	r := s.run()
	ds := s.imageDS(name)
	isNew := im == nil
	if isNew {
		kind := typeFilesystem
		args := []string{"create", "-o", propDirty + "=1"}
		if s.cfg.Load().zvol {
			kind = typeVolume
			args = append(args, "-s", "-V", strconv.FormatInt(roundUp(size, zvolAlign), 10))
		}
		if _, err := r.zfsCmd(ctx, append(args, ds)...); err != nil {
			return storage.Version{}, err
		}
		im = &imageInfo{name: name, dataset: ds, kind: kind}
	} else if _, err := r.zfsCmd(ctx, "set", propDirty+"=1", ds); err != nil {
		return storage.Version{}, err
	}
	made := false
	defer func() {
		if made {
			return
		}
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if isNew {
			if err := s.destroy(cctx, ds, im.kind, true); err != nil {
				s.logger.Error("destroy image after failed import; the next start retries", "image", name, "error", err)
			}
		} else if err := s.rollbackHead(cctx, im); err != nil {
			s.logger.Error("roll back image head after failure; the next start retries", "image", name, "error", err)
		}
	}()

	if err := s.writeHead(ctx, im, src, size, progress); err != nil {
		return storage.Version{}, err
	}
	n := im.nextNumber()
	if _, err := r.zfsCmd(ctx, "snapshot", "-o", propSize+"="+strconv.FormatInt(size, 10), s.snapshot(name, n)); err != nil {
		return storage.Version{}, err
	}
	made = true
	return s.makeCurrent(ctx, name, n, true)
}

// makeCurrent makes a new version n current, clears the head's dirty mark,
// prunes old versions and returns version n. Call with the image lock held.
func (s *store) makeCurrent(ctx context.Context, name string, n uint64, dirty bool) (storage.Version, error) {
	r := s.run()
	ds := s.imageDS(name)
	if _, err := r.zfsCmd(ctx, "set", propCurrent+"="+strconv.FormatUint(n, 10), ds); err != nil {
		return storage.Version{}, fmt.Errorf("version %d made, but not current: %w", n, err)
	}
	if dirty {
		if _, err := r.zfsCmd(ctx, "inherit", propDirty, ds); err != nil {
			s.logger.Warn("clear the head's dirty mark; the next start rolls it back to this version", "image", name, "error", err)
		}
	}
	im, err := s.image(ctx, name)
	if err != nil {
		return storage.Version{}, err
	}
	s.prune(ctx, im)
	v := im.version(n)
	if v == nil {
		return storage.Version{}, fmt.Errorf("version %d of image %s: %w (destroyed meanwhile)", n, name, storage.ErrNotFound)
	}
	return im.storageVersion(*v), nil
}

// writeHead makes the image head's disk equal to size bytes of src.
func (s *store) writeHead(ctx context.Context, im *imageInfo, src *os.File, size int64, progress func(done, total int64)) error {
	path, _, err := s.datasetPath(ctx, im.dataset)
	if err != nil {
		return err
	}
	var dst *os.File
	var zeroFrom int64
	if im.kind == typeVolume {
		t, err := s.run().get(ctx, false, []string{"volsize"}, im.dataset)
		if err != nil {
			return err
		}
		volsize := int64(t.number(im.dataset, "volsize", false))
		if volsize < size {
			if _, err := s.run().zfsCmd(ctx, "set", "volsize="+strconv.FormatInt(roundUp(size, zvolAlign), 10), im.dataset); err != nil {
				return err
			}
		}
		if len(im.versions) > 0 {
			zeroFrom = min(volsize, size) // a new zvol reads as zeros
		}
		if dst, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
			return err
		}
	} else {
		if dst, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
			return fmt.Errorf("create %s: %w", path, diskfile.NoSpace(err))
		}
		fi, err := dst.Stat()
		if err != nil {
			dst.Close()
			return err
		}
		if fi.Size() != size {
			if err := dst.Truncate(size); err != nil {
				dst.Close()
				return fmt.Errorf("truncate %s: %w", path, diskfile.NoSpace(err))
			}
		}
		zeroFrom = min(fi.Size(), size)
	}
	written, err := copyDelta(ctx, dst, src, size, zeroFrom, progress)
	if cerr := dst.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", path, diskfile.NoSpace(cerr))
	}
	if err != nil {
		return err
	}
	s.logger.Debug("wrote image head", "image", im.name, "size", size, "written", written)
	return nil
}

// prune destroys the versions older than the newest keep_versions that
// are neither current nor cloned. Call with the image lock held.
func (s *store) prune(ctx context.Context, im *imageInfo) {
	keep := s.cfg.Load().keep
	if keep <= 0 || len(im.versions) <= keep {
		return
	}
	cur := im.current()
	old := im.versions[:len(im.versions)-keep]
	var pruned []uint64
	for _, v := range slices.Clone(old) {
		if v.number == cur {
			continue
		}
		err := s.deleteVersionLocked(ctx, im, v.number)
		switch {
		case err == nil:
			pruned = append(pruned, v.number)
		case errors.Is(err, storage.ErrInUse):
			s.logger.Debug("keeping old version: volumes use it", "image", im.name, "version", v.number)
		default:
			s.logger.Warn("prune old version", "image", im.name, "version", v.number, "error", err)
		}
	}
	if len(pruned) > 0 {
		s.logger.Info("pruned old versions", "image", im.name, "versions", pruned, "keep_versions", keep)
		im.versions = slices.DeleteFunc(im.versions, func(v versionInfo) bool { return slices.Contains(pruned, v.number) })
	}
}

// deleteVersionLocked destroys version n's snapshot; ZFS refuses while it
// has clones (ErrInUse). Deleting the newest version rolls the head back to
// the one before, so that the head is always the newest version. Call with
// the image lock held.
func (s *store) deleteVersionLocked(ctx context.Context, im *imageInfo, n uint64) error {
	done, ok := s.pins.startDelete(versionRef{im.name, n})
	if !ok {
		return fmt.Errorf("%w: a volume is being cloned from it", storage.ErrInUse)
	}
	defer done()
	r := s.run()
	newest := n == im.latest()
	if newest && im.nextProp <= n {
		if _, err := r.zfsCmd(ctx, "set", propNext+"="+strconv.FormatUint(n+1, 10), im.dataset); err != nil {
			return err
		}
	}
	if _, err := r.zfsCmd(ctx, "destroy", s.snapshot(im.name, n)); err != nil {
		if errors.Is(err, storage.ErrInUse) {
			return fmt.Errorf("volumes were cloned from it: %w", err)
		}
		return err
	}
	if newest {
		rest := &imageInfo{name: im.name, dataset: im.dataset, versions: slices.DeleteFunc(slices.Clone(im.versions), func(v versionInfo) bool { return v.number == n })}
		if err := s.rollbackHead(ctx, rest); err != nil {
			s.logger.Error("roll back head after deleting the newest version", "image", im.name, "error", err)
			_, _ = r.zfsCmd(ctx, "set", propDirty+"=1", im.dataset)
		}
	}
	return nil
}

func (s *store) listImages(ctx context.Context) ([]storage.Image, error) {
	ims, err := s.loadImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]storage.Image, 0, len(ims))
	for _, im := range ims {
		if len(im.versions) == 0 {
			continue // an import in progress
		}
		cur := im.current()
		out = append(out, storage.Image{Name: im.name, CurrentVersion: cur, Size: im.version(cur).size})
	}
	slices.SortFunc(out, func(a, b storage.Image) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// lockImage checks name, takes the image's lock and reads the image under
// it: the prologue of every call that changes one image. The caller runs
// unlock when done.
func (s *store) lockImage(ctx context.Context, name string) (*imageInfo, func(), error) {
	if err := storage.ValidName(name); err != nil {
		return nil, nil, err
	}
	unlock, err := s.images.lock(ctx, "image "+name)
	if err != nil {
		return nil, nil, err
	}
	im, err := s.image(ctx, name)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return im, unlock, nil
}

func (s *store) deleteImage(ctx context.Context, name string) error {
	fail := func(err error) error { return fmt.Errorf("delete image %s: %w", name, err) }
	im, unlock, err := s.lockImage(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	done, ok := s.pins.startDelete(versionRef{name, 0})
	if !ok {
		return fail(fmt.Errorf("%w: a volume is being cloned from it", storage.ErrInUse))
	}
	defer done()
	vols, _, err := s.loadVolumes(ctx)
	if err != nil {
		return fail(err)
	}
	var users []string
	for _, v := range vols {
		if v.image == name {
			users = append(users, v.name)
		}
	}
	if len(users) > 0 {
		slices.Sort(users)
		return fail(fmt.Errorf("%w: volumes were cloned from it: %s", storage.ErrInUse, strings.Join(users, ", ")))
	}
	if err := s.destroy(ctx, im.dataset, im.kind, true); err != nil {
		return fail(err)
	}
	return nil
}

func (s *store) createVersion(ctx context.Context, name string) (storage.Version, error) {
	fail := func(err error) (storage.Version, error) {
		return storage.Version{}, fmt.Errorf("create version of image %s: %w", name, err)
	}
	im, unlock, err := s.lockImage(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if im.dirty {
		if err := s.rollbackHead(ctx, im); err != nil {
			return fail(err)
		}
	}
	cur, _ := resolve(im, 0)
	if cur.number == im.latest() {
		// The head is the current version: snapshot it.
		n := im.nextNumber()
		if _, err := s.run().zfsCmd(ctx, "snapshot", "-o", propSize+"="+strconv.FormatInt(cur.size, 10), s.snapshot(name, n)); err != nil {
			return fail(err)
		}
		v, err := s.makeCurrent(ctx, name, n, false)
		if err != nil {
			return fail(err)
		}
		return v, nil
	}
	// An older version is current: copy it into the head through a
	// temporary clone (only the blocks that differ are written).
	tmp := s.volumesDS + "/" + tmpPrefix + "version-" + randomSuffix()
	if _, err := s.run().zfsCmd(ctx, "clone", s.snapshot(name, cur.number), tmp); err != nil {
		return fail(err)
	}
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if err := s.destroy(cctx, tmp, im.kind, false); err != nil {
			s.logger.Error("destroy temporary clone; the next start retries", "dataset", tmp, "error", err)
		}
	}()
	path, _, err := s.datasetPath(ctx, tmp)
	if err != nil {
		return fail(err)
	}
	src, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	v, err := s.addVersion(ctx, name, im, src, cur.size, nil)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

func (s *store) listVersions(ctx context.Context, name string) ([]storage.Version, error) {
	if err := storage.ValidName(name); err != nil {
		return nil, fmt.Errorf("list versions of image %s: %w", name, err)
	}
	im, err := s.image(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("list versions of image %s: %w", name, err)
	}
	out := make([]storage.Version, len(im.versions))
	for i, v := range im.versions {
		out[i] = im.storageVersion(v)
	}
	return out, nil
}

func (s *store) deleteVersion(ctx context.Context, name string, n uint64) error {
	fail := func(err error) error { return fmt.Errorf("delete version %d of image %s: %w", n, name, err) }
	im, unlock, err := s.lockImage(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	switch {
	case im.version(n) == nil:
		return fail(storage.ErrNotFound)
	case n == im.current():
		return fail(fmt.Errorf("%w: it is the current version", storage.ErrInUse))
	}
	if err := s.deleteVersionLocked(ctx, im, n); err != nil {
		return fail(err)
	}
	return nil
}

func (s *store) setCurrentVersion(ctx context.Context, name string, n uint64) error {
	fail := func(err error) error {
		return fmt.Errorf("set current version of image %s to %d: %w", name, n, err)
	}
	im, unlock, err := s.lockImage(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if im.version(n) == nil {
		return fail(fmt.Errorf("version %d: %w", n, storage.ErrNotFound))
	}
	if _, err := s.run().zfsCmd(ctx, "set", propCurrent+"="+strconv.FormatUint(n, 10), im.dataset); err != nil {
		return fail(err)
	}
	return nil
}

func (s *store) promote(ctx context.Context, vol, image string) (storage.Version, error) {
	fail := func(err error) (storage.Version, error) {
		return storage.Version{}, fmt.Errorf("promote volume %s to image %s: %w", vol, image, err)
	}
	if err := errors.Join(storage.ValidName(vol), storage.ValidName(image)); err != nil {
		return fail(err)
	}
	// Mark the volume busy, so that it is neither attached, reset nor
	// deleted while it is read, without holding its lock that long.
	unlockVol, err := s.volumes.lock(ctx, vol)
	if err != nil {
		return fail(err)
	}
	v, err := s.volume(ctx, vol)
	if err == nil {
		err = s.checkIdle(v)
	}
	if err != nil {
		unlockVol()
		return fail(err)
	}
	s.mu.Lock()
	s.busy[vol] = "promote"
	s.mu.Unlock()
	unlockVol()
	defer func() {
		s.mu.Lock()
		delete(s.busy, vol)
		s.mu.Unlock()
	}()

	path, err := s.dataPath(ctx, v.dataset, v.kind, v.mountpoint, v.mounted)
	if err != nil {
		return fail(err)
	}
	src, err := os.Open(path)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	size := v.size
	if size <= 0 {
		return fail(fmt.Errorf("size unknown: %s has no %s property", v.dataset, propSize))
	}
	unlock, err := s.images.lock(ctx, "image "+image)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	im, err := s.findImageForWrite(ctx, image)
	if err != nil {
		return fail(err)
	}
	ver, err := s.addVersion(ctx, image, im, src, size, nil)
	if err != nil {
		return fail(err)
	}
	return ver, nil
}
