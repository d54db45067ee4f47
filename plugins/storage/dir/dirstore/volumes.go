package dirstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/storage/diskfile"
	"github.com/dls-project/dls/sdk/volume"
	"golang.org/x/sys/unix"
)

// CreateVolume implements storage.Storage: a reflink or an overlay of the
// version, instant whatever the image size.
func (p *Plugin) CreateVolume(ctx context.Context, req storage.VolumeRequest) (v storage.Volume, err error) {
	if err := storage.ValidName(req.Volume); err != nil {
		return v, fmt.Errorf("create volume: %w", err)
	}
	if err := storage.ValidName(req.Image); err != nil {
		return v, fmt.Errorf("create volume %s: %w", req.Volume, err)
	}
	p.mu.Lock()
	if _, ok := p.volumes[req.Volume]; ok {
		p.mu.Unlock()
		return v, fmt.Errorf("create volume %s: %w", req.Volume, storage.ErrExists)
	}
	vm, err := p.resolveVersion(req.Image, req.Version)
	if err != nil {
		p.mu.Unlock()
		return v, fmt.Errorf("create volume %s: %w", req.Volume, err)
	}
	release, err := p.claim("volume " + req.Volume)
	if err != nil {
		p.mu.Unlock()
		return v, fmt.Errorf("create volume %s: %w", req.Volume, storage.ErrExists)
	}
	defer release()
	// The version must not be pruned or deleted while it is cloned.
	defer p.pin(req.Image, vm.Number)()
	p.mu.Unlock()

	meta := &volumeMeta{Image: req.Image, Version: vm.Number, Size: vm.Size, Created: time.Now().UTC(), Gen: 1}
	if err := os.MkdirAll(p.volumeDir(req.Volume), 0o750); err != nil {
		return v, diskfile.NoSpace(fmt.Errorf("create volume %s: %w", req.Volume, err))
	}
	if err := p.clone(req.Volume, meta); err != nil {
		_ = os.RemoveAll(p.volumeDir(req.Volume))
		return v, fmt.Errorf("create volume %s from image %s version %d: %w", req.Volume, req.Image, vm.Number, err)
	}
	if err := writeJSON(p.volumeMetaPath(req.Volume), meta); err != nil {
		_ = os.RemoveAll(p.volumeDir(req.Volume))
		return v, fmt.Errorf("create volume %s: %w", req.Volume, err)
	}
	p.mu.Lock()
	p.volumes[req.Volume] = meta
	p.mu.Unlock()
	return storage.Volume{Name: req.Volume, Image: meta.Image, Version: meta.Version, Size: meta.Size}, nil
}

// resolveVersion finds image's version n (0: current); p.mu held.
func (p *Plugin) resolveVersion(image string, n uint64) (versionMeta, error) {
	m, err := p.image(image)
	if err != nil {
		return versionMeta{}, err
	}
	if n == 0 {
		n = m.Current
	}
	vm, ok := m.version(n)
	if !ok {
		return versionMeta{}, fmt.Errorf("image %s version %d: %w", image, n, storage.ErrNotFound)
	}
	return vm, nil
}

// clone makes generation meta.Gen of a volume's data from its version,
// setting meta.Format.
func (p *Plugin) clone(name string, meta *volumeMeta) error {
	base := p.versionPath(meta.Image, meta.Version)
	p.mu.Lock()
	mode := p.cfg.Clone
	cluster := uint32(p.cfg.ClusterSize)
	p.mu.Unlock()
	reflink, overlay := clonePlan(mode, runtime.GOOS)
	if reflink {
		err := reflinkFile(base, p.volumeFile(name, meta.Gen, "raw"))
		if err == nil {
			meta.Format = string(volume.FormatRaw)
			return nil
		}
		if !overlay || !reflinkUnsupported(err) {
			return fmt.Errorf("reflink %s (%s): %w", base, reflinkCall, err)
		}
	}
	if cluster == 0 {
		cluster = volume.DefaultClusterSize
	}
	if _, err := volume.CreateOverlay(base, p.volumeFile(name, meta.Gen, "delta"), p.volumeFile(name, meta.Gen, "map"), cluster); err != nil {
		return diskfile.NoSpace(err)
	}
	meta.Format = string(volume.FormatOverlay)
	return diskfile.SyncDir(p.volumeDir(name))
}

