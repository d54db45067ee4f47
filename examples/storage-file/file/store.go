package file

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/storage/diskfile"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// blockSize is the block size of every volume: sources must be a multiple.
const blockSize = volume.DefaultBlockSize

// File and directory names under root.
const (
	imagesDir    = "images"
	volumesDir   = "volumes"
	trashDir     = "trash"
	manifestName = "image.json"
	tmpPrefix    = diskfile.TempPrefix
)

var versionFileRE = regexp.MustCompile(`^([1-9][0-9]*)\.img$`)

// manifest is an image's image.json.
type manifest struct {
	// Current is the version new volumes clone.
	Current uint64 `json:"current"`
	// Next is the number the next version gets: numbers are never reused.
	Next uint64 `json:"next"`
	// Versions are the image's versions, oldest first.
	Versions []versionMeta `json:"versions"`
}

type versionMeta struct {
	Number  uint64    `json:"number"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// version returns version n, or nil.
func (m *manifest) version(n uint64) *versionMeta {
	for i := range m.Versions {
		if m.Versions[i].Number == n {
			return &m.Versions[i]
		}
	}
	return nil
}

func (m *manifest) clone() *manifest {
	c := *m
	c.Versions = slices.Clone(m.Versions)
	return &c
}

// volumeMeta is a volume's <name>.json.
type volumeMeta struct {
	Image   string    `json:"image"`
	Version uint64    `json:"version"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// versionRef names one version of one image.
type versionRef struct {
	image   string
	version uint64
}

// store is the state of one root directory. Metadata lives in memory,
// guarded by mu, and on disk; slow copies run without the lock, holding
// reservations (busy images and volumes, versions being copied from)
// that keep other operations from pulling the files away underneath.
type store struct {
	root   string
	logger hclog.Logger

	mu          sync.Mutex
	images      map[string]*manifest
	volumes     map[string]*volumeMeta
	attached    map[string]bool
	busyImages  map[string]string // image → operation adding a version
	busyVolumes map[string]string // volume → operation in progress
	copying     map[versionRef]int
}

// openStore creates root's directories if needed, removes what a crash
// left behind and loads images and volumes.
func openStore(root string, logger hclog.Logger) (*store, error) {
	for _, d := range []string{root, filepath.Join(root, imagesDir), filepath.Join(root, volumesDir)} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("create storage directory: %w", err)
		}
	}
	if err := os.RemoveAll(filepath.Join(root, trashDir)); err != nil {
		return nil, fmt.Errorf("empty the trash: %w", err)
	}
	s := &store{
		root: root, logger: logger,
		images: map[string]*manifest{}, volumes: map[string]*volumeMeta{},
		attached: map[string]bool{}, busyImages: map[string]string{},
		busyVolumes: map[string]string{}, copying: map[versionRef]int{},
	}
	if err := s.loadImages(); err != nil {
		return nil, err
	}
	if err := s.loadVolumes(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *store) imageDir(image string) string { return filepath.Join(s.root, imagesDir, image) }
func (s *store) manifestPath(image string) string {
	return filepath.Join(s.imageDir(image), manifestName)
}
func (s *store) versionPath(image string, n uint64) string {
	return filepath.Join(s.imageDir(image), strconv.FormatUint(n, 10)+".img")
}
func (s *store) volumePath(name string) string {
	return filepath.Join(s.root, volumesDir, name+".img")
}
func (s *store) volumeMetaPath(name string) string {
	return filepath.Join(s.root, volumesDir, name+".json")
}

// loadImages reads every manifest. A directory without one is what an
// interrupted first import leaves: it is removed, as are temporary files
// and version files no manifest names.
func (s *store) loadImages() error {
	dir := filepath.Join(s.root, imagesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read images: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if storage.ValidName(name) != nil || !e.IsDir() {
			s.logger.Warn("ignoring unexpected entry in images directory", "path", filepath.Join(dir, name))
			continue
		}
		var m manifest
		if err := readJSON(s.manifestPath(name), &m); errors.Is(err, fs.ErrNotExist) {
			s.logger.Warn("removing image directory without manifest (interrupted import)", "image", name)
			if err := os.RemoveAll(s.imageDir(name)); err != nil {
				return fmt.Errorf("remove incomplete image %s: %w", name, err)
			}
			continue
		} else if err != nil {
			return fmt.Errorf("load image %s: %w", name, err)
		}
		if err := s.checkImageFiles(name, &m); err != nil {
			return err
		}
		if len(m.Versions) > 0 {
			s.images[name] = &m
		}
	}
	return nil
}

