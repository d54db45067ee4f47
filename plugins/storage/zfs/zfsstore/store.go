package zfsstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
)

const (
	// diskFile is the raw disk inside an image's or a volume's dataset.
	diskFile = "disk.raw"
	// zvolDir is where zvols appear as block devices.
	zvolDir = "/dev/zvol"
	// zvolAlign rounds zvol sizes up, to a multiple of any volblocksize.
	zvolAlign = 1 << 20
	// blockSize is the block size of every volume; images must be a
	// multiple of it.
	blockSize = volume.DefaultBlockSize
	// cleanupTimeout bounds undoing a failed operation, which runs even
	// when the caller's context has ended.
	cleanupTimeout = 2 * time.Minute
	// deviceWait bounds waiting for a new zvol's device node (udev).
	deviceWait = 10 * time.Second
)

// Properties read for images (and their snapshots) and for volumes.
var (
	imageProps  = []string{"type", "creation", "mountpoint", "mounted", propCurrent, propNext, propDirty, propSize}
	volumeProps = []string{"type", "origin", "mountpoint", "mounted", propSize, propAttached}
)

// settings are what a Configure decided; a reload replaces them while
// operations run.
type settings struct {
	run  *runner
	keep int  // versions kept per image; 0: all
	zvol bool // new images (and so their volumes) are zvols
}

// store is the plugin's view of its parent dataset:
//
//	<root>/images/<image>          an image's head: disk.raw, or a zvol
//	<root>/images/<image>@v<n>     version n
//	<root>/volumes/<volume>        a clone of a version: a client's disk
//	<root>/volumes/_tmp-*          temporary clones
//
// ZFS holds all the state (in datasets and user properties), so a
// restarted plugin finds it all again. In memory are only the locks that
// order operations on one image or one volume, the versions being cloned
// from, and the volumes being read by a promotion.
type store struct {
	root      string
	pool      string
	imagesDS  string
	volumesDS string
	logger    hclog.Logger
	cfg       atomic.Pointer[settings]

	images  *keyLock // held while an image's versions or head change
	volumes *keyLock // held while a volume is created, changed or looked at
	pins    *pins

	mu   sync.Mutex
	busy map[string]string // volume → operation reading it
}

func newStore(root string, set *settings, logger hclog.Logger) *store {
	s := &store{
		root: root, pool: poolOf(root),
		imagesDS: root + "/images", volumesDS: root + "/volumes",
		logger: logger, images: newKeyLock(), volumes: newKeyLock(), pins: newPins(),
		busy: map[string]string{},
	}
	s.cfg.Store(set)
	return s
}

func (s *store) run() *runner { return s.cfg.Load().run }

func (s *store) imageDS(name string) string  { return s.imagesDS + "/" + name }
func (s *store) volumeDS(name string) string { return s.volumesDS + "/" + name }
func (s *store) snapshot(image string, n uint64) string {
	return s.imageDS(image) + "@" + versionSnapshot(n)
}

// cleanupContext returns a context for undoing a failed operation: not
// cancelled with the operation's.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// layout creates the parent dataset and its children if missing and checks
// that they are filesystems, mounted (mounting them if needed).
func (s *store) layout(ctx context.Context) error {
	r := s.run()
	for _, ds := range []string{s.imagesDS, s.volumesDS} {
		if _, err := r.zfsCmd(ctx, "create", "-p", ds); err != nil {
			return err
		}
	}
	t, err := r.get(ctx, false, []string{"type", "mountpoint", "mounted"}, s.root, s.imagesDS, s.volumesDS)
	if err != nil {
		return err
	}
	for _, ds := range []string{s.root, s.imagesDS, s.volumesDS} {
		if kind, _ := t.value(ds, "type"); kind != typeFilesystem {
			return fmt.Errorf("%s is a %s, not a filesystem", ds, kind)
		}
		if mounted, _ := t.value(ds, "mounted"); mounted != "yes" && !s.cfg.Load().zvol {
			mp, _ := t.value(ds, "mountpoint")
			if !filepath.IsAbs(mp) {
				return fmt.Errorf("%s has mountpoint %q: the plugin keeps disk files in mounted datasets (set a mountpoint, or volume_mode = \"zvol\")", ds, mp)
			}
			if _, err := r.zfsCmd(ctx, "mount", ds); err != nil {
				return err
			}
		}
	}
	return nil
}