// clonePlan says what clone mode does on the platform goos: whether it
// tries a reflink first, and whether an overlay may follow (or comes
// alone). auto tries a reflink only on Linux, where FICLONE either shares
// the blocks or fails; FreeBSD's copy_file_range shares them only on
// OpenZFS with block cloning and otherwise copies every block, so auto
// makes overlays there, and reflink is asked for by name.
func clonePlan(mode, goos string) (reflink, overlay bool) {
	switch mode {
	case cloneReflink:
		return true, false
	case cloneOverlay:
		return false, true
	}
	return goos == "linux", true
}

// reflinkUnsupported tells a filesystem that cannot share blocks, where
// auto falls back to an overlay, from a failure of the reflink itself.
func reflinkUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EXDEV) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.ENOSYS)
}

// descriptor describes a volume's current data; p.mu held.
func (p *Plugin) descriptor(name string, meta *volumeMeta) volume.Descriptor {
	if meta.Format == string(volume.FormatRaw) {
		return volume.Descriptor{Format: volume.FormatRaw, Paths: []string{p.volumeFile(name, meta.Gen, "raw")}, Size: meta.Size, BlockSize: 512}
	}
	return volume.Descriptor{
		Format: volume.FormatOverlay, Size: meta.Size, BlockSize: 512,
		Paths: []string{p.volumeFile(name, meta.Gen, "delta"), p.volumeFile(name, meta.Gen, "map"), p.versionPath(meta.Image, meta.Version)},
	}
}

// volume returns a volume's metadata, refusing attached or busy volumes
// when exclusive; p.mu held.
func (p *Plugin) volume(name string, exclusive bool) (*volumeMeta, error) {
	if err := storage.ValidName(name); err != nil {
		return nil, err
	}
	if err := p.ready(); err != nil {
		return nil, err
	}
	meta, ok := p.volumes[name]
	if !ok {
		return nil, fmt.Errorf("volume %s: %w", name, storage.ErrNotFound)
	}
	if exclusive && p.attached[name] {
		return nil, fmt.Errorf("volume %s is attached: %w", name, storage.ErrInUse)
	}
	if exclusive && p.busy["volume "+name] {
		return nil, fmt.Errorf("volume %s: another operation on it is in progress: %w", name, storage.ErrInUse)
	}
	return meta, nil
}

// ResetVolume implements storage.Storage: a new generation of the data is
// made beside the old one and committed by the metadata write, so a crash
// leaves either the old volume or the new one.
func (p *Plugin) ResetVolume(ctx context.Context, req storage.VolumeRequest) (v storage.Volume, err error) {
	p.mu.Lock()
	old, err := p.volume(req.Volume, true)
	if err != nil {
		p.mu.Unlock()
		return v, fmt.Errorf("reset volume: %w", err)
	}
	image := req.Image
	if image == "" {
		image = old.Image
	}
	if err := storage.ValidName(image); err != nil {
		p.mu.Unlock()
		return v, fmt.Errorf("reset volume %s: %w", req.Volume, err)
	}
	vm, err := p.resolveVersion(image, req.Version)
	if err != nil {
		p.mu.Unlock()
		return v, fmt.Errorf("reset volume %s: %w", req.Volume, err)
	}
	release, _ := p.claim("volume " + req.Volume)
	defer p.pin(image, vm.Number)()
	p.mu.Unlock()
	defer release()

	meta := &volumeMeta{Image: image, Version: vm.Number, Size: vm.Size, Created: time.Now().UTC(), Gen: old.Gen + 1}
	if err := p.clone(req.Volume, meta); err != nil {
		p.removeGen(req.Volume, meta.Gen)
		return v, fmt.Errorf("reset volume %s: %w", req.Volume, err)
	}
	if err := writeJSON(p.volumeMetaPath(req.Volume), meta); err != nil {
		p.removeGen(req.Volume, meta.Gen)
		return v, fmt.Errorf("reset volume %s: %w", req.Volume, err)
	}
	p.mu.Lock()
	p.volumes[req.Volume] = meta
	p.mu.Unlock()
	p.removeGen(req.Volume, old.Gen)
	return storage.Volume{Name: req.Volume, Image: meta.Image, Version: meta.Version, Size: meta.Size}, nil
}

