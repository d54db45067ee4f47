// Package dirstore is the "dir" storage plugin, the embedded default:
// images, their immutable numbered versions and per-client volumes as files
// under one directory. A version is a raw file; a volume is a reflink of
// it where the filesystem can, else an sdk/volume overlay over it, so a
// clone is instant whatever the image size.
//
// Layout under root:
//
//	images/<image>/manifest.json   versions, current, next number
//	images/<image>/v<n>.raw        version n, read-only
//	volumes/<volume>.json          the volume's metadata: its commit point
//	volumes/<volume>/g<gen>.*      the data of its current generation
package dirstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/storage/diskfile"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// Version of this plugin.
const Version = "0.1.0"

// Clone strategies.
const (
	cloneAuto    = "auto"
	cloneReflink = "reflink"
	cloneOverlay = "overlay"
)

// Config is the plugin's config block.
type Config struct {
	Root         string `hcl:"root,optional" doc:"directory holding images and volumes; relative paths are under the plugin's data dir"`
	Clone        string `hcl:"clone,optional" doc:"how volumes are cloned: auto (Linux: reflink where the filesystem can, else overlay; FreeBSD: overlay), reflink (FICLONE on Linux, copy_file_range on FreeBSD), overlay"`
	KeepVersions int    `hcl:"keep_versions,optional" doc:"keep the newest N versions of each image (older ones nobody uses are deleted); 0 keeps all"`
	ClusterSize  int    `hcl:"cluster_size,optional" doc:"overlay allocation unit in bytes (power of two, 4096 to 1048576); 0: the SDK default"`
}

// Plugin is the dir storage plugin.
type Plugin struct {
	metrics *storage.Metrics
	reg     *metrics.Registry
	logger  hclog.Logger

	mu       sync.Mutex
	cfg      Config
	root     string
	images   map[string]*manifest
	volumes  map[string]*volumeMeta
	attached map[string]bool
	busy     map[string]bool // names with an operation in progress
	pins     map[string]int  // versions being cloned: not to be deleted
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
	p := &Plugin{reg: reg, metrics: storage.NewMetrics(reg), logger: hclog.NewNullLogger()}
	reg.OnCollect(p.refreshGauges)
	return p
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info { return base.Info{Type: "dir", Version: Version} }

// NewConfig implements base.Plugin.
func (p *Plugin) NewConfig() any { return &Config{Root: "storage", Clone: cloneAuto} }

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.reg }

// manifest is images/<name>/manifest.json.
type manifest struct {
	Current  uint64        `json:"current"`
	Next     uint64        `json:"next"` // never reused, even after deletes
	Versions []versionMeta `json:"versions"`
}