// probeZvol checks that this ZFS can make zvols: it creates a small sparse
// one, waits for its device and destroys it.
func (s *store) probeZvol(ctx context.Context) error {
	ds := s.volumesDS + "/" + tmpPrefix + "probe-" + randomSuffix()
	r := s.run()
	if _, err := r.zfsCmd(ctx, "create", "-s", "-V", strconv.Itoa(zvolAlign), ds); err != nil {
		return err
	}
	_, werr := waitDevice(ctx, ds)
	derr := s.destroy(ctx, ds, typeVolume, false)
	return errors.Join(werr, derr)
}

// recover undoes what a crash of an earlier run left: imports that never
// made a version are destroyed, heads left half-written are rolled back,
// temporary clones are destroyed, and attachments recorded before the
// crash are kept only while a process still holds the disk open.
func (s *store) recover(ctx context.Context) error {
	r := s.run()
	t, err := r.get(ctx, true, imageProps, s.imagesDS)
	if err != nil {
		return err
	}
	for name, im := range imagesFrom(t, s.imagesDS) {
		switch {
		case len(im.versions) == 0:
			s.logger.Warn("destroying image without a version (interrupted import)", "image", name)
			if err := s.destroy(ctx, im.dataset, im.kind, true); err != nil {
				s.logger.Error("destroy interrupted import", "image", name, "error", err)
			}
		case im.dirty:
			s.logger.Warn("rolling back image head left half-written", "image", name, "version", im.latest())
			if err := s.rollbackHead(ctx, im); err != nil {
				s.logger.Error("roll back image head", "image", name, "error", err)
			}
		}
	}
	t, err = r.get(ctx, true, volumeProps, s.volumesDS)
	if err != nil {
		return err
	}
	vols, temps := volumesFrom(t, s.volumesDS, s.imagesDS)
	for _, ds := range temps {
		s.logger.Warn("destroying temporary clone left by an interrupted operation", "dataset", ds)
		kind, _ := t.value(ds, "type")
		if err := s.destroy(ctx, ds, kind, true); err != nil {
			s.logger.Error("destroy temporary clone", "dataset", ds, "error", err)
		}
	}
	for name, v := range vols {
		if v.attached == "" {
			continue
		}
		path, err := s.dataPath(ctx, v.dataset, v.kind, v.mountpoint, v.mounted)
		if err != nil {
			s.logger.Warn("volume recorded as attached: cannot find its disk; keeping it attached", "volume", name, "error", err)
			continue
		}
		switch held, known := heldOpen(ctx, path); {
		case held:
			s.logger.Info("volume recorded as attached is still open; it stays attached until Detach", "volume", name, "since", v.attached)
		case !known:
			s.logger.Warn("volume recorded as attached: cannot tell whether it is still open; it stays attached until Detach", "volume", name, "since", v.attached)
		default:
			s.logger.Info("volume recorded as attached is open nowhere; detaching it", "volume", name, "since", v.attached)
			if _, err := r.zfsCmd(ctx, "inherit", propAttached, v.dataset); err != nil {
				s.logger.Error("clear stale attachment", "volume", name, "error", err)
			}
		}
	}
	return nil
}

// loadImages reads every image, those without a version included.
func (s *store) loadImages(ctx context.Context) (map[string]*imageInfo, error) {
	t, err := s.run().get(ctx, true, imageProps, s.imagesDS)
	if err != nil {
		return nil, err
	}
	return imagesFrom(t, s.imagesDS), nil
}