func (p *Plugin) removeGen(name string, gen uint64) {
	for _, ext := range []string{"raw", "delta", "map"} {
		_ = os.Remove(p.volumeFile(name, gen, ext))
	}
}

// DeleteVolume implements storage.Storage.
func (p *Plugin) DeleteVolume(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.volume(name, true); err != nil {
		return fmt.Errorf("delete volume: %w", err)
	}
	if err := os.Remove(p.volumeMetaPath(name)); err != nil {
		return fmt.Errorf("delete volume %s: %w", name, err)
	}
	delete(p.volumes, name)
	if err := os.RemoveAll(p.volumeDir(name)); err != nil {
		return fmt.Errorf("delete volume %s: %w", name, err)
	}
	return nil
}

// ListVolumes implements storage.Storage.
func (p *Plugin) ListVolumes(context.Context) ([]storage.Volume, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(); err != nil {
		return nil, err
	}
	out := make([]storage.Volume, 0, len(p.volumes))
	for name, m := range p.volumes {
		out = append(out, storage.Volume{Name: name, Image: m.Image, Version: m.Version, Size: m.Size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Attach implements storage.Storage.
func (p *Plugin) Attach(_ context.Context, name string) (d volume.Descriptor, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	meta, err := p.volume(name, false)
	if err != nil {
		return d, fmt.Errorf("attach: %w", err)
	}
	if p.busy["volume "+name] {
		return d, fmt.Errorf("attach volume %s: an operation on it is in progress: %w", name, storage.ErrInUse)
	}
	p.attached[name] = true
	return p.descriptor(name, meta), nil
}

// Detach implements storage.Storage. Detaching a volume that is not
// attached is not an error.
func (p *Plugin) Detach(_ context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.volume(name, false); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	delete(p.attached, name)
	return nil
}

// Promote implements storage.Promoter: the volume's content (flattened)
// becomes the next version of image, or version 1 of a new image.
func (p *Plugin) Promote(ctx context.Context, name, image string) (v storage.Version, err error) {
	if err := storage.ValidName(image); err != nil {
		return v, fmt.Errorf("promote volume %s: %w", name, err)
	}
	if err := storage.ValidName(name); err != nil {
		return v, fmt.Errorf("promote volume: %w", err)
	}
	p.mu.Lock()
	meta, err := p.volume(name, true)
	if err != nil {
		p.mu.Unlock()
		return v, fmt.Errorf("promote: %w", err)
	}
	d := p.descriptor(name, meta)
	releaseVol, _ := p.claim("volume " + name)
	releaseImg, err := p.claim("image " + image)
	if err != nil {
		p.mu.Unlock()
		releaseVol()
		return v, fmt.Errorf("promote volume %s to image %s: %w", name, image, err)
	}
	m, exists := p.images[image]
	next := uint64(1)
	if exists {
		next = m.Next
	}
	p.mu.Unlock()
	defer releaseVol()
	defer releaseImg()

	src, err := volume.Open(volume.Descriptor{Format: d.Format, Paths: d.Paths, Size: d.Size, BlockSize: d.BlockSize, ReadOnly: true})
	if err != nil {
		return v, fmt.Errorf("promote volume %s: %w", name, err)
	}
	defer src.Close()
	if err := os.MkdirAll(p.imageDir(image), 0o750); err != nil {
		return v, diskfile.NoSpace(fmt.Errorf("promote volume %s: %w", name, err))
	}
	path := p.versionPath(image, next)
	err = volume.CopyVolume(ctx, path, src)
	if err == nil {
		err = os.Chmod(path, 0o440)
	}
	if err != nil {
		err = diskfile.NoSpace(err)
		if !exists {
			_ = os.RemoveAll(p.imageDir(image))
		}
		return v, fmt.Errorf("promote volume %s to image %s: %w", name, image, err)
	}
	return p.addVersion(image, versionMeta{Number: next, Size: d.Size, Created: time.Now().UTC()}, exists)
}