type versionMeta struct {
	Number  uint64    `json:"number"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// volumeMeta is volumes/<name>.json.
type volumeMeta struct {
	Image   string    `json:"image"`
	Version uint64    `json:"version"`
	Format  string    `json:"format"` // raw (reflink) or overlay
	Gen     uint64    `json:"gen"`    // data files are volumes/<name>/g<gen>.*; a reset makes gen+1
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// Configure implements base.Plugin.
func (p *Plugin) Configure(ctx context.Context, req base.ConfigureRequest) error {
	cfg, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	c := *cfg
	var errs []error
	switch c.Clone {
	case cloneAuto, cloneReflink, cloneOverlay:
	default:
		errs = append(errs, configError("clone", "clone must be auto, reflink or overlay, not %q", c.Clone))
	}
	if c.KeepVersions < 0 {
		errs = append(errs, configError("keep_versions", "keep_versions must be 0 (keep all) or more"))
	}
	if c.ClusterSize != 0 && (c.ClusterSize < 4096 || c.ClusterSize > 1<<20 || c.ClusterSize&(c.ClusterSize-1) != 0) {
		errs = append(errs, configError("cluster_size", "cluster_size must be a power of two from 4096 to 1048576"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	root := c.Root
	if !filepath.IsAbs(root) {
		root = filepath.Join(req.DataDir, root)
	}
	for _, d := range []string{root, filepath.Join(root, "images"), filepath.Join(root, "volumes")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	images, volumes, err := load(root)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.Logger != nil {
		p.logger = req.Logger
	}
	p.cfg, p.root, p.images, p.volumes = c, root, images, volumes
	p.collectCtx = context.WithoutCancel(ctx)
	if p.attached == nil {
		p.attached = map[string]bool{}
	}
	p.busy = map[string]bool{}
	p.pins = map[string]int{}
	return nil
}

// load reads the metadata and removes what a crash left half-made.
func load(root string) (map[string]*manifest, map[string]*volumeMeta, error) {
	images := map[string]*manifest{}
	volumes := map[string]*volumeMeta{}
	idir := filepath.Join(root, "images")
	entries, err := os.ReadDir(idir)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", idir, err)
	}
	for _, e := range entries {
		dir := filepath.Join(idir, e.Name())
		var m manifest
		if err := readJSON(filepath.Join(dir, "manifest.json"), &m); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// An import that never got its manifest: not an image.
				_ = os.RemoveAll(dir)
				continue
			}
			return nil, nil, err
		}
		removeTemps(dir)
		images[e.Name()] = &m
	}
	vdir := filepath.Join(root, "volumes")
	entries, err = os.ReadDir(vdir)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", vdir, err)
	}
	removeTemps(vdir)
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".tmp-") {
			continue
		}
		var v volumeMeta
		if err := readJSON(filepath.Join(vdir, e.Name()), &v); err != nil {
			return nil, nil, err
		}
		volumes[name] = &v
	}
	// The metadata file is each volume's commit point: data of other
	// generations (an interrupted reset) or without metadata (an
	// interrupted clone) was never handed out.
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		v, ok := volumes[e.Name()]
		if !ok {
			_ = os.RemoveAll(filepath.Join(vdir, e.Name()))
			continue
		}
		files, _ := os.ReadDir(filepath.Join(vdir, e.Name()))
		prefix := "g" + strconv.FormatUint(v.Gen, 10) + "."
		for _, f := range files {
			if !strings.HasPrefix(f.Name(), prefix) {
				_ = os.Remove(filepath.Join(vdir, e.Name(), f.Name()))
			}
		}
	}
	return images, volumes, nil
}

func removeTemps(dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	for _, m := range matches {
		_ = os.RemoveAll(m)
	}
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return diskfile.WriteAtomic(path, 0o640, func(f *os.File) error {
		_, err := f.Write(b)
		return err
	})
}

func (p *Plugin) imageDir(image string) string { return filepath.Join(p.root, "images", image) }

func (p *Plugin) versionPath(image string, v uint64) string {
	return filepath.Join(p.imageDir(image), "v"+strconv.FormatUint(v, 10)+".raw")
}

func (p *Plugin) volumeMetaPath(name string) string {
	return filepath.Join(p.root, "volumes", name+".json")
}

func (p *Plugin) volumeDir(name string) string {
	return filepath.Join(p.root, "volumes", name)
}

// volumeFile is a data file of one generation of a volume.
func (p *Plugin) volumeFile(name string, gen uint64, ext string) string {
	return filepath.Join(p.volumeDir(name), "g"+strconv.FormatUint(gen, 10)+"."+ext)
}

// ready checks the plugin was configured; called with p.mu held.
func (p *Plugin) ready() error {
	if p.images == nil {
		return errors.New("dir storage is not configured")
	}
	return nil
}

// claim marks key busy so that two operations on one name never overlap;
// the returned func releases it.
func (p *Plugin) claim(key string) (func(), error) {
	if p.busy[key] {
		return nil, fmt.Errorf("%s: %w: another operation on it is in progress", key, storage.ErrInUse)
	}
	p.busy[key] = true
	return func() {
		p.mu.Lock()
		delete(p.busy, key)
		p.mu.Unlock()
	}, nil
}

// ImportImage implements storage.Storage.
func (p *Plugin) ImportImage(ctx context.Context, req storage.ImportRequest) (v storage.Version, err error) {
	if err := storage.ValidName(req.Image); err != nil {
		return v, fmt.Errorf("import image: %w", err)
	}
	src, err := os.Open(req.Source)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return v, fmt.Errorf("import image %s: source %s: %w", req.Image, req.Source, storage.ErrNotFound)
		}
		return v, fmt.Errorf("import image %s: %w", req.Image, err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return v, fmt.Errorf("import image %s: %w", req.Image, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 || fi.Size()%512 != 0 {
		return v, fmt.Errorf("import image %s: source %s must be a raw disk image: a regular file, a non-zero multiple of 512 bytes", req.Image, req.Source)
	}

	p.mu.Lock()
	if err := p.ready(); err != nil {
		p.mu.Unlock()
		return v, err
	}
	release, err := p.claim("image " + req.Image)
	if err != nil {
		p.mu.Unlock()
		return v, err
	}
	defer release()
	m, exists := p.images[req.Image]
	next := uint64(1)
	if exists {
		next = m.Next
	}
	p.mu.Unlock()

	dir := p.imageDir(req.Image)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return v, diskfile.NoSpace(fmt.Errorf("import image %s: %w", req.Image, err))
	}
	path := p.versionPath(req.Image, next)
	err = diskfile.WriteAtomic(path, 0o440, func(f *os.File) error {
		return diskfile.CopySparse(ctx, f, src, fi.Size(), req.Progress)
	})
	if err != nil {
		if !exists {
			_ = os.RemoveAll(dir)
		}
		return v, fmt.Errorf("import image %s from %s: %w", req.Image, req.Source, err)
	}
	vm := versionMeta{Number: next, Size: fi.Size(), Created: time.Now().UTC()}
	return p.addVersion(req.Image, vm, exists)
}

// addVersion records a new version file as the image's current version.
func (p *Plugin) addVersion(image string, vm versionMeta, exists bool) (storage.Version, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var m manifest
	if exists {
		m = *p.images[image]
		m.Versions = append([]versionMeta(nil), m.Versions...)
	}
	m.Versions = append(m.Versions, vm)
	m.Current, m.Next = vm.Number, vm.Number+1
	if err := writeJSON(filepath.Join(p.imageDir(image), "manifest.json"), &m); err != nil {
		_ = os.Remove(p.versionPath(image, vm.Number))
		if !exists {
			_ = os.RemoveAll(p.imageDir(image))
		}
		return storage.Version{}, fmt.Errorf("record version %d of image %s: %w", vm.Number, image, err)
	}
	p.images[image] = &m
	p.prune(image)
	return storage.Version{Image: image, Number: vm.Number, Size: vm.Size, Created: vm.Created, Current: true}, nil
}

// prune deletes the oldest versions beyond keep_versions that are neither
// current nor cloned by a volume; called with p.mu held.
func (p *Plugin) prune(image string) {
	keep := p.cfg.KeepVersions
	m := p.images[image]
	if keep <= 0 || len(m.Versions) <= keep {
		return
	}
	// Versions are kept oldest first: all but the newest keep are
	// candidates, unless current or used.
	old := append([]versionMeta(nil), m.Versions[:len(m.Versions)-keep]...)
	for _, vm := range old {
		if vm.Number == m.Current || p.versionUsed(image, vm.Number) {
			continue
		}
		if err := p.deleteVersionLocked(image, vm.Number); err != nil {
			p.logger.Warn("prune old version failed", "image", image, "version", vm.Number, "error", err)
		}
	}
}

// pin keeps a version from deletion while it is cloned; p.mu held. The
// returned func unpins and takes p.mu itself.
func (p *Plugin) pin(image string, v uint64) func() {
	key := image + "@" + strconv.FormatUint(v, 10)
	p.pins[key]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.pins[key]--; p.pins[key] <= 0 {
			delete(p.pins, key)
		}
	}
}

// versionUsed: a volume was cloned from it, or a clone is in progress.
func (p *Plugin) versionUsed(image string, v uint64) bool {
	if p.pins[image+"@"+strconv.FormatUint(v, 10)] > 0 {
		return true
	}
	for _, vol := range p.volumes {
		if vol.Image == image && vol.Version == v {
			return true
		}
	}
	return false
}

// ListImages implements storage.Storage.
func (p *Plugin) ListImages(context.Context) ([]storage.Image, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(); err != nil {
		return nil, err
	}
	out := make([]storage.Image, 0, len(p.images))
	for name, m := range p.images {
		img := storage.Image{Name: name, CurrentVersion: m.Current}
		if vm, ok := m.version(m.Current); ok {
			img.Size = vm.Size
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *manifest) version(n uint64) (versionMeta, bool) {
	for _, vm := range m.Versions {
		if vm.Number == n {
			return vm, true
		}
	}
	return versionMeta{}, false
}

// image returns an image's manifest or ErrNotFound; called with p.mu held.
func (p *Plugin) image(name string) (*manifest, error) {
	if err := storage.ValidName(name); err != nil {
		return nil, err
	}
	if err := p.ready(); err != nil {
		return nil, err
	}
	m, ok := p.images[name]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", name, storage.ErrNotFound)
	}
	return m, nil
}

// DeleteImage implements storage.Storage.
func (p *Plugin) DeleteImage(_ context.Context, image string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.image(image); err != nil {
		return fmt.Errorf("delete image: %w", err)
	}
	for name, vol := range p.volumes {
		if vol.Image == image {
			return fmt.Errorf("delete image %s: volume %s uses version %d: %w", image, name, vol.Version, storage.ErrInUse)
		}
	}
	if p.busy["image "+image] {
		return fmt.Errorf("delete image %s: an import is in progress: %w", image, storage.ErrInUse)
	}
	// Remove the manifest first: a crash after it leaves a directory the
	// next start cleans up, never an image with missing versions.
	if err := os.Remove(filepath.Join(p.imageDir(image), "manifest.json")); err != nil {
		return fmt.Errorf("delete image %s: %w", image, err)
	}
	delete(p.images, image)
	if err := os.RemoveAll(p.imageDir(image)); err != nil {
		return fmt.Errorf("delete image %s: %w", image, err)
	}
	return nil
}

// CreateVersion implements storage.Storage. Versions are immutable, so the
// new one shares the current one's data (a hard link): instant.
func (p *Plugin) CreateVersion(_ context.Context, image string) (v storage.Version, err error) {
	p.mu.Lock()
	m, err := p.image(image)
	if err != nil {
		p.mu.Unlock()
		return v, fmt.Errorf("create version: %w", err)
	}
	cur, _ := m.version(m.Current)
	next := m.Next
	release, err := p.claim("image " + image)
	p.mu.Unlock()
	if err != nil {
		return v, fmt.Errorf("create version of image %s: %w", image, err)
	}
	defer release()
	if err := os.Link(p.versionPath(image, cur.Number), p.versionPath(image, next)); err != nil {
		return v, diskfile.NoSpace(fmt.Errorf("create version %d of image %s: %w", next, image, err))
	}
	if err := diskfile.SyncDir(p.imageDir(image)); err != nil {
		return v, err
	}
	return p.addVersion(image, versionMeta{Number: next, Size: cur.Size, Created: time.Now().UTC()}, true)
}

// ListVersions implements storage.Storage.
func (p *Plugin) ListVersions(_ context.Context, image string) ([]storage.Version, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, err := p.image(image)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	out := make([]storage.Version, len(m.Versions))
	for i, vm := range m.Versions {
		out[i] = storage.Version{Image: image, Number: vm.Number, Size: vm.Size, Created: vm.Created, Current: vm.Number == m.Current}
	}
	return out, nil
}

// DeleteVersion implements storage.Storage.
func (p *Plugin) DeleteVersion(_ context.Context, image string, version uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, err := p.image(image)
	if err != nil {
		return fmt.Errorf("delete version %d: %w", version, err)
	}
	if _, ok := m.version(version); !ok {
		return fmt.Errorf("delete version %d of image %s: %w", version, image, storage.ErrNotFound)
	}
	if version == m.Current {
		return fmt.Errorf("delete version %d of image %s: it is the current version: %w", version, image, storage.ErrInUse)
	}
	for name, vol := range p.volumes {
		if vol.Image == image && vol.Version == version {
			return fmt.Errorf("delete version %d of image %s: volume %s was cloned from it: %w", version, image, name, storage.ErrInUse)
		}
	}
	if p.versionUsed(image, version) {
		return fmt.Errorf("delete version %d of image %s: a volume is being cloned from it: %w", version, image, storage.ErrInUse)
	}
	return p.deleteVersionLocked(image, version)
}

func (p *Plugin) deleteVersionLocked(image string, version uint64) error {
	m := *p.images[image]
	kept := make([]versionMeta, 0, len(m.Versions))
	for _, vm := range m.Versions {
		if vm.Number != version {
			kept = append(kept, vm)
		}
	}
	m.Versions = kept
	// Manifest first: a crash leaves an unreferenced file, never a
	// manifest naming a missing version.
	if err := writeJSON(filepath.Join(p.imageDir(image), "manifest.json"), &m); err != nil {
		return fmt.Errorf("delete version %d of image %s: %w", version, image, err)
	}
	p.images[image] = &m
	if err := os.Remove(p.versionPath(image, version)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete version %d of image %s: %w", version, image, err)
	}
	return nil
}

// SetCurrentVersion implements storage.Storage.
func (p *Plugin) SetCurrentVersion(_ context.Context, image string, version uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, err := p.image(image)
	if err != nil {
		return fmt.Errorf("set current version: %w", err)
	}
	if _, ok := m.version(version); !ok {
		return fmt.Errorf("set current version of image %s to %d: version %w", image, version, storage.ErrNotFound)
	}
	nm := *m
	nm.Current = version
	if err := writeJSON(filepath.Join(p.imageDir(image), "manifest.json"), &nm); err != nil {
		return fmt.Errorf("set current version of image %s: %w", image, err)
	}
	p.images[image] = &nm
	return nil
}

// Capacity implements storage.Storage: bytes allocated under root (holes
// and shared clone data are not counted twice) and what the filesystem
// has left.
func (p *Plugin) Capacity(context.Context) (storage.Capacity, error) {
	p.mu.Lock()
	root := p.root
	err := p.ready()
	p.mu.Unlock()
	if err != nil {
		return storage.Capacity{}, err
	}
	var used int64
	seen := map[uint64]bool{} // hard-linked versions count once
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil && !seen[st.Ino] {
			seen[st.Ino] = true
			used += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity of %s: %w", root, err)
	}
	var fsst unix.Statfs_t
	if err := unix.Statfs(root, &fsst); err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity of %s: %w", root, err)
	}
	return storage.Capacity{Used: used, Available: int64(fsst.Bavail) * int64(fsst.Bsize)}, nil
}

func (p *Plugin) refreshGauges() {
	p.mu.Lock()
	if p.images == nil {
		p.mu.Unlock()
		return
	}
	inv := storage.Inventory{Images: len(p.images)}
	for _, m := range p.images {
		inv.Versions += len(m.Versions)
	}
	ctx := p.collectCtx
	p.mu.Unlock()
	if c, err := p.Capacity(ctx); err == nil {
		inv.Capacity = c
	}
	p.metrics.Set(inv)
}

// Health implements base.HealthChecker: root must be writable.
func (p *Plugin) Health(context.Context) error {
	p.mu.Lock()
	root := p.root
	p.mu.Unlock()
	if root == "" {
		return nil
	}
	f, err := os.CreateTemp(root, ".tmp-health-*")
	if err != nil {
		return fmt.Errorf("storage root %s is not writable: %w", root, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// configError ties a message to a config attribute.
func configError(path, format string, args ...any) error {
	return config.Errorf(path, format, args...)
}