// findImage reads one image: nil when its dataset does not exist.
func (s *store) findImage(ctx context.Context, name string) (*imageInfo, error) {
	t, err := s.run().get(ctx, true, imageProps, s.imageDS(name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	im := imagesFrom(t, s.imagesDS)[name]
	if im == nil {
		return nil, fmt.Errorf("%s is neither a filesystem nor a zvol", s.imageDS(name))
	}
	return im, nil
}

// image reads one image; ErrNotFound unless it exists with a version.
func (s *store) image(ctx context.Context, name string) (*imageInfo, error) {
	im, err := s.findImage(ctx, name)
	if err != nil {
		return nil, err
	}
	if im == nil || len(im.versions) == 0 {
		return nil, fmt.Errorf("image %s: %w", name, storage.ErrNotFound)
	}
	return im, nil
}

// resolve returns the image's version n (0: current).
func resolve(im *imageInfo, n uint64) (versionInfo, error) {
	if n == 0 {
		n = im.current()
	}
	v := im.version(n)
	if v == nil {
		return versionInfo{}, fmt.Errorf("version %d of image %s: %w", n, im.name, storage.ErrNotFound)
	}
	return *v, nil
}

// loadVolumes reads every volume, and the temporary clones apart.
func (s *store) loadVolumes(ctx context.Context) (map[string]*volumeInfo, []string, error) {
	t, err := s.run().get(ctx, true, volumeProps, s.volumesDS)
	if err != nil {
		return nil, nil, err
	}
	vols, temps := volumesFrom(t, s.volumesDS, s.imagesDS)
	return vols, temps, nil
}

// volume reads one volume; ErrNotFound when it does not exist.
func (s *store) volume(ctx context.Context, name string) (*volumeInfo, error) {
	t, err := s.run().get(ctx, false, volumeProps, s.volumeDS(name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("volume %s: %w", name, storage.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	vols, _ := volumesFrom(t, s.volumesDS, s.imagesDS)
	v := vols[name]
	if v == nil {
		return nil, fmt.Errorf("%s is neither a filesystem nor a zvol", s.volumeDS(name))
	}
	return v, nil
}

// dataPath returns where a dataset's disk is: <mountpoint>/disk.raw for a
// filesystem (mounted first if it is not), the device node for a zvol.
func (s *store) dataPath(ctx context.Context, dataset, kind, mountpoint string, mounted bool) (string, error) {
	if kind == typeVolume {
		return waitDevice(ctx, dataset)
	}
	if !filepath.IsAbs(mountpoint) {
		return "", fmt.Errorf("%s has mountpoint %q, not a directory", dataset, mountpoint)
	}
	if !mounted {
		if _, err := s.run().zfsCmd(ctx, "mount", dataset); err != nil {
			return "", err
		}
	}
	return filepath.Join(filepath.Clean(mountpoint), diskFile), nil
}

// datasetPath is dataPath for a dataset whose mountpoint is not at hand.
func (s *store) datasetPath(ctx context.Context, dataset string) (string, string, error) {
	t, err := s.run().get(ctx, false, []string{"type", "mountpoint", "mounted"}, dataset)
	if err != nil {
		return "", "", err
	}
	kind, _ := t.value(dataset, "type")
	mp, _ := t.value(dataset, "mountpoint")
	mounted, _ := t.value(dataset, "mounted")
	path, err := s.dataPath(ctx, dataset, kind, mp, mounted == "yes")
	return path, kind, err
}

// waitDevice waits for a zvol's device node to appear.
func waitDevice(ctx context.Context, dataset string) (string, error) {
	path := filepath.Join(zvolDir, dataset)
	deadline := time.Now().Add(deviceWait)
	for {
		if _, err := os.Stat(path); err == nil {
			return path, nil
		} else if time.Now().After(deadline) {
			return "", fmt.Errorf("device of zvol %s: %w", dataset, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// destroyBusyWait bounds how long destroy retries a filesystem that zfs
// reports busy after its unmount: zfs-fuse lagged past 10 s on a loaded
// 2-core machine (TestZFSKeepVersions, 11 s), and past 30 s for 16
// destroys at once while QEMU machines ran beside it. Nothing has the
// filesystem open by then, so waiting longer only costs time.
const destroyBusyWait = 90 * time.Second

// destroy destroys a dataset (with recursive, its snapshots too). A
// filesystem is unmounted first: if a process has its disk open, that
// fails with ErrInUse and nothing is destroyed. zfs-fuse answers "dataset
// is busy" for a moment after an unmount, so that is retried briefly. A
// filesystem that could not be destroyed is mounted again.
func (s *store) destroy(ctx context.Context, dataset, kind string, recursive bool) error {
	r := s.run()
	if kind == typeFilesystem {
		if _, err := r.zfsCmd(ctx, "umount", dataset); err != nil && !strings.Contains(stderrOf(err), "not currently mounted") {
			return err
		}
	}
	args := []string{"destroy", dataset}
	if recursive {
		args = []string{"destroy", "-r", dataset}
	}
	// After a successful unmount nothing has the filesystem open: a "busy"
	// now is zfs-fuse's lag, which lasts seconds on a loaded machine. A
	// busy zvol is open, and is reported soon.
	wait := 2 * time.Second
	if kind == typeFilesystem {
		wait = destroyBusyWait
	}
	var err error
	deadline := time.Now().Add(wait)
	for attempt := 1; ; attempt++ {
		if _, err = r.zfsCmd(ctx, args...); err == nil {
			return nil
		}
		if !strings.Contains(stderrOf(err), "is busy") || time.Now().After(deadline) {
			break
		}
		if serr := sleep(ctx, min(time.Duration(attempt)*50*time.Millisecond, 500*time.Millisecond)); serr != nil {
			break
		}
	}
	if kind == typeFilesystem && !errors.Is(err, storage.ErrNotFound) {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		if _, merr := r.zfsCmd(cctx, "mount", dataset); merr != nil && !strings.Contains(stderrOf(merr), "already mounted") {
			s.logger.Warn("remount after failed destroy", "dataset", dataset, "error", merr)
		}
	}
	return err
}

// rollbackHead makes an image's head the newest version again and clears
// its dirty mark.
func (s *store) rollbackHead(ctx context.Context, im *imageInfo) error {
	r := s.run()
	if latest := im.latest(); latest > 0 {
		if _, err := r.zfsCmd(ctx, "rollback", s.snapshot(im.name, latest)); err != nil {
			return err
		}
	}
	_, err := r.zfsCmd(ctx, "inherit", propDirty, im.dataset)
	return err
}

func (s *store) capacity(ctx context.Context) (storage.Capacity, error) {
	t, err := s.run().get(ctx, false, []string{"used", "available"}, s.root)
	if err != nil {
		return storage.Capacity{}, fmt.Errorf("capacity: %w", err)
	}
	return storage.Capacity{
		Used:      int64(t.number(s.root, "used", false)),
		Available: int64(t.number(s.root, "available", false)),
	}, nil
}

// inventory counts images and versions and reads capacity, for the gauges,
// with one zfs command.
func (s *store) inventory(ctx context.Context) (storage.Inventory, error) {
	t, err := s.run().get(ctx, true, []string{"type", "used", "available"}, s.root)
	if err != nil {
		return storage.Inventory{}, err
	}
	inv := storage.Inventory{Capacity: storage.Capacity{
		Used:      int64(t.number(s.root, "used", false)),
		Available: int64(t.number(s.root, "available", false)),
	}}
	for _, im := range imagesFrom(t, s.imagesDS) {
		if len(im.versions) > 0 {
			inv.Images++
			inv.Versions += len(im.versions)
		}
	}
	return inv, nil
}

// health checks that the parent dataset answers and its pool is usable.
func (s *store) health(ctx context.Context) error {
	r := s.run()
	if _, err := r.zfsCmd(ctx, "list", "-H", "-o", "name", s.root); err != nil {
		return err
	}
	out, err := r.zpoolCmd(ctx, "list", "-H", "-o", "health", s.pool)
	if err != nil {
		return err
	}
	switch h := strings.TrimSpace(string(out)); h {
	case "ONLINE", "DEGRADED":
		return nil
	default:
		return fmt.Errorf("pool %s is %s", s.pool, h)
	}
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// stderrOf returns a failed command's stderr, "" for other errors.
func stderrOf(err error) string {
	var ce *CommandError
	if errors.As(err, &ce) {
		return ce.Stderr
	}
	return ""
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
