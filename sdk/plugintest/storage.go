package plugintest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

// StorageImageSize is the size of the raw images the storage suite
// imports: 1 MiB, a multiple of both block sizes.
const StorageImageSize = 1 << 20

// storageStepTimeout bounds each step of the storage suite.
const storageStepTimeout = 2 * time.Minute

// StorageSuite describes a storage plugin to RunStorageSuite: how to start
// it, and what it promises beyond the storage.Storage interface.
type StorageSuite struct {
	// Start starts the plugin under test and returns the host's client of
	// it: Start(t, impl, ...).Storage() for a plugin served in the test
	// process, or a client of a real plugin process. The suite calls it
	// once, with its own t, and stops using the client when Restart gives
	// it a new one. Required.
	Start func(t *testing.T) *StorageClient

	// Restart, if set, stops the instance Start (or the last Restart)
	// returned and starts the plugin again on the same data (same data
	// directory, same config), returning the new instance's client. The
	// suite calls it once, between subtests, with its own t, while a
	// volume is attached; it then checks that images, versions, volumes,
	// flushed writes and the in-use rules survived, and runs its remaining
	// subtests against the new instance. Without Restart those checks are
	// skipped. StorageInProcess builds Start and Restart for a plugin
	// served in the test process.
	Restart func(t *testing.T) *StorageClient

	// Scratch is a directory the plugin can read, where the suite writes
	// the raw source images it imports. It must not be on the storage under
	// test: the no-space check writes a source bigger than Full's storage.
	// Empty means t.TempDir().
	Scratch string

	// KeepVersions is the number of versions per image the plugin was
	// configured to keep (a keep_versions setting), or 0 if it keeps every
	// version until DeleteVersion. With N > 0 the suite checks that adding
	// a version keeps the image's newest N versions, its current version
	// and every version a volume was cloned from, and drops the others;
	// every other check then accepts that old versions disappear.
	KeepVersions int

	// CheapClones says a clone shares its image's blocks (copy-on-write):
	// the suite then checks that cloning an image costs much less space
	// than the image. Plugins that copy images leave it false.
	CheapClones bool

	// Full, if set, starts a second instance of the plugin whose storage
	// has at most 1 GiB available (the example plugin gets an 8 MiB tmpfs;
	// a ZFS plugin, a small pool or a dataset with a quota) and returns its
	// client. The suite calls it with a subtest's t: the instance should
	// stop when that subtest ends, as Start's cleanup does. The suite
	// imports a source bigger than the space available and expects
	// storage.ErrNoSpace, with no image listed and no space kept afterwards;
	// without CheapClones, it also expects ErrNoSpace from a clone that
	// cannot fit. Without Full those checks are skipped.
	Full func(t *testing.T) *StorageClient
}

