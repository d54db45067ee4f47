// Package zfsstore is the "zfs" storage plugin: a ZFS dataset per image, a
// snapshot per version, a clone per client volume. A volume is created in
// constant time whatever the image's size, and holds only the blocks its
// client wrote.
//
// Layout under the configured parent dataset (see store):
//
//	<dataset>/images/<image>         the image's head: <mountpoint>/disk.raw
//	<dataset>/images/<image>@v<n>    version n (io.dls:size on it)
//	<dataset>/volumes/<volume>       a clone of a version: <mountpoint>/disk.raw
//
// With volume_mode = "zvol" new images are zvols instead of files, and so
// are their clones. The plugin runs zfs and zpool by absolute path (no cgo;
// plugins start with an empty PATH) and parses `zfs get -H -p` output,
// which zfs-fuse and OpenZFS print alike.
package zfsstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
)

// Version is the plugin's own version, reported in Info.
const Version = "0.1.0"

// Defaults of the config attributes.
const (
	DefaultKeepVersions   = 10
	DefaultCommandTimeout = time.Minute
	// collectTimeout bounds the zfs command run to refresh the gauges at
	// a scrape.
	collectTimeout = 5 * time.Second
)

// Volume modes.
const (
	ModeFile = "file"
	ModeZvol = "zvol"
)

// Config is the plugin's config {} block.
type Config struct {
	Dataset        string        `hcl:"dataset" doc:"parent dataset the plugin owns, e.g. tank/dls; created if missing, with children images and volumes"`
	ZFS            string        `hcl:"zfs,optional" doc:"absolute path of the zfs command; default: the first of /usr/sbin, /sbin, /usr/bin, /bin that has it"`
	Zpool          string        `hcl:"zpool,optional" doc:"absolute path of the zpool command; default: as for zfs"`
	KeepVersions   int           `hcl:"keep_versions,optional" doc:"keep the newest N versions of each image; older ones that are not current and have no clones are deleted; 0 keeps all"`
	VolumeMode     string        `hcl:"volume_mode,optional" doc:"\"file\": each disk is a raw file in its dataset (every ZFS, zfs-fuse included); \"zvol\": new images and their clones are zvols"`
	CommandTimeout time.Duration `hcl:"command_timeout,optional" doc:"time limit of each zfs or zpool command"`
}

// Plugin is the zfs storage plugin. Create it with New; the host
// configures it before any other call.
type Plugin struct {
	reg     *metrics.Registry
	metrics *storage.Metrics

	mu sync.Mutex
	st *store
	// collectCtx is the base of the gauges' refresh, which runs at
	// collection time without a context of its own: the last Configure's,
	// without its cancellation (that call has long returned).
	collectCtx context.Context
}

var (
	_ storage.Storage      = (*Plugin)(nil)
	_ storage.Promoter     = (*Plugin)(nil)
	_ base.MetricsDeclarer = (*Plugin)(nil)
	_ base.HealthChecker   = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New() *Plugin {
	reg := metrics.NewRegistry()
	p := &Plugin{reg: reg, metrics: storage.NewMetrics(reg)}
	// Counts and capacity are read from ZFS when Prometheus asks.
	reg.OnCollect(p.refreshGauges)
	return p
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info {
	return base.Info{Type: "zfs", Version: Version}
}

// NewConfig implements base.Plugin: a Config with its defaults.
func (p *Plugin) NewConfig() any {
	return &Config{KeepVersions: DefaultKeepVersions, VolumeMode: ModeFile, CommandTimeout: DefaultCommandTimeout}
}

// settings checks a config and turns it into settings.
func (c *Config) settings(logger hclog.Logger) (*settings, error) {
	var errs config.Errors
	if err := validDataset(c.Dataset); err != nil {
		errs.Add(config.Errorf("dataset", "%v", err))
	}
	zfsPath, zpoolPath := c.ZFS, c.Zpool
	for _, b := range []struct {
		attr, name string
		path       *string
	}{{"zfs", "zfs", &zfsPath}, {"zpool", "zpool", &zpoolPath}} {
		var err error
		if *b.path == "" {
			*b.path, err = findBinary(b.name)
		} else {
			err = checkExecutable(*b.path)
		}
		if err != nil {
			errs.Add(config.Errorf(b.attr, "%v", err))
		}
	}
	if c.KeepVersions < 0 {
		errs.Add(config.Errorf("keep_versions", "must be 0 (keep all) or more, not %d", c.KeepVersions))
	}
	if c.VolumeMode != ModeFile && c.VolumeMode != ModeZvol {
		errs.Add(config.Errorf("volume_mode", "must be %q or %q, not %q", ModeFile, ModeZvol, c.VolumeMode))
	}
	if c.CommandTimeout <= 0 {
		errs.Add(config.Errorf("command_timeout", "must be positive, not %s", c.CommandTimeout))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return &settings{
		run:  &runner{zfs: zfsPath, zpool: zpoolPath, timeout: c.CommandTimeout, logger: logger},
		keep: c.KeepVersions,
		zvol: c.VolumeMode == ModeZvol,
	}, nil
}

// Configure implements base.Plugin. It creates the parent dataset and its
// children if needed, checks that zvols work when volume_mode asks for
// them, and on the first configuration of a dataset cleans up what an
// interrupted run left (see store.recover). Reconfiguring the same dataset
// keeps the operations in progress.
func (p *Plugin) Configure(ctx context.Context, req base.ConfigureRequest) error {
	cfg, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	logger := req.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	set, err := cfg.settings(logger)
	if err != nil {
		return err
	}
	// Check the new settings on a store of their own, so that operations
	// running meanwhile keep the settings in force until they pass.
	next := newStore(cfg.Dataset, set, logger)
	if err := next.layout(ctx); err != nil {
		return config.Errorf("dataset", "%v", err)
	}
	if set.zvol {
		if err := next.probeZvol(ctx); err != nil {
			return config.Errorf("volume_mode", "this ZFS cannot make zvols (zfs-fuse cannot; use \"file\"): %v", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.collectCtx = context.WithoutCancel(ctx)
	if p.st != nil && p.st.root == cfg.Dataset {
		p.st.cfg.Store(set)
		return nil
	}
	if err := next.recover(ctx); err != nil {
		return config.Errorf("dataset", "%v", err)
	}
	p.st = next
	return nil
}

// store returns the configured store.
func (p *Plugin) store() (*store, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		return nil, errors.New("zfs storage is not configured")
	}
	return p.st, nil
}

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.reg }

// refreshGauges sets the image, version and capacity gauges from ZFS; on
// error they keep their last values.
func (p *Plugin) refreshGauges() {
	p.mu.Lock()
	st, base := p.st, p.collectCtx
	p.mu.Unlock()
	if st == nil {
		return
	}
	ctx, cancel := context.WithTimeout(base, collectTimeout)
	defer cancel()
	inv, err := st.inventory(ctx)
	if err != nil {
		st.logger.Warn("read inventory for metrics", "error", err)
		return
	}
	p.metrics.Set(inv)
}

// Health implements base.HealthChecker: the parent dataset must answer
// and its pool be ONLINE or DEGRADED.
func (p *Plugin) Health(ctx context.Context) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.health(ctx)
}

// ImportImage implements storage.Storage: the raw file is copied into the
// image's head (only blocks that differ from the head, and no zero blocks
// into a new image) and snapshotted as the next version, made current.
func (p *Plugin) ImportImage(ctx context.Context, req storage.ImportRequest) (storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return storage.Version{}, err
	}
	return st.importImage(ctx, req)
}

// ListImages implements storage.Storage.
func (p *Plugin) ListImages(ctx context.Context) ([]storage.Image, error) {
	st, err := p.store()
	if err != nil {
		return nil, err
	}
	return st.listImages(ctx)
}

// DeleteImage implements storage.Storage: the image's dataset and its
// snapshots are destroyed; refused while volumes are clones of it.
func (p *Plugin) DeleteImage(ctx context.Context, image string) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.deleteImage(ctx, image)
}

// CreateVersion implements storage.Storage: the current version becomes
// a new snapshot, made current.
func (p *Plugin) CreateVersion(ctx context.Context, image string) (storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return storage.Version{}, err
	}
	return st.createVersion(ctx, image)
}

