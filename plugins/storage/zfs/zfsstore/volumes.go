package zfsstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

// clone makes volume name a clone of an image's version (0: current),
// pinning the version meanwhile. Call with the volume lock held.
func (s *store) clone(ctx context.Context, name, image string, n uint64, beforeClone func() error) (storage.Volume, error) {
	im, err := s.image(ctx, image)
	if err != nil {
		return storage.Volume{}, err
	}
	v, err := resolve(im, n)
	if err != nil {
		return storage.Volume{}, err
	}
	unpin, ok := s.pins.pin(versionRef{image, v.number})
	if !ok {
		return storage.Volume{}, fmt.Errorf("version %d of image %s: %w (being deleted)", v.number, image, storage.ErrNotFound)
	}
	defer unpin()
	if beforeClone != nil {
		// The version could have been deleted before the pin: check.
		if _, err := s.run().get(ctx, false, []string{"type"}, s.snapshot(image, v.number)); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return storage.Volume{}, fmt.Errorf("version %d of image %s: %w", v.number, image, storage.ErrNotFound)
			}
			return storage.Volume{}, err
		}
		if err := beforeClone(); err != nil {
			return storage.Volume{}, err
		}
	}
	if _, err := s.run().zfsCmd(ctx, "clone", "-o", propSize+"="+strconv.FormatInt(v.size, 10), s.snapshot(image, v.number), s.volumeDS(name)); err != nil {
		return storage.Volume{}, err
	}
	return storage.Volume{Name: name, Image: image, Version: v.number, Size: v.size}, nil
}

func (s *store) createVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("create volume %s from image %s: %w", req.Volume, req.Image, err)
	}
	if err := errors.Join(storage.ValidName(req.Volume), storage.ValidName(req.Image)); err != nil {
		return fail(err)
	}
	unlock, err := s.volumes.lock(ctx, req.Volume)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	switch _, err := s.volume(ctx, req.Volume); {
	case err == nil:
		return fail(fmt.Errorf("volume %s: %w", req.Volume, storage.ErrExists))
	case !errors.Is(err, storage.ErrNotFound):
		return fail(err)
	}
	v, err := s.clone(ctx, req.Volume, req.Image, req.Version, nil)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

// checkIdle refuses a volume that is attached or being read. Call with the
// volume lock held.
func (s *store) checkIdle(v *volumeInfo) error {
	if v.attached != "" {
		return fmt.Errorf("%w: volume %s is attached (since %s); it must be detached first", storage.ErrInUse, v.name, v.attached)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if op := s.busy[v.name]; op != "" {
		return fmt.Errorf("%w: volume %s: %s in progress", storage.ErrInUse, v.name, op)
	}
	return nil
}

func (s *store) resetVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("reset volume %s: %w", req.Volume, err)
	}
	if err := storage.ValidName(req.Volume); err != nil {
		return fail(err)
	}
	if req.Image != "" {
		if err := storage.ValidName(req.Image); err != nil {
			return fail(err)
		}
	}
	unlock, err := s.volumes.lock(ctx, req.Volume)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	old, err := s.volume(ctx, req.Volume)
	if err != nil {
		return fail(err)
	}
	if err := s.checkIdle(old); err != nil {
		return fail(err)
	}
	image := cmp.Or(req.Image, old.image)
	if image == "" {
		return fail(fmt.Errorf("%w: volume %s is not a clone of an image version here; name the image", storage.ErrNotFound, req.Volume))
	}
	destroyed := false
	v, err := s.clone(ctx, req.Volume, image, req.Version, func() error {
		if err := s.destroy(ctx, old.dataset, old.kind, false); err != nil {
			return err
		}
		destroyed = true
		return nil
	})
	if err != nil {
		if destroyed {
			return fail(fmt.Errorf("the old volume was destroyed, but the new clone failed: %w", err))
		}
		return fail(err)
	}
	return v, nil
}

// lockVolume checks name, takes the volume's lock and reads the volume
// under it: the prologue of the calls that change one volume (as
// lockImage is for images). The caller runs unlock when done.
func (s *store) lockVolume(ctx context.Context, name string) (*volumeInfo, func(), error) {
	if err := storage.ValidName(name); err != nil {
		return nil, nil, err
	}
	unlock, err := s.volumes.lock(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	v, err := s.volume(ctx, name)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return v, unlock, nil
}

func (s *store) deleteVolume(ctx context.Context, name string) error {
	fail := func(err error) error { return fmt.Errorf("delete volume %s: %w", name, err) }
	v, unlock, err := s.lockVolume(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if err := s.checkIdle(v); err != nil {
		return fail(err)
	}
	if err := s.destroy(ctx, v.dataset, v.kind, false); err != nil {
		return fail(err)
	}
	return nil
}

func (s *store) listVolumes(ctx context.Context) ([]storage.Volume, error) {
	vols, _, err := s.loadVolumes(ctx)
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	out := make([]storage.Volume, 0, len(vols))
	for _, v := range vols {
		out = append(out, storage.Volume{Name: v.name, Image: v.image, Version: v.version, Size: v.size})
	}
	slices.SortFunc(out, func(a, b storage.Volume) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (s *store) attach(ctx context.Context, name string) (volume.Descriptor, error) {
	fail := func(err error) (volume.Descriptor, error) {
		return volume.Descriptor{}, fmt.Errorf("attach volume %s: %w", name, err)
	}
	v, unlock, err := s.lockVolume(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	s.mu.Lock()
	op := s.busy[name]
	s.mu.Unlock()
	if op != "" {
		return fail(fmt.Errorf("%w: %s in progress", storage.ErrInUse, op))
	}
	path, err := s.dataPath(ctx, v.dataset, v.kind, v.mountpoint, v.mounted)
	if err != nil {
		return fail(err)
	}
	size := v.size
	if fi, err := os.Stat(path); err != nil {
		return fail(err)
	} else if size <= 0 && fi.Mode().IsRegular() {
		size = fi.Size() / int64(blockSize) * int64(blockSize)
	}
	if size <= 0 {
		return fail(fmt.Errorf("size unknown: %s has no %s property", v.dataset, propSize))
	}
	if v.attached == "" {
		stamp := time.Now().UTC().Format(time.RFC3339)
		if _, err := s.run().zfsCmd(ctx, "set", propAttached+"="+stamp, v.dataset); err != nil {
			return fail(err)
		}
	}
	return volume.Descriptor{Format: volume.FormatRaw, Paths: []string{path}, Size: size, BlockSize: blockSize}, nil
}

func (s *store) detach(ctx context.Context, name string) error {
	fail := func(err error) error { return fmt.Errorf("detach volume %s: %w", name, err) }
	v, unlock, err := s.lockVolume(ctx, name)
	if err != nil {
		return fail(err)
	}
	defer unlock()
	if v.attached == "" {
		return nil
	}
	if _, err := s.run().zfsCmd(ctx, "inherit", propAttached, v.dataset); err != nil {
		return fail(err)
	}
	return nil
}
