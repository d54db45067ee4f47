// Package file is the "file" storage plugin: images, their versions and
// clients' volumes are plain raw files under one directory. A clone is a
// full copy, which is simple, slow for big images and obviously correct;
// it is the example of a vendor plugin written only against the DLS SDK.
//
// Layout under root:
//
//	images/<image>/image.json     the manifest: versions, current version
//	images/<image>/<n>.img        version n, immutable
//	volumes/<volume>.img          a client's disk
//	volumes/<volume>.json         the image and version it was cloned from
//	trash/                        deleted images, being removed
//
// Every file is written to a temporary file in the same directory, synced
// and renamed into place, so a crash or a full disk never leaves a
// half-written image, volume or manifest under its real name; temporary
// files left by a crash are removed at the next Configure.
package file

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
)

// Version is the plugin's own version, reported in Info.
const Version = "0.1.0"

// DefaultRoot is where the plugin keeps its files when the config does not
// say: relative to the plugin's data directory.
const DefaultRoot = "file-storage"

// Config is the plugin's config {} block.
type Config struct {
	// Root is the directory holding images and volumes; a relative path is
	// taken relative to the plugin's data directory.
	Root string `hcl:"root,optional" doc:"directory holding images and volumes; relative paths are under the plugin's data dir"`
}

// Plugin is the file storage plugin. Create it with New; the host
// configures it before any other call.
type Plugin struct {
	metrics *instruments

	mu     sync.Mutex
	st     *store
	logger hclog.Logger
}

var (
	_ storage.Storage      = (*Plugin)(nil)
	_ storage.Promoter     = (*Plugin)(nil)
	_ base.MetricsDeclarer = (*Plugin)(nil)
	_ base.HealthChecker   = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New() *Plugin {
	p := &Plugin{metrics: newInstruments(), logger: hclog.NewNullLogger()}
	// Capacity and counts are read from disk when Prometheus asks, not
	// kept current on every operation.
	p.metrics.reg.OnCollect(func() {
		p.mu.Lock()
		st := p.st
		p.mu.Unlock()
		if st != nil {
			p.metrics.refresh(st)
		}
	})
	return p
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info {
	return base.Info{Type: "file", Version: Version}
}

// NewConfig implements base.Plugin: a Config with its defaults.
func (p *Plugin) NewConfig() any {
	return &Config{Root: DefaultRoot}
}

// Configure implements base.Plugin. It creates the root directory if
// needed and loads what is stored there. Reconfiguring with the same root
// keeps the state (attachments, operations in progress); another root
// starts over from what that directory holds.
func (p *Plugin) Configure(_ context.Context, req base.ConfigureRequest) error {
	cfg, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	root := cfg.Root
	if root == "" {
		return config.Errorf("root", "must not be empty")
	}
	if !filepath.IsAbs(root) {
		if req.DataDir == "" {
			return config.Errorf("root", "relative root %q needs the plugin's data directory, and the host gave none; use an absolute path", root)
		}
		root = filepath.Join(req.DataDir, root)
	}
	root = filepath.Clean(root)
	logger := req.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	p.logger = logger
	if p.st != nil && p.st.root == root {
		p.st.logger = logger
		return nil
	}
	st, err := openStore(root, logger)
	if err != nil {
		return config.Errorf("root", "%v", err)
	}
	p.st = st
	p.metrics.refresh(st)
	return nil
}

// store returns the configured store.
func (p *Plugin) store() (*store, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		return nil, errors.New("file storage is not configured")
	}
	return p.st, nil
}

// Metrics implements base.MetricsDeclarer: the gauges, refreshed at every
// collection (New), and the operation families the SDK records.
func (p *Plugin) Metrics() *metrics.Registry {
	return p.metrics.reg
}

// Health implements base.HealthChecker: the root must be writable.
func (p *Plugin) Health(context.Context) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(st.root, ".tmp-health-*")
	if err != nil {
		return fmt.Errorf("storage root %s is not writable: %w", st.root, err)
	}
	name := f.Name()
	_, werr := f.Write([]byte("ok"))
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, cerr, rerr); err != nil {
		return fmt.Errorf("storage root %s is not writable: %w", st.root, err)
	}
	return nil
}

// ImportImage implements storage.Storage.
func (p *Plugin) ImportImage(ctx context.Context, req storage.ImportRequest) (storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return storage.Version{}, err
	}
	return st.importImage(ctx, req)
}

// ListImages implements storage.Storage.
func (p *Plugin) ListImages(context.Context) ([]storage.Image, error) {
	st, err := p.store()
	if err != nil {
		return nil, err
	}
	return st.listImages(), nil
}

// DeleteImage implements storage.Storage.
func (p *Plugin) DeleteImage(_ context.Context, image string) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.deleteImage(image)
}

// CreateVersion implements storage.Storage: the current version is copied
// as the next one, which becomes current.
func (p *Plugin) CreateVersion(ctx context.Context, image string) (storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return storage.Version{}, err
	}
	return st.createVersion(ctx, image)
}

// ListVersions implements storage.Storage.
func (p *Plugin) ListVersions(_ context.Context, image string) ([]storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return nil, err
	}
	return st.listVersions(image)
}

// DeleteVersion implements storage.Storage.
func (p *Plugin) DeleteVersion(_ context.Context, image string, version uint64) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.deleteVersion(image, version)
}

// SetCurrentVersion implements storage.Storage.
func (p *Plugin) SetCurrentVersion(_ context.Context, image string, version uint64) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.setCurrentVersion(image, version)
}

// CreateVolume implements storage.Storage: a full copy of the version.
func (p *Plugin) CreateVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	st, err := p.store()
	if err != nil {
		return storage.Volume{}, err
	}
	return st.createVolume(ctx, req)
}

// ResetVolume implements storage.Storage: the volume is replaced by a
// fresh copy of the version. It is refused while the volume is attached.
func (p *Plugin) ResetVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	st, err := p.store()
	if err != nil {
		return storage.Volume{}, err
	}
	return st.resetVolume(ctx, req)
}

// DeleteVolume implements storage.Storage.
func (p *Plugin) DeleteVolume(_ context.Context, name string) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.deleteVolume(name)
}

// ListVolumes implements storage.Storage.
func (p *Plugin) ListVolumes(context.Context) ([]storage.Volume, error) {
	st, err := p.store()
	if err != nil {
		return nil, err
	}
	return st.listVolumes(), nil
}

// Capacity implements storage.Storage: used is the size of every image
// version and volume, available what the filesystem under root offers.
func (p *Plugin) Capacity(context.Context) (storage.Capacity, error) {
	st, err := p.store()
	if err != nil {
		return storage.Capacity{}, err
	}
	avail, err := st.available()
	if err != nil {
		return storage.Capacity{}, err
	}
	return storage.Capacity{Used: st.used(), Available: avail}, nil
}

// Attach implements storage.Storage: a raw descriptor of the volume's file.
func (p *Plugin) Attach(_ context.Context, name string) (volume.Descriptor, error) {
	st, err := p.store()
	if err != nil {
		return volume.Descriptor{}, err
	}
	return st.attach(name)
}

// Detach implements storage.Storage.
func (p *Plugin) Detach(_ context.Context, name string) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.detach(name)
}

// Promote implements storage.Promoter: the volume, which must not be
// attached, is copied as the image's next version and made current. The
// image is created if it does not exist.
func (p *Plugin) Promote(ctx context.Context, vol, image string) (storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return storage.Version{}, err
	}
	return st.promote(ctx, vol, image)
}