// RunStorageSuite is the conformance suite every DLS storage plugin must
// pass. It runs as subtests of t, against the plugin s.Start returns, and
// checks through the real gRPC path what the host relies on:
//
//   - import: a new image is version 1, current, byte for byte the source
//     (read back through Attach and volume.Open); progress reports never go
//     back and end at the total; importing an existing image makes its next
//     version current.
//   - versions: CreateVersion snapshots the current version; versions are
//     listed oldest first and their numbers are never reused; new volumes
//     clone the current version, or any kept version asked for;
//     SetCurrentVersion rolls back (or forward) to any kept version; a new
//     version never changes what a running client sees; with KeepVersions,
//     old versions are pruned except the current one and those in use.
//   - clone isolation: a write through one volume is never seen by another
//     volume, a fresh clone, or the image; a volume keeps its writes when
//     detached and attached again.
//   - reset: discards a volume's writes; resets to the current version, or
//     to a version asked for.
//   - promote (when Info advertises it): a detached volume becomes the
//     image's next version, current; running clients keep what they see and
//     get it on their next reset; promotion into another existing image;
//     an attached volume is either promoted with what was flushed or
//     refused with storage.ErrInUse. A plugin that does not advertise
//     promote must refuse it.
//   - capacity: used and available space are reported; with CheapClones, a
//     clone costs much less than the image.
//   - concurrent clones: 16 volumes cloned at once are all made and
//     independent; 8 creations of one name give one volume and 7
//     storage.ErrExists.
//   - refusals: every operation refuses names that are not
//     storage.ValidName (with "/", "..", upper case, too long...) with
//     storage.ErrInvalidName; missing, unreadable, empty and short sources
//     fail and leave no image; a duplicate volume is storage.ErrExists and
//     leaves the volume alone; deleting a version a volume uses or the
//     current version, deleting an image with volumes, deleting or resetting
//     an attached volume is storage.ErrInUse; missing volumes, images and
//     versions are storage.ErrNotFound. Every refusal's text names the
//     object.
//   - no space (with Full): storage.ErrNoSpace, and no half-made image or
//     volume left behind.
//   - restart (with Restart): state and flushed writes survive.
//   - delete: deleted volumes, versions and images are gone.
//
// Every name the suite uses starts with "ct-" and holds a random suffix,
// so it can run against a storage that holds other data (a shared pool),
// and more than once; at the end it deletes what it made.
func RunStorageSuite(t *testing.T, s StorageSuite) {
	if s.Start == nil {
		t.Fatal("plugintest: StorageSuite.Start is nil")
	}
	r := &storageRun{cfg: s, scratch: s.Scratch, sfx: randomSuffix()}
	if r.scratch == "" {
		r.scratch = t.TempDir()
	}
	r.st = s.Start(t)
	defer func() { r.cleanup(t) }()

	ctx, cancel := context.WithTimeout(t.Context(), storageStepTimeout)
	info, err := r.st.Base().Info(ctx)
	cancel()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	r.promote = slices.Contains(info.Capabilities, storage.CapabilityPromote)

	t.Run("import", r.testImport)
	t.Run("versions", r.testVersions)
	t.Run("version_numbers_are_never_reused", r.testNumbersNotReused)
	t.Run("keep_versions", r.testKeepVersions)
	t.Run("clone_isolation", r.testIsolation)
	t.Run("reset", r.testReset)
	t.Run("promote", r.testPromote)
	t.Run("capacity", r.testCapacity)
	t.Run("concurrent_clones", r.testConcurrentClones)
	t.Run("refusals", r.testRefusals)
	t.Run("no_space", r.testNoSpace)

	// The restart happens here, in t's goroutine: the new instance must
	// outlive the subtest that prepared it.
	if t.Run("before_restart", r.testBeforeRestart) && s.Restart != nil {
		r.st = s.Restart(t)
	}
	t.Run("after_restart", r.testAfterRestart)
	t.Run("delete", r.testDelete)
}

// RunStorageBasics runs RunStorageSuite against st, with sources in
// scratch, and without the checks that need the suite's knobs (restart,
// no space, pruning, cheap clones). Prefer RunStorageSuite.
func RunStorageBasics(t *testing.T, st *StorageClient, scratch string) {
	RunStorageSuite(t, StorageSuite{Start: func(*testing.T) *StorageClient { return st }, Scratch: scratch})
}

// StorageInProcess returns Start and Restart functions for a StorageSuite
// that serve newPlugin() in the test process with Start(t, newPlugin(),
// opts...). Every instance gets the same data directory: the one given
// with WithDataDir, or a t.TempDir() made at the first start. Restart
// stops the running instance (Harness.Stop) before starting the next, so
// the restart is a clean stop, not a crash; every instance also stops at
// the end of the test.
//
//	start, restart := plugintest.StorageInProcess(
//		func() storage.Storage { return mystorage.New() },
//		plugintest.WithConfig(map[string]any{"root": "disks"}))
//	plugintest.RunStorageSuite(t, plugintest.StorageSuite{Start: start, Restart: restart})
func StorageInProcess(newPlugin func() storage.Storage, opts ...Option) (start, restart func(t *testing.T) *StorageClient) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dataDir := o.dataDir
	var running *Harness
	start = func(t *testing.T) *StorageClient {
		t.Helper()
		if dataDir == "" {
			dataDir = t.TempDir()
		}
		running = Start(t, newPlugin(), append(slices.Clip(opts), WithDataDir(dataDir))...)
		return running.Storage()
	}
	restart = func(t *testing.T) *StorageClient {
		t.Helper()
		if running != nil {
			running.Stop()
		}
		return start(t)
	}
	return start, restart
}

// storageRun is one run of the storage suite.
type storageRun struct {
	cfg     StorageSuite
	st      *StorageClient
	scratch string
	sfx     string
	promote bool
	seed    atomic.Uint64

	// restart is what before_restart left for after_restart.
	restart *restartState
}

