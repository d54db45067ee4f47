// Package rawdir is the smallest storage plugin that passes the SDK's
// conformance suite: raw files in one directory, every version and volume
// a full copy, one lock around every operation, all metadata in one JSON
// file (state.json) rewritten after each change. Versions are files
// <image>.v<n>, volumes <volume>.disk. Simple, not fast: start reading
// here; examples/storage-file is the complete example.
package rawdir

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/storage/diskfile"
	"github.com/dls-project/dls/sdk/volume"
	"golang.org/x/sys/unix"
)

// Plugin is the rawdir storage plugin. It has no settings: it keeps its
// files in the data directory the host gives it, and the host configures
// it before any other call.
type Plugin struct {
	storage.Unimplemented                   // answers what a later SDK adds to storage.Storage
	reg                   *metrics.Registry // where the SDK records the operation metrics

	mu       sync.Mutex // held by every operation, copies included
	root     string
	st       state
	attached map[string]bool
}

var _ base.MetricsDeclarer = (*Plugin)(nil)

// state is state.json.
type state struct {
	Images  map[string]*image
	Volumes map[string]storage.Volume
}

type image struct {
	Next     uint64            // never reused, even after deletes
	Versions []storage.Version // oldest first, one Current
}

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{reg: metrics.NewRegistry(), attached: map[string]bool{}} }

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info { return base.Info{Type: "rawdir", Version: "0.1.0"} }

// NewConfig implements base.Plugin: no config {} block.
func (p *Plugin) NewConfig() any { return nil }

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.reg }

// Configure implements base.Plugin: it reads state.json, if any.
func (p *Plugin) Configure(_ context.Context, req base.ConfigureRequest) error {
	st := state{Images: map[string]*image{}, Volumes: map[string]storage.Volume{}}
	b, err := os.ReadFile(filepath.Join(req.DataDir, "state.json"))
	if errors.Is(err, fs.ErrNotExist) {
		b, err = []byte("{}"), nil
	}
	if err = errors.Join(err, json.Unmarshal(b, &st)); err != nil {
		return fmt.Errorf("read state: %w", err)
	}
	defer p.lock()()
	p.root, p.st = req.DataDir, st
	return nil
}

// lock takes the plugin's lock and returns its release: defer p.lock()().
func (p *Plugin) lock() func() { p.mu.Lock(); return p.mu.Unlock }

func (p *Plugin) versionPath(image string, n uint64) string {
	return p.path(fmt.Sprintf("%s.v%d", image, n))
}

func (p *Plugin) diskPath(vol string) string { return p.path(vol + ".disk") }
func (p *Plugin) path(name string) string    { return filepath.Join(p.root, name) }

// save writes state.json after a change.
func (p *Plugin) save() error {
	b, err := json.Marshal(&p.st)
	if err != nil {
		return err
	}
	return diskfile.WriteFile(p.path("state.json"), b, 0o640)
}

// version checks name and finds version n (0: current) of the image.
func (p *Plugin) version(name string, n uint64) (*image, storage.Version, error) {
	if err := storage.ValidName(name); err != nil {
		return nil, storage.Version{}, err
	}
	im, ok := p.st.Images[name]
	if !ok {
		return nil, storage.Version{}, fmt.Errorf("image %s: %w", name, storage.ErrNotFound)
	}
	// n 0 is the current version.
	if i := slices.IndexFunc(im.Versions, func(v storage.Version) bool { return v.Number == n || n == 0 && v.Current }); i >= 0 {
		return im, im.Versions[i], nil
	}
	return im, storage.Version{}, fmt.Errorf("image %s version %d: %w", name, n, storage.ErrNotFound)
}

// volume checks name and finds the volume.
func (p *Plugin) volume(name string) (storage.Volume, error) {
	v, ok := p.st.Volumes[name]
	if err := storage.ValidName(name); err != nil || ok {
		return v, err
	}
	return v, fmt.Errorf("volume %s: %w", name, storage.ErrNotFound)
}