// checkImageFiles drops versions whose file is missing from m and removes
// files m does not name.
func (s *store) checkImageFiles(image string, m *manifest) error {
	entries, err := os.ReadDir(s.imageDir(image))
	if err != nil {
		return fmt.Errorf("load image %s: %w", image, err)
	}
	present := map[uint64]bool{}
	for _, e := range entries {
		name := e.Name()
		if match := versionFileRE.FindStringSubmatch(name); match != nil {
			n, _ := strconv.ParseUint(match[1], 10, 64)
			if m.version(n) != nil {
				present[n] = true
				continue
			}
		} else if name == manifestName {
			continue
		} else if !strings.HasPrefix(name, tmpPrefix) {
			s.logger.Warn("ignoring unexpected file in image directory", "image", image, "file", name)
			continue
		}
		s.logger.Warn("removing file left by an interrupted operation", "image", image, "file", name)
		if err := os.Remove(filepath.Join(s.imageDir(image), name)); err != nil {
			return fmt.Errorf("load image %s: %w", image, err)
		}
	}
	kept := m.Versions[:0]
	for _, v := range m.Versions {
		if present[v.Number] {
			kept = append(kept, v)
		} else {
			s.logger.Error("version file missing; dropping the version", "image", image, "version", v.Number)
		}
	}
	m.Versions = kept
	if len(kept) > 0 && m.version(m.Current) == nil {
		m.Current = kept[len(kept)-1].Number
		s.logger.Error("current version missing; using the latest", "image", image, "version", m.Current)
	}
	for _, v := range kept {
		m.Next = max(m.Next, v.Number+1)
	}
	return nil
}

// loadVolumes reads every volume's metadata. A disk file without metadata
// is what an interrupted create leaves: it is removed, with temporary files.
func (s *store) loadVolumes() error {
	dir := filepath.Join(s.root, volumesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read volumes: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			s.logger.Warn("removing file left by an interrupted operation", "file", filepath.Join(dir, name))
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("load volumes: %w", err)
			}
			continue
		}
		vol, ok := strings.CutSuffix(name, ".json")
		if !ok || storage.ValidName(vol) != nil {
			continue
		}
		var m volumeMeta
		if err := readJSON(filepath.Join(dir, name), &m); err != nil {
			return fmt.Errorf("load volume %s: %w", vol, err)
		}
		if _, err := os.Stat(s.volumePath(vol)); err != nil {
			s.logger.Error("volume file missing; dropping the volume", "volume", vol, "error", err)
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return fmt.Errorf("load volume %s: %w", vol, err)
			}
			continue
		}
		s.volumes[vol] = &m
	}
	for _, e := range entries {
		if vol, ok := strings.CutSuffix(e.Name(), ".img"); ok && s.volumes[vol] == nil {
			s.logger.Warn("removing volume file without metadata (interrupted create)", "file", e.Name())
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("load volumes: %w", err)
			}
		}
	}
	return nil
}

// inUse reports whether a volume was cloned from the version, or a copy
// from it is running. Call with mu held.
func (s *store) inUse(image string, version uint64) bool {
	if s.copying[versionRef{image, version}] > 0 {
		return true
	}
	for _, v := range s.volumes {
		if v.Image == image && v.Version == version {
			return true
		}
	}
	return false
}

// reserveCopy marks a version as being copied from, so that it cannot be
// deleted meanwhile. Call with mu held.
func (s *store) reserveCopy(image string, version uint64) versionRef {
	ref := versionRef{image, version}
	s.copying[ref]++
	return ref
}

// releaseCopy ends a reserveCopy. Call without mu.
func (s *store) releaseCopy(ref versionRef) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.copying[ref]--; s.copying[ref] <= 0 {
		delete(s.copying, ref)
	}
}

// imageInUse reports whether any volume or copy uses one of the image's
// versions. Call with mu held.
func (s *store) imageInUse(image string) bool {
	for ref := range s.copying {
		if ref.image == image {
			return true
		}
	}
	for _, v := range s.volumes {
		if v.Image == image {
			return true
		}
	}
	return false
}

// resolve finds an image's version (0: current). Call with mu held.
func (s *store) resolve(image string, version uint64) (*versionMeta, error) {
	m := s.images[image]
	if m == nil {
		return nil, fmt.Errorf("image %s: %w", image, storage.ErrNotFound)
	}
	if version == 0 {
		version = m.Current
	}
	v := m.version(version)
	if v == nil {
		return nil, fmt.Errorf("version %d of image %s: %w", version, image, storage.ErrNotFound)
	}
	return v, nil
}