// suiteImage is what the suite knows of one image it made: the versions
// that may still exist, the content of each, and which one is current.
type suiteImage struct {
	name     string
	current  uint64
	versions []uint64 // oldest first; pruning may remove some
	latest   uint64   // highest number the image ever had
	content  map[uint64][]byte
}

func (r *storageRun) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), storageStepTimeout)
	t.Cleanup(cancel)
	return ctx
}

// name returns the name of an image or volume of this run.
func (r *storageRun) name(what string) string { return "ct-" + r.sfx + "-" + what }

// data returns StorageImageSize bytes no other call of this run returns.
func (r *storageRun) data() []byte { return patterned(r.seed.Add(1), StorageImageSize) }

// source writes data as a raw image file in scratch and returns its path.
func (r *storageRun) source(t *testing.T, what string, data []byte) string {
	t.Helper()
	p := filepath.Join(r.scratch, r.name(what)+".raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatalf("write source image: %v", err)
	}
	return p
}

// newImage imports a new image of fresh content and returns it.
func (r *storageRun) newImage(t *testing.T, what string) *suiteImage {
	t.Helper()
	im := &suiteImage{name: r.name(what), content: map[uint64][]byte{}}
	r.importVersion(t, im)
	return im
}

// importVersion imports fresh content as im's next version.
func (r *storageRun) importVersion(t *testing.T, im *suiteImage) uint64 {
	t.Helper()
	data := r.data()
	src := r.source(t, fmt.Sprintf("%s-v%d", strings.TrimPrefix(im.name, r.name("")), im.latest+1), data)
	defer os.Remove(src)
	v, err := r.st.ImportImage(r.ctx(t), storage.ImportRequest{Image: im.name, Source: src})
	if err != nil {
		t.Fatalf("ImportImage %s: %v", im.name, err)
	}
	return r.added(t, im, "ImportImage", v, data)
}

// createVersion snapshots im's current version as its next one.
func (r *storageRun) createVersion(t *testing.T, im *suiteImage) uint64 {
	t.Helper()
	v, err := r.st.CreateVersion(r.ctx(t), im.name)
	if err != nil {
		t.Fatalf("CreateVersion %s: %v", im.name, err)
	}
	return r.added(t, im, "CreateVersion", v, im.content[im.current])
}

// added checks a version an operation just added to im and records it.
func (r *storageRun) added(t *testing.T, im *suiteImage, op string, v storage.Version, data []byte) uint64 {
	t.Helper()
	if v.Image != im.name || v.Number <= im.latest || !v.Current || v.Size != int64(len(data)) {
		t.Errorf("%s = %+v, want a version of image %s numbered above %d (numbers are never reused), current, size %d",
			op, v, im.name, im.latest, len(data))
	}
	if v.Number == 0 {
		t.Fatalf("%s returned version number 0", op)
	}
	im.versions = append(im.versions, v.Number)
	im.latest, im.current = max(im.latest, v.Number), v.Number
	im.content[v.Number] = data
	r.checkVersions(t, im)
	return v.Number
}

// setCurrent makes version n of im current.
func (r *storageRun) setCurrent(t *testing.T, im *suiteImage, n uint64) {
	t.Helper()
	if err := r.st.SetCurrentVersion(r.ctx(t), im.name, n); err != nil {
		t.Fatalf("SetCurrentVersion %s %d: %v", im.name, n, err)
	}
	im.current = n
	r.checkVersions(t, im)
}