// addVersion copies src as the image's next version, made current,
// creating the image if needed.
func (p *Plugin) addVersion(ctx context.Context, name, src string, progress func(done, total int64)) (storage.Version, error) {
	im, _, err := p.version(name, 0)
	if errors.Is(err, storage.ErrNotFound) && im == nil {
		im, err = &image{Next: 1}, nil
	}
	if err != nil {
		return storage.Version{}, err
	}
	size, err := diskfile.CopyRaw(ctx, p.versionPath(name, im.Next), src, 0o440, progress)
	if err != nil {
		return storage.Version{}, fmt.Errorf("image %s: %w", name, err)
	}
	v := storage.Version{Image: name, Number: im.Next, Size: size, Created: time.Now().UTC(), Current: true}
	for i := range im.Versions {
		im.Versions[i].Current = false
	}
	im.Versions = append(im.Versions, v)
	im.Next = v.Number + 1
	p.st.Images[name] = im
	return v, p.save()
}

// ImportImage implements storage.Storage.
func (p *Plugin) ImportImage(ctx context.Context, req storage.ImportRequest) (storage.Version, error) {
	defer p.lock()()
	return p.addVersion(ctx, req.Image, req.Source, req.Progress)
}

// CreateVersion implements storage.Storage: a copy of the current version.
func (p *Plugin) CreateVersion(ctx context.Context, image string) (storage.Version, error) {
	defer p.lock()()
	_, cur, err := p.version(image, 0)
	if err != nil {
		return cur, err
	}
	return p.addVersion(ctx, image, p.versionPath(image, cur.Number), nil)
}

// ListImages implements storage.Storage.
func (p *Plugin) ListImages(context.Context) ([]storage.Image, error) {
	defer p.lock()()
	out := []storage.Image{}
	for _, name := range slices.Sorted(maps.Keys(p.st.Images)) {
		_, v, _ := p.version(name, 0)
		out = append(out, storage.Image{Name: name, CurrentVersion: v.Number, Size: v.Size})
	}
	return out, nil
}

// ListVersions implements storage.Storage.
func (p *Plugin) ListVersions(_ context.Context, image string) ([]storage.Version, error) {
	defer p.lock()()
	im, _, err := p.version(image, 0)
	if err != nil {
		return nil, err
	}
	return slices.Clone(im.Versions), nil
}

// inUse refuses when a volume was cloned from the image (from its version
// n, unless n is 0).
func (p *Plugin) inUse(image string, n uint64) error {
	for _, v := range p.st.Volumes {
		if v.Image == image && (n == 0 || v.Version == n) {
			return fmt.Errorf("image %s version %d: volume %s was cloned from it: %w", image, v.Version, v.Name, storage.ErrInUse)
		}
	}
	return nil
}

// DeleteImage implements storage.Storage.
func (p *Plugin) DeleteImage(_ context.Context, image string) error {
	defer p.lock()()
	im, _, err := p.version(image, 0)
	if err == nil {
		err = p.inUse(image, 0)
	}
	if err == nil {
		delete(p.st.Images, image)
		err = p.save()
	}
	for i := 0; err == nil && i < len(im.Versions); i++ {
		err = os.Remove(p.versionPath(image, im.Versions[i].Number))
	}
	return err
}

// DeleteVersion implements storage.Storage.
func (p *Plugin) DeleteVersion(_ context.Context, image string, n uint64) error {
	defer p.lock()()
	im, v, err := p.version(image, n)
	if err == nil && v.Current {
		err = fmt.Errorf("image %s version %d is current: %w", image, n, storage.ErrInUse)
	}
	if err == nil {
		err = p.inUse(image, n)
	}
	if err == nil {
		im.Versions = slices.DeleteFunc(im.Versions, func(x storage.Version) bool { return x.Number == n })
		err = p.save()
	}
	if err == nil {
		err = os.Remove(p.versionPath(image, n))
	}
	return err
}