// ListVersions implements storage.Storage.
func (p *Plugin) ListVersions(ctx context.Context, image string) ([]storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return nil, err
	}
	return st.listVersions(ctx, image)
}

// DeleteVersion implements storage.Storage: the snapshot is destroyed;
// refused for the current version and one with clones.
func (p *Plugin) DeleteVersion(ctx context.Context, image string, version uint64) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.deleteVersion(ctx, image, version)
}

// SetCurrentVersion implements storage.Storage.
func (p *Plugin) SetCurrentVersion(ctx context.Context, image string, version uint64) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.setCurrentVersion(ctx, image, version)
}

// CreateVolume implements storage.Storage: a ZFS clone of the version.
func (p *Plugin) CreateVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	st, err := p.store()
	if err != nil {
		return storage.Volume{}, err
	}
	return st.createVolume(ctx, req)
}

// ResetVolume implements storage.Storage: the clone is destroyed and made
// again; refused while the volume is attached.
func (p *Plugin) ResetVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	st, err := p.store()
	if err != nil {
		return storage.Volume{}, err
	}
	return st.resetVolume(ctx, req)
}

// DeleteVolume implements storage.Storage; refused while attached.
func (p *Plugin) DeleteVolume(ctx context.Context, name string) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.deleteVolume(ctx, name)
}

// ListVolumes implements storage.Storage.
func (p *Plugin) ListVolumes(ctx context.Context) ([]storage.Volume, error) {
	st, err := p.store()
	if err != nil {
		return nil, err
	}
	return st.listVolumes(ctx)
}

// Capacity implements storage.Storage: used and available of the parent
// dataset, as ZFS counts them (snapshots, quotas and the pool's free
// space included).
func (p *Plugin) Capacity(ctx context.Context) (storage.Capacity, error) {
	st, err := p.store()
	if err != nil {
		return storage.Capacity{}, err
	}
	return st.capacity(ctx)
}

// Attach implements storage.Storage: a raw descriptor of the clone's disk,
// recorded as attached in the io.dls:attached property until Detach.
func (p *Plugin) Attach(ctx context.Context, name string) (volume.Descriptor, error) {
	st, err := p.store()
	if err != nil {
		return volume.Descriptor{}, err
	}
	return st.attach(ctx, name)
}

// Detach implements storage.Storage. Detaching a volume that is not
// attached succeeds.
func (p *Plugin) Detach(ctx context.Context, name string) error {
	st, err := p.store()
	if err != nil {
		return err
	}
	return st.detach(ctx, name)
}

// Promote implements storage.Promoter: the volume, which must not be
// attached, is copied into the image's head (only the blocks that differ)
// and snapshotted as its next version, made current. The image is created
// if it does not exist.
func (p *Plugin) Promote(ctx context.Context, vol, image string) (storage.Version, error) {
	st, err := p.store()
	if err != nil {
		return storage.Version{}, err
	}
	return st.promote(ctx, vol, image)
}