// checkVersions compares what the plugin lists of im with what the suite
// expects: versions oldest first, no number the suite did not make, the
// right one current, and every version it must keep (all of them, or with
// KeepVersions the newest N, the current one and those volumes use). It
// then forgets versions the plugin pruned, and returns what is listed.
func (r *storageRun) checkVersions(t *testing.T, im *suiteImage) []storage.Version {
	t.Helper()
	ctx := r.ctx(t)
	vs, err := r.st.ListVersions(ctx, im.name)
	if err != nil {
		t.Fatalf("ListVersions %s: %v", im.name, err)
	}
	var listed []uint64
	currents := 0
	for i, v := range vs {
		listed = append(listed, v.Number)
		switch {
		case v.Image != im.name:
			t.Errorf("ListVersions %s lists %+v, of another image", im.name, v)
		case i > 0 && v.Number <= vs[i-1].Number:
			t.Errorf("ListVersions %s = %s, want oldest first", im.name, numbers(vs))
		case !slices.Contains(im.versions, v.Number):
			t.Errorf("ListVersions %s lists version %d, which the suite never made or deleted", im.name, v.Number)
		case v.Size != int64(len(im.content[v.Number])):
			t.Errorf("ListVersions %s: version %d has size %d, want %d", im.name, v.Number, v.Size, len(im.content[v.Number]))
		case v.Created.IsZero() || v.Created.After(time.Now().Add(time.Minute)):
			t.Errorf("ListVersions %s: version %d was created at %v, want a time in the past", im.name, v.Number, v.Created)
		}
		if v.Current {
			currents++
			if v.Number != im.current {
				t.Errorf("ListVersions %s: version %d is current, want %d", im.name, v.Number, im.current)
			}
		}
	}
	if currents != 1 {
		t.Errorf("ListVersions %s = %s: %d versions are current, want exactly one (%d)", im.name, numbers(vs), currents, im.current)
	}
	for _, n := range r.mustKeep(t, im) {
		if !slices.Contains(listed, n) {
			t.Errorf("ListVersions %s = %s: version %d is missing (%s)", im.name, numbers(vs), n, r.whyKeep(t, im, n))
		}
	}
	im.versions = slices.DeleteFunc(im.versions, func(n uint64) bool { return !slices.Contains(listed, n) })

	imgs, err := r.st.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	i := slices.IndexFunc(imgs, func(x storage.Image) bool { return x.Name == im.name })
	switch {
	case i < 0:
		t.Errorf("ListImages does not list %s", im.name)
	case imgs[i].CurrentVersion != im.current || imgs[i].Size != int64(len(im.content[im.current])):
		t.Errorf("ListImages lists %+v, want current version %d, size %d", imgs[i], im.current, len(im.content[im.current]))
	}
	return vs
}

// inUse returns the versions of im that volumes were cloned from.
func (r *storageRun) inUse(t *testing.T, im *suiteImage) []uint64 {
	t.Helper()
	vols, err := r.st.ListVolumes(r.ctx(t))
	if err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}
	var out []uint64
	for _, v := range vols {
		if v.Image == im.name && !slices.Contains(out, v.Version) {
			out = append(out, v.Version)
		}
	}
	return out
}

// mustKeep returns the versions of im the plugin may not have dropped.
func (r *storageRun) mustKeep(t *testing.T, im *suiteImage) []uint64 {
	t.Helper()
	n := r.cfg.KeepVersions
	if n <= 0 || n >= len(im.versions) {
		return slices.Clone(im.versions)
	}
	keep := slices.Clone(im.versions[len(im.versions)-n:])
	for _, v := range append(r.inUse(t, im), im.current) {
		if !slices.Contains(keep, v) {
			keep = append(keep, v)
		}
	}
	slices.Sort(keep)
	return keep
}

func (r *storageRun) whyKeep(t *testing.T, im *suiteImage, n uint64) string {
	t.Helper()
	switch {
	case r.cfg.KeepVersions <= 0:
		return "no version was deleted and KeepVersions is 0"
	case n == im.current:
		return "it is current"
	case slices.Contains(r.inUse(t, im), n):
		return "a volume was cloned from it"
	}
	return fmt.Sprintf("it is one of the newest %d, KeepVersions", r.cfg.KeepVersions)
}

func numbers(vs []storage.Version) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.FormatUint(v.Number, 10)
		if v.Current {
			s[i] += "*"
		}
	}
	return "[" + strings.Join(s, " ") + "]"
}

// createVolume clones version n (0: current) of im as vol.
func (r *storageRun) createVolume(t *testing.T, vol string, im *suiteImage, n uint64) storage.Volume {
	t.Helper()
	v, err := r.st.CreateVolume(r.ctx(t), storage.VolumeRequest{Volume: vol, Image: im.name, Version: n})
	if err != nil {
		t.Fatalf("CreateVolume %s from image %s version %d: %v", vol, im.name, n, err)
	}
	r.wantVolumeInfo(t, "CreateVolume", v, vol, im, n)
	return v
}