// SetCurrentVersion implements storage.Storage.
func (p *Plugin) SetCurrentVersion(_ context.Context, image string, n uint64) error {
	defer p.lock()()
	im, v, err := p.version(image, n)
	if err != nil {
		return err
	}
	for i := range im.Versions {
		im.Versions[i].Current = im.Versions[i].Number == v.Number
	}
	return p.save()
}

// CreateVolume implements storage.Storage: a full copy of the version.
func (p *Plugin) CreateVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	return p.clone(ctx, req, false)
}

// ResetVolume implements storage.Storage: a new copy of the version, of
// the volume's image when req.Image is empty.
func (p *Plugin) ResetVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	return p.clone(ctx, req, true)
}

// clone makes a volume a copy of an image version: a new volume, or with
// reset an existing one that is not attached.
func (p *Plugin) clone(ctx context.Context, req storage.VolumeRequest, reset bool) (storage.Volume, error) {
	defer p.lock()()
	vol, err := p.volume(req.Volume)
	switch {
	case !reset && err == nil:
		err = storage.ErrExists
	case reset && err == nil && p.attached[req.Volume]:
		err = fmt.Errorf("it is attached: %w", storage.ErrInUse)
	case !reset && errors.Is(err, storage.ErrNotFound):
		err = nil
	}
	req.Image = cmp.Or(req.Image, vol.Image)
	var v storage.Version
	if err == nil {
		_, v, err = p.version(req.Image, req.Version)
	}
	if err == nil {
		_, err = diskfile.CopyRaw(ctx, p.diskPath(req.Volume), p.versionPath(req.Image, v.Number), 0o640, nil)
	}
	if err != nil {
		return storage.Volume{}, fmt.Errorf("volume %s: %w", req.Volume, err)
	}
	vol = storage.Volume{Name: req.Volume, Image: req.Image, Version: v.Number, Size: v.Size}
	p.st.Volumes[req.Volume] = vol
	return vol, p.save()
}

// DeleteVolume implements storage.Storage.
func (p *Plugin) DeleteVolume(_ context.Context, name string) error {
	defer p.lock()()
	_, err := p.volume(name)
	if err == nil && p.attached[name] {
		err = fmt.Errorf("volume %s is attached: %w", name, storage.ErrInUse)
	}
	if err == nil {
		delete(p.st.Volumes, name)
		err = p.save()
	}
	if err == nil {
		err = os.Remove(p.diskPath(name))
	}
	return err
}

// ListVolumes implements storage.Storage.
func (p *Plugin) ListVolumes(context.Context) ([]storage.Volume, error) {
	defer p.lock()()
	return slices.SortedFunc(maps.Values(p.st.Volumes), func(a, b storage.Volume) int { return strings.Compare(a.Name, b.Name) }), nil
}

// Capacity implements storage.Storage: the sizes of every version and
// volume, and what root's filesystem has left.
func (p *Plugin) Capacity(context.Context) (storage.Capacity, error) {
	defer p.lock()()
	var c storage.Capacity
	for _, im := range p.st.Images {
		for _, v := range im.Versions {
			c.Used += v.Size
		}
	}
	for _, v := range p.st.Volumes {
		c.Used += v.Size
	}
	var fs unix.Statfs_t
	err := unix.Statfs(p.root, &fs)
	c.Available = int64(fs.Bavail) * int64(fs.Bsize)
	return c, err
}

// Attach implements storage.Storage: the volume's raw file.
func (p *Plugin) Attach(_ context.Context, name string) (volume.Descriptor, error) {
	defer p.lock()()
	v, err := p.volume(name)
	if err != nil {
		return volume.Descriptor{}, err
	}
	p.attached[name] = true
	return volume.Descriptor{Format: volume.FormatRaw, Paths: []string{p.diskPath(name)}, Size: v.Size, BlockSize: 512}, nil
}

// Detach implements storage.Storage.
func (p *Plugin) Detach(_ context.Context, name string) error {
	defer p.lock()()
	_, err := p.volume(name)
	delete(p.attached, name)
	return err
}