func (s *store) importImage(ctx context.Context, req storage.ImportRequest) (storage.Version, error) {
	fail := func(err error) (storage.Version, error) {
		return storage.Version{}, fmt.Errorf("import image %s from %s: %w", req.Image, req.Source, err)
	}
	if err := storage.ValidName(req.Image); err != nil {
		return fail(err)
	}
	fi, err := os.Stat(req.Source)
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(errors.New("not a regular file"))
	}
	if fi.Size() == 0 || fi.Size()%int64(blockSize) != 0 {
		return fail(fmt.Errorf("size %d is not a positive multiple of %d bytes", fi.Size(), blockSize))
	}
	v, err := s.addVersion(ctx, req.Image, true, req.Source, req.Progress)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

func (s *store) createVersion(ctx context.Context, image string) (storage.Version, error) {
	fail := func(err error) (storage.Version, error) {
		return storage.Version{}, fmt.Errorf("create version of image %s: %w", image, err)
	}
	if err := storage.ValidName(image); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	cur, err := s.resolve(image, 0)
	if err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	ref := s.reserveCopy(image, cur.Number)
	s.mu.Unlock()
	defer s.releaseCopy(ref)
	v, err := s.addVersion(ctx, image, false, s.versionPath(image, ref.version), nil)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

func (s *store) promote(ctx context.Context, vol, image string) (storage.Version, error) {
	fail := func(err error) (storage.Version, error) {
		return storage.Version{}, fmt.Errorf("promote volume %s to image %s: %w", vol, image, err)
	}
	if err := errors.Join(storage.ValidName(vol), storage.ValidName(image)); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	if err := s.checkVolumeIdle(vol); err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	s.busyVolumes[vol] = "promote"
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.busyVolumes, vol)
		s.mu.Unlock()
	}()
	v, err := s.addVersion(ctx, image, true, s.volumePath(vol), nil)
	if err != nil {
		return fail(err)
	}
	return v, nil
}

// addVersion copies src as the image's next version and makes it current.
// With create, a missing image is created (as version 1). Only one version
// is added to an image at a time: a second one is refused with ErrInUse.
func (s *store) addVersion(ctx context.Context, image string, create bool, src string, progress func(done, total int64)) (storage.Version, error) {
	s.mu.Lock()
	m := s.images[image]
	switch {
	case s.busyImages[image] != "":
		s.mu.Unlock()
		return storage.Version{}, fmt.Errorf("%w: another version of image %s is being added", storage.ErrInUse, image)
	case m == nil && !create:
		s.mu.Unlock()
		return storage.Version{}, fmt.Errorf("image %s: %w", image, storage.ErrNotFound)
	}
	n := uint64(1)
	if m != nil {
		n = m.Next
	}
	s.busyImages[image] = "add version"
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.busyImages, image)
		s.mu.Unlock()
	}()

	dst := s.versionPath(image, n)
	if err := os.MkdirAll(s.imageDir(image), 0o750); err != nil {
		return storage.Version{}, diskfile.NoSpace(err)
	}
	removeIfNew := func() {
		if m == nil {
			_ = os.RemoveAll(s.imageDir(image))
		}
	}
	size, err := copyFile(ctx, src, dst, progress)
	if err != nil {
		removeIfNew()
		return storage.Version{}, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	next := &manifest{}
	if cur := s.images[image]; cur != nil {
		next = cur.clone()
	}
	created := time.Now().UTC().Truncate(time.Second)
	next.Versions = append(next.Versions, versionMeta{Number: n, Size: size, Created: created})
	next.Current, next.Next = n, n+1
	if err := writeJSON(s.manifestPath(image), next); err != nil {
		_ = os.Remove(dst)
		removeIfNew()
		return storage.Version{}, err
	}
	s.images[image] = next
	return storage.Version{Image: image, Number: n, Size: size, Created: created, Current: true}, nil
}