// resetVolume resets vol to version n (0: current) of im.
func (r *storageRun) resetVolume(t *testing.T, vol string, im *suiteImage, n uint64) storage.Volume {
	t.Helper()
	v, err := r.st.ResetVolume(r.ctx(t), storage.VolumeRequest{Volume: vol, Image: im.name, Version: n})
	if err != nil {
		t.Fatalf("ResetVolume %s to image %s version %d: %v", vol, im.name, n, err)
	}
	r.wantVolumeInfo(t, "ResetVolume", v, vol, im, n)
	return v
}

func (r *storageRun) wantVolumeInfo(t *testing.T, op string, v storage.Volume, vol string, im *suiteImage, n uint64) {
	t.Helper()
	want := storage.Volume{Name: vol, Image: im.name, Version: cmpOr(n, im.current), Size: int64(len(im.content[cmpOr(n, im.current)]))}
	if v != want {
		t.Errorf("%s = %+v, want %+v", op, v, want)
	}
	if got, ok := r.listedVolume(t, vol); !ok || got != want {
		t.Errorf("after %s, ListVolumes lists %+v (listed: %v), want %+v", op, got, ok, want)
	}
}

func cmpOr(n, otherwise uint64) uint64 {
	if n != 0 {
		return n
	}
	return otherwise
}

// listedVolume returns what ListVolumes says of vol.
func (r *storageRun) listedVolume(t *testing.T, vol string) (storage.Volume, bool) {
	t.Helper()
	vols, err := r.st.ListVolumes(r.ctx(t))
	if err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}
	for _, v := range vols {
		if v.Name == vol {
			return v, true
		}
	}
	return storage.Volume{}, false
}

// listsImage says whether ListImages lists name.
func (r *storageRun) listsImage(t *testing.T, name string) bool {
	t.Helper()
	imgs, err := r.st.ListImages(r.ctx(t))
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	return slices.ContainsFunc(imgs, func(im storage.Image) bool { return im.Name == name })
}

// wantNoImage checks that an image whose making failed is not there.
func (r *storageRun) wantNoImage(t *testing.T, name, after string) {
	t.Helper()
	if r.listsImage(t, name) {
		t.Errorf("ListImages lists %s after %s", name, after)
	}
	if _, err := r.st.ListVersions(r.ctx(t), name); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ListVersions %s after %s: got %v, want storage.ErrNotFound", name, after, err)
	}
}

// open attaches a volume and opens its descriptor as the iSCSI target
// would.
func (r *storageRun) open(t *testing.T, vol string) volume.Volume {
	t.Helper()
	d, err := r.st.Attach(r.ctx(t), vol)
	if err != nil {
		t.Fatalf("Attach %s: %v", vol, err)
	}
	v, err := openDescriptor(vol, d)
	if err != nil {
		t.Fatal(err)
	}
	if lv, ok := r.listedVolume(t, vol); ok && d.Size != lv.Size {
		t.Errorf("Attach %s: descriptor size %d, ListVolumes says %d", vol, d.Size, lv.Size)
	}
	return v
}

// openDescriptor checks and opens a descriptor Attach returned.
func openDescriptor(vol string, d volume.Descriptor) (volume.Volume, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("Attach %s returned a descriptor the target cannot use: %w", vol, err)
	}
	if d.ReadOnly {
		return nil, fmt.Errorf("Attach %s returned a read-only descriptor; a client's volume must be writable", vol)
	}
	v, err := volume.Open(d)
	if err != nil {
		return nil, fmt.Errorf("Attach %s: %w", vol, err)
	}
	return v, nil
}

// close closes an open volume and detaches it.
func (r *storageRun) close(t *testing.T, vol string, v volume.Volume) {
	t.Helper()
	if err := v.Close(); err != nil {
		t.Errorf("close volume %s: %v", vol, err)
	}
	if err := r.st.Detach(r.ctx(t), vol); err != nil {
		t.Errorf("Detach %s: %v", vol, err)
	}
}

// scribble writes fresh data to three places of v (the first and last
// blocks and one in between), flushes, and returns the content v should
// now have, given that it held was.
func (r *storageRun) scribble(t *testing.T, vol string, v volume.Volume, was []byte) []byte {
	t.Helper()
	want := slices.Clone(was)
	p := patterned(r.seed.Add(1), 4096)
	for _, off := range []int64{0, v.Size() / 2, v.Size() - 4096} {
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatalf("write volume %s at %d: %v", vol, off, err)
		}
		copy(want[off:], p)
	}
	if err := v.Flush(); err != nil {
		t.Fatalf("flush volume %s: %v", vol, err)
	}
	return want
}