func (s *store) listImages() []storage.Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storage.Image, 0, len(s.images))
	for name, m := range s.images {
		out = append(out, storage.Image{Name: name, CurrentVersion: m.Current, Size: m.version(m.Current).Size})
	}
	slices.SortFunc(out, func(a, b storage.Image) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (s *store) deleteImage(image string) error {
	fail := func(err error) error { return fmt.Errorf("delete image %s: %w", image, err) }
	if err := storage.ValidName(image); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.images[image] == nil:
		return fail(storage.ErrNotFound)
	case s.busyImages[image] != "":
		return fail(fmt.Errorf("%w: a version is being added", storage.ErrInUse))
	case s.imageInUse(image):
		return fail(fmt.Errorf("%w: volumes were cloned from it", storage.ErrInUse))
	}
	// Move it out of the way in one step, then remove it at leisure.
	trash := filepath.Join(s.root, trashDir)
	if err := os.MkdirAll(trash, 0o750); err != nil {
		return fail(err)
	}
	gone, err := os.MkdirTemp(trash, image+"-")
	if err != nil {
		return fail(err)
	}
	if err := os.Rename(s.imageDir(image), filepath.Join(gone, image)); err != nil {
		return fail(err)
	}
	delete(s.images, image)
	go func() {
		if err := os.RemoveAll(gone); err != nil {
			s.logger.Error("remove deleted image", "image", image, "error", err)
		}
	}()
	return nil
}