// wantContent checks that v holds want.
func wantContent(t *testing.T, what string, v volume.Volume, want []byte) {
	t.Helper()
	if err := checkContent(v, want); err != nil {
		t.Errorf("volume %s: %v", what, err)
	}
}

func checkContent(v volume.Volume, want []byte) error {
	if v.Size() != int64(len(want)) {
		return fmt.Errorf("size %d, want %d", v.Size(), len(want))
	}
	got := make([]byte, len(want))
	if _, err := v.ReadAt(got, 0); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if i := firstDiff(got, want); i >= 0 {
		return fmt.Errorf("differs from what it should hold from byte %d on", i)
	}
	return nil
}

// wantVolume attaches a volume, checks its content and detaches it.
func (r *storageRun) wantVolume(t *testing.T, vol string, want []byte) {
	t.Helper()
	v := r.open(t, vol)
	wantContent(t, vol, v, want)
	r.close(t, vol, v)
}

// readVolume attaches a volume and returns its content.
func (r *storageRun) readVolume(t *testing.T, vol string) []byte {
	t.Helper()
	v := r.open(t, vol)
	defer r.close(t, vol, v)
	p := make([]byte, v.Size())
	if _, err := v.ReadAt(p, 0); err != nil {
		t.Fatalf("read volume %s: %v", vol, err)
	}
	return p
}

// deleteVolume deletes a volume the suite no longer needs.
func (r *storageRun) deleteVolume(t *testing.T, vol string) {
	t.Helper()
	if err := r.st.DeleteVolume(r.ctx(t), vol); err != nil {
		t.Errorf("DeleteVolume %s: %v", vol, err)
	}
}

// sentinelNames spells the storage errors as a vendor reads them.
var sentinelNames = map[error]string{
	storage.ErrNotFound:    "storage.ErrNotFound",
	storage.ErrExists:      "storage.ErrExists",
	storage.ErrInUse:       "storage.ErrInUse",
	storage.ErrInvalidName: "storage.ErrInvalidName",
	storage.ErrNoSpace:     "storage.ErrNoSpace",
}

// wantErr fails t unless err wraps want (nil: any error) and its text
// names every one of names.
func wantErr(t *testing.T, what string, err, want error, names ...string) {
	t.Helper()
	switch {
	case err == nil && want == nil:
		t.Errorf("%s succeeded, want an error", what)
		return
	case err == nil:
		t.Errorf("%s succeeded, want an error wrapping %s", what, sentinelNames[want])
		return
	case want != nil && !errors.Is(err, want):
		t.Errorf("%s: got %q, want an error wrapping %s", what, err, sentinelNames[want])
		return
	}
	for _, n := range names {
		if n != "" && !strings.Contains(err.Error(), n) {
			t.Errorf("%s: error %q does not name %q", what, err, n)
		}
	}
}

func firstErr[T any](_ T, err error) error { return err }

// cleanup removes what the run left behind, ignoring errors, also when
// t's context has ended.
func (r *storageRun) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), storageStepTimeout)
	defer cancel()
	mine := func(name string) bool { return strings.HasPrefix(name, "ct-"+r.sfx+"-") }
	vols, _ := r.st.ListVolumes(ctx)
	for _, v := range vols {
		if mine(v.Name) || mine(v.Image) {
			_ = r.st.Detach(ctx, v.Name)
			_ = r.st.DeleteVolume(ctx, v.Name)
		}
	}
	imgs, _ := r.st.ListImages(ctx)
	for _, im := range imgs {
		if mine(im.Name) {
			_ = r.st.DeleteImage(ctx, im.Name)
		}
	}
	if t.Failed() {
		t.Logf("the storage suite's images and volumes were named ct-%s-*", r.sfx)
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// patterned returns n bytes of seeded pseudo-random data: no zero runs a
// storage could keep sparse, nothing a compressing storage could shrink,
// and different for each seed.
func patterned(seed uint64, n int) []byte {
	r := mathrand.New(mathrand.NewPCG(seed, 0x646c73))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