func (s *store) listVersions(image string) ([]storage.Version, error) {
	if err := storage.ValidName(image); err != nil {
		return nil, fmt.Errorf("list versions of image %s: %w", image, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.images[image]
	if m == nil {
		return nil, fmt.Errorf("list versions of image %s: %w", image, storage.ErrNotFound)
	}
	out := make([]storage.Version, len(m.Versions))
	for i, v := range m.Versions {
		out[i] = storage.Version{Image: image, Number: v.Number, Size: v.Size, Created: v.Created, Current: v.Number == m.Current}
	}
	return out, nil
}

func (s *store) deleteVersion(image string, version uint64) error {
	fail := func(err error) error { return fmt.Errorf("delete version %d of image %s: %w", version, image, err) }
	if err := storage.ValidName(image); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.images[image]
	switch {
	case m == nil || m.version(version) == nil || version == 0:
		return fail(storage.ErrNotFound)
	case m.Current == version:
		return fail(fmt.Errorf("%w: it is the current version", storage.ErrInUse))
	case s.inUse(image, version):
		return fail(fmt.Errorf("%w: volumes were cloned from it", storage.ErrInUse))
	}
	next := m.clone()
	next.Versions = slices.DeleteFunc(next.Versions, func(v versionMeta) bool { return v.Number == version })
	if err := writeJSON(s.manifestPath(image), next); err != nil {
		return fail(err)
	}
	s.images[image] = next
	if err := os.Remove(s.versionPath(image, version)); err != nil {
		s.logger.Error("remove deleted version's file", "image", image, "version", version, "error", err)
	}
	return nil
}

func (s *store) setCurrentVersion(image string, version uint64) error {
	fail := func(err error) error {
		return fmt.Errorf("set current version of image %s to %d: %w", image, version, err)
	}
	if err := storage.ValidName(image); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.images[image]
	if m == nil || m.version(version) == nil {
		return fail(storage.ErrNotFound)
	}
	next := m.clone()
	next.Current = version
	if err := writeJSON(s.manifestPath(image), next); err != nil {
		return fail(err)
	}
	s.images[image] = next
	return nil
}

func (s *store) createVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	fail := func(err error) (storage.Volume, error) {
		return storage.Volume{}, fmt.Errorf("create volume %s from image %s: %w", req.Volume, req.Image, err)
	}
	if err := errors.Join(storage.ValidName(req.Volume), storage.ValidName(req.Image)); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	if s.volumes[req.Volume] != nil || s.busyVolumes[req.Volume] == "create" {
		s.mu.Unlock()
		return fail(fmt.Errorf("volume %s: %w", req.Volume, storage.ErrExists))
	}
	if op := s.busyVolumes[req.Volume]; op != "" {
		s.mu.Unlock()
		return fail(fmt.Errorf("volume %s: %w: %s in progress", req.Volume, storage.ErrInUse, op))
	}
	v, err := s.resolve(req.Image, req.Version)
	if err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	s.busyVolumes[req.Volume] = "create"
	ref := s.reserveCopy(req.Image, v.Number)
	s.mu.Unlock()

	vol, err := s.cloneInto(ctx, req.Volume, ref)
	if err != nil {
		return fail(err)
	}
	return vol, nil
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
	s.mu.Lock()
	if err := s.checkVolumeIdle(req.Volume); err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	image := cmp.Or(req.Image, s.volumes[req.Volume].Image)
	v, err := s.resolve(image, req.Version)
	if err != nil {
		s.mu.Unlock()
		return fail(err)
	}
	s.busyVolumes[req.Volume] = "reset"
	ref := s.reserveCopy(image, v.Number)
	s.mu.Unlock()

	vol, err := s.cloneInto(ctx, req.Volume, ref)
	if err != nil {
		return fail(err)
	}
	return vol, nil
}

// checkVolumeIdle refuses a volume that is missing, attached or busy.
// Call with mu held.
func (s *store) checkVolumeIdle(name string) error {
	switch {
	case s.volumes[name] == nil:
		return fmt.Errorf("volume %s: %w", name, storage.ErrNotFound)
	case s.attached[name]:
		return fmt.Errorf("volume %s: %w: it is attached", name, storage.ErrInUse)
	case s.busyVolumes[name] != "":
		return fmt.Errorf("volume %s: %w: %s in progress", name, storage.ErrInUse, s.busyVolumes[name])
	}
	return nil
}

// cloneInto copies a version as the volume's disk and writes its metadata.
// The caller marked the volume busy and reserved the version (reserveCopy);
// cloneInto releases both.
func (s *store) cloneInto(ctx context.Context, name string, ref versionRef) (storage.Volume, error) {
	defer func() {
		s.releaseCopy(ref)
		s.mu.Lock()
		delete(s.busyVolumes, name)
		s.mu.Unlock()
	}()

	size, err := copyFile(ctx, s.versionPath(ref.image, ref.version), s.volumePath(name), nil)
	if err != nil {
		return storage.Volume{}, err
	}
	meta := &volumeMeta{Image: ref.image, Version: ref.version, Size: size, Created: time.Now().UTC().Truncate(time.Second)}
	if err := writeJSON(s.volumeMetaPath(name), meta); err != nil {
		s.mu.Lock()
		existed := s.volumes[name] != nil
		s.mu.Unlock()
		if !existed {
			_ = os.Remove(s.volumePath(name))
		}
		return storage.Volume{}, err
	}
	s.mu.Lock()
	s.volumes[name] = meta
	s.mu.Unlock()
	return storage.Volume{Name: name, Image: ref.image, Version: ref.version, Size: size}, nil
}

func (s *store) deleteVolume(name string) error {
	fail := func(err error) error { return fmt.Errorf("delete volume %s: %w", name, err) }
	if err := storage.ValidName(name); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkVolumeIdle(name); err != nil {
		return fail(err)
	}
	// Metadata first: a crash in between leaves a disk file without
	// metadata, which the next start removes.
	if err := os.Remove(s.volumeMetaPath(name)); err != nil {
		return fail(err)
	}
	delete(s.volumes, name)
	if err := diskfile.SyncDir(filepath.Join(s.root, volumesDir)); err != nil {
		s.logger.Warn("sync volumes directory", "error", err)
	}
	if err := os.Remove(s.volumePath(name)); err != nil {
		s.logger.Error("remove deleted volume's file", "volume", name, "error", err)
	}
	return nil
}

func (s *store) listVolumes() []storage.Volume {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]storage.Volume, 0, len(s.volumes))
	for name, v := range s.volumes {
		out = append(out, storage.Volume{Name: name, Image: v.Image, Version: v.Version, Size: v.Size})
	}
	slices.SortFunc(out, func(a, b storage.Volume) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (s *store) attach(name string) (volume.Descriptor, error) {
	fail := func(err error) (volume.Descriptor, error) {
		return volume.Descriptor{}, fmt.Errorf("attach volume %s: %w", name, err)
	}
	if err := storage.ValidName(name); err != nil {
		return fail(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.volumes[name]
	switch {
	case v == nil:
		return fail(storage.ErrNotFound)
	case s.busyVolumes[name] != "":
		return fail(fmt.Errorf("%w: %s in progress", storage.ErrInUse, s.busyVolumes[name]))
	}
	s.attached[name] = true
	return volume.Descriptor{
		Format:    volume.FormatRaw,
		Paths:     []string{s.volumePath(name)},
		Size:      v.Size,
		BlockSize: blockSize,
	}, nil
}

func (s *store) detach(name string) error {
	if err := storage.ValidName(name); err != nil {
		return fmt.Errorf("detach volume %s: %w", name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volumes[name] == nil {
		return fmt.Errorf("detach volume %s: %w", name, storage.ErrNotFound)
	}
	delete(s.attached, name)
	return nil
}

// counts returns the number of images and versions.
func (s *store) counts() (images, versions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.images {
		versions += len(m.Versions)
	}
	return len(s.images), versions
}

// used returns the bytes held by versions and volumes.
func (s *store) used() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, m := range s.images {
		for _, v := range m.Versions {
			n += v.Size
		}
	}
	for _, v := range s.volumes {
		n += v.Size
	}
	return n
}

// available returns the bytes the filesystem under root can still give an
// unprivileged writer.
func (s *store) available() (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(s.root, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.root, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
