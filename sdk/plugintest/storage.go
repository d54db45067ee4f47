package plugintest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

// StorageImageSize is the size of the raw images RunStorageBasics imports:
// 1 MiB, a multiple of both block sizes.
const StorageImageSize = 1 << 20

// storageStepTimeout bounds each step of RunStorageBasics.
const storageStepTimeout = 2 * time.Minute

// RunStorageBasics holds a storage plugin to what the host relies on, as
// subtests of t, through st (from Harness.Storage, or a client of a real
// plugin process). scratch is a directory the plugin can read, where the
// raw source images are written.
//
// It imports an image, lists it, clones volumes, attaches them and opens
// their descriptors with volume.Open, and checks that clones are
// independent (a write to one is seen by neither another clone nor a fresh
// one), that a reset discards writes, that versions work (re-import makes
// the next version current, SetCurrentVersion, CreateVersion, and Promote
// when the plugin advertises it), that capacity is reported, and that the
// plugin answers with the SDK's sentinel errors across gRPC:
// storage.ErrInvalidName for names like "../x" and "a/b",
// storage.ErrExists for a duplicate volume, storage.ErrInUse for deleting
// a version a volume was cloned from, the current version, an image in use
// or an attached volume, storage.ErrNotFound for missing images, versions
// and volumes. Finally it deletes everything it made.
//
// The names it uses end in a random suffix, so it can run against a
// storage that holds other data, and more than once.
func RunStorageBasics(t *testing.T, st *storage.Client, scratch string) {
	s := &storageCheck{st: st, scratch: scratch, sfx: randomSuffix()}
	s.img = "pt-img-" + s.sfx
	s.volA, s.volB = "pt-a-"+s.sfx, "pt-b-"+s.sfx
	s.v1 = patterned(1, StorageImageSize)
	s.v2 = patterned(2, StorageImageSize)
	defer s.cleanup(t)

	if !t.Run("import", s.testImport) {
		return
	}
	if !t.Run("clone_and_attach", s.testCloneAndAttach) {
		return
	}
	t.Run("reset", s.testReset)
	t.Run("capacity", s.testCapacity)
	t.Run("invalid_names", s.testInvalidNames)
	t.Run("duplicates", s.testDuplicates)
	t.Run("versions_in_use", s.testVersionsInUse)
	t.Run("set_current_version", s.testSetCurrent)
	t.Run("create_version", s.testCreateVersion)
	t.Run("promote", s.testPromote)
	t.Run("missing", s.testMissing)
	t.Run("delete", s.testDelete)
}

type storageCheck struct {
	st      *storage.Client
	scratch string
	sfx     string
	img     string
	volA    string
	volB    string
	v1, v2  []byte // content of versions 1 and 2
}

func (s *storageCheck) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), storageStepTimeout)
	t.Cleanup(cancel)
	return ctx
}

// source writes data as a raw image file in scratch and returns its path.
func (s *storageCheck) source(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(s.scratch, name+"-"+s.sfx+".raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatalf("write source image: %v", err)
	}
	return p
}

func (s *storageCheck) testImport(t *testing.T) {
	ctx := s.ctx(t)
	var calls int
	var last int64
	v, err := s.st.ImportImage(ctx, storage.ImportRequest{
		Image: s.img, Source: s.source(t, "v1", s.v1),
		Progress: func(done, total int64) { calls++; last = done },
	})
	if err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	if v.Image != s.img || v.Number != 1 || !v.Current || v.Size != StorageImageSize {
		t.Errorf("ImportImage of a new image = %+v, want image %s, version 1, current, size %d", v, s.img, StorageImageSize)
	}
	if calls > 0 && last > StorageImageSize {
		t.Errorf("ImportImage progress reported %d bytes done of a %d-byte image", last, StorageImageSize)
	}
	imgs, err := s.st.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	i := slices.IndexFunc(imgs, func(im storage.Image) bool { return im.Name == s.img })
	switch {
	case i < 0:
		t.Errorf("ListImages = %+v, want it to list %s", imgs, s.img)
	case imgs[i].CurrentVersion != 1 || imgs[i].Size != StorageImageSize:
		t.Errorf("ListImages lists %+v, want current version 1, size %d", imgs[i], StorageImageSize)
	}
	vs, err := s.st.ListVersions(ctx, s.img)
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	if len(vs) != 1 || vs[0].Number != 1 || !vs[0].Current {
		t.Errorf("ListVersions = %+v, want only version 1, current", vs)
	}
}

func (s *storageCheck) testCloneAndAttach(t *testing.T) {
	ctx := s.ctx(t)
	for _, name := range []string{s.volA, s.volB} {
		v, err := s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: name, Image: s.img})
		if err != nil {
			t.Fatalf("CreateVolume %s: %v", name, err)
		}
		if v.Name != name || v.Image != s.img || v.Version != 1 || v.Size != StorageImageSize {
			t.Errorf("CreateVolume = %+v, want volume %s of image %s version 1, size %d", v, name, s.img, StorageImageSize)
		}
	}
	vols, err := s.st.ListVolumes(ctx)
	if err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}
	for _, name := range []string{s.volA, s.volB} {
		if !slices.ContainsFunc(vols, func(v storage.Volume) bool { return v.Name == name }) {
			t.Errorf("ListVolumes = %+v, want it to list %s", vols, name)
		}
	}

	a := s.open(t, s.volA)
	b := s.open(t, s.volB)
	s.wantContent(t, s.volA, a, s.v1)
	s.wantContent(t, s.volB, b, s.v1)

	if err := s.st.DeleteVolume(ctx, s.volA); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("DeleteVolume of attached volume %s: got %v, want an error wrapping storage.ErrInUse", s.volA, err)
	}

	written := s.scribble(t, s.volA, a)
	s.wantContent(t, s.volA, a, written)
	s.wantContent(t, s.volB+" (after a write to "+s.volA+")", b, s.v1)

	c := "pt-c-" + s.sfx
	if _, err := s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: c, Image: s.img}); err != nil {
		t.Fatalf("CreateVolume %s: %v", c, err)
	}
	cv := s.open(t, c)
	s.wantContent(t, "fresh clone "+c, cv, s.v1)
	s.close(t, c, cv)
	if err := s.st.DeleteVolume(ctx, c); err != nil {
		t.Errorf("DeleteVolume %s: %v", c, err)
	}
	s.close(t, s.volA, a)
	s.close(t, s.volB, b)
}

// open attaches a volume and opens its descriptor.
func (s *storageCheck) open(t *testing.T, name string) volume.Volume {
	t.Helper()
	d, err := s.st.Attach(s.ctx(t), name)
	if err != nil {
		t.Fatalf("Attach %s: %v", name, err)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("Attach %s returned a descriptor the target cannot use: %v", name, err)
	}
	if d.Size != StorageImageSize {
		t.Errorf("Attach %s: descriptor size %d, want the image's %d", name, d.Size, StorageImageSize)
	}
	v, err := volume.Open(d)
	if err != nil {
		t.Fatalf("Attach %s: %v", name, err)
	}
	return v
}

// close closes an open volume and detaches it.
func (s *storageCheck) close(t *testing.T, name string, v volume.Volume) {
	t.Helper()
	if err := v.Close(); err != nil {
		t.Errorf("close volume %s: %v", name, err)
	}
	if err := s.st.Detach(s.ctx(t), name); err != nil {
		t.Errorf("Detach %s: %v", name, err)
	}
}

// scribble writes to a few places of v (the first and last blocks and one
// in between), flushes, and returns the content v should now have.
func (s *storageCheck) scribble(t *testing.T, name string, v volume.Volume) []byte {
	t.Helper()
	want := make([]byte, v.Size())
	if _, err := v.ReadAt(want, 0); err != nil {
		t.Fatalf("read volume %s: %v", name, err)
	}
	for _, off := range []int64{0, 8192, v.Size() - 512} {
		p := bytes.Repeat([]byte("DLS!"), 128)
		if _, err := v.WriteAt(p, off); err != nil {
			t.Fatalf("write volume %s at %d: %v", name, off, err)
		}
		copy(want[off:], p)
	}
	if err := v.Flush(); err != nil {
		t.Fatalf("flush volume %s: %v", name, err)
	}
	return want
}

func (s *storageCheck) wantContent(t *testing.T, what string, v volume.Volume, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if _, err := v.ReadAt(got, 0); err != nil {
		t.Fatalf("read volume %s: %v", what, err)
	}
	if i := firstDiff(got, want); i >= 0 {
		t.Errorf("volume %s differs from what it should hold at byte %d", what, i)
	}
}

// wantVolume attaches a volume, checks its content and detaches it.
func (s *storageCheck) wantVolume(t *testing.T, name string, want []byte) {
	t.Helper()
	v := s.open(t, name)
	s.wantContent(t, name, v, want)
	s.close(t, name, v)
}

func (s *storageCheck) testReset(t *testing.T) {
	ctx := s.ctx(t)
	v, err := s.st.ResetVolume(ctx, storage.VolumeRequest{Volume: s.volA, Image: s.img})
	if err != nil {
		t.Fatalf("ResetVolume %s: %v", s.volA, err)
	}
	if v.Name != s.volA || v.Image != s.img || v.Version != 1 {
		t.Errorf("ResetVolume = %+v, want volume %s of image %s version 1", v, s.volA, s.img)
	}
	s.wantVolume(t, s.volA, s.v1)
}

func (s *storageCheck) testCapacity(t *testing.T) {
	c, err := s.st.Capacity(s.ctx(t))
	if err != nil {
		t.Fatalf("Capacity: %v", err)
	}
	if c.Used <= 0 || c.Available <= 0 {
		t.Errorf("Capacity = %+v with an image and volumes stored, want used and available above zero", c)
	}
}

func (s *storageCheck) testInvalidNames(t *testing.T) {
	ctx := s.ctx(t)
	src := s.source(t, "bad", s.v1)
	good := "pt-good-" + s.sfx
	for _, bad := range []string{"../x", "a/b", "..", ".", "", "/abs", "Upper", "-dash"} {
		calls := []struct {
			what string
			err  error
		}{
			{"ImportImage", firstErr(s.st.ImportImage(ctx, storage.ImportRequest{Image: bad, Source: src}))},
			{"CreateVolume (volume name)", firstErr(s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: bad, Image: s.img}))},
			{"CreateVolume (image name)", firstErr(s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: good, Image: bad}))},
			{"ResetVolume", firstErr(s.st.ResetVolume(ctx, storage.VolumeRequest{Volume: bad}))},
			{"Attach", firstErr(s.st.Attach(ctx, bad))},
			{"DeleteVolume", s.st.DeleteVolume(ctx, bad)},
			{"DeleteImage", s.st.DeleteImage(ctx, bad)},
			{"ListVersions", firstErr(s.st.ListVersions(ctx, bad))},
			{"CreateVersion", firstErr(s.st.CreateVersion(ctx, bad))},
		}
		for _, c := range calls {
			if !errors.Is(c.err, storage.ErrInvalidName) {
				t.Errorf("%s with name %q: got %v, want an error wrapping storage.ErrInvalidName", c.what, bad, c.err)
			}
		}
	}
	// Nothing must have been made from the good volume name either.
	if err := s.st.DeleteVolume(ctx, good); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("DeleteVolume %s after refused creations: got %v, want storage.ErrNotFound", good, err)
	}
}

func firstErr[T any](_ T, err error) error { return err }

func (s *storageCheck) testDuplicates(t *testing.T) {
	ctx := s.ctx(t)
	v, err := s.st.ImportImage(ctx, storage.ImportRequest{Image: s.img, Source: s.source(t, "v2", s.v2)})
	if err != nil {
		t.Fatalf("ImportImage of an existing image: %v", err)
	}
	if v.Number != 2 || !v.Current {
		t.Errorf("ImportImage of an existing image = %+v, want its next version, 2, current", v)
	}
	vs, err := s.st.ListVersions(ctx, s.img)
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	if len(vs) != 2 || vs[0].Number != 1 || vs[0].Current || vs[1].Number != 2 || !vs[1].Current {
		t.Errorf("ListVersions = %+v, want versions 1 and 2, oldest first, 2 current", vs)
	}
	if _, err := s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: s.volA, Image: s.img}); !errors.Is(err, storage.ErrExists) {
		t.Errorf("CreateVolume of existing volume %s: got %v, want an error wrapping storage.ErrExists", s.volA, err)
	}
	vols, err := s.st.ListVolumes(ctx)
	if err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}
	if i := slices.IndexFunc(vols, func(v storage.Volume) bool { return v.Name == s.volB }); i < 0 || vols[i].Version != 1 {
		t.Errorf("ListVolumes = %+v, want %s still on version 1", vols, s.volB)
	}
	s.wantVolume(t, s.volB, s.v1)

	d := "pt-d-" + s.sfx
	if v, err := s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: d, Image: s.img}); err != nil {
		t.Fatalf("CreateVolume %s: %v", d, err)
	} else if v.Version != 2 {
		t.Errorf("CreateVolume of the current version = %+v, want version 2", v)
	}
	s.wantVolume(t, d, s.v2)
	if err := s.st.DeleteVolume(ctx, d); err != nil {
		t.Errorf("DeleteVolume %s: %v", d, err)
	}
}

func (s *storageCheck) testVersionsInUse(t *testing.T) {
	ctx := s.ctx(t)
	cur := s.current(t)
	if err := s.st.DeleteVersion(ctx, s.img, 1); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("DeleteVersion of version 1, which volumes were cloned from: got %v, want an error wrapping storage.ErrInUse", err)
	}
	if err := s.st.DeleteVersion(ctx, s.img, cur); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("DeleteVersion of the current version %d: got %v, want an error wrapping storage.ErrInUse", cur, err)
	}
	if err := s.st.DeleteImage(ctx, s.img); !errors.Is(err, storage.ErrInUse) {
		t.Errorf("DeleteImage of an image with volumes: got %v, want an error wrapping storage.ErrInUse", err)
	}
}

// current returns the image's current version number.
func (s *storageCheck) current(t *testing.T) uint64 {
	t.Helper()
	vs, err := s.st.ListVersions(s.ctx(t), s.img)
	if err != nil {
		t.Fatalf("ListVersions: %v", err)
	}
	for _, v := range vs {
		if v.Current {
			return v.Number
		}
	}
	t.Fatalf("ListVersions = %+v: no version is current", vs)
	return 0
}

func (s *storageCheck) testSetCurrent(t *testing.T) {
	ctx := s.ctx(t)
	prev := s.current(t)
	if err := s.st.SetCurrentVersion(ctx, s.img, 1); err != nil {
		t.Fatalf("SetCurrentVersion 1: %v", err)
	}
	e := "pt-e-" + s.sfx
	v, err := s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: e, Image: s.img})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", e, err)
	}
	if v.Version != 1 {
		t.Errorf("CreateVolume after SetCurrentVersion 1 = %+v, want version 1", v)
	}
	s.wantVolume(t, e, s.v1)
	if err := s.st.DeleteVolume(ctx, e); err != nil {
		t.Errorf("DeleteVolume %s: %v", e, err)
	}
	if err := s.st.SetCurrentVersion(ctx, s.img, prev); err != nil {
		t.Errorf("SetCurrentVersion %d: %v", prev, err)
	}
}

func (s *storageCheck) testCreateVersion(t *testing.T) {
	ctx := s.ctx(t)
	prev := s.current(t)
	v, err := s.st.CreateVersion(ctx, s.img)
	if err != nil {
		t.Fatalf("CreateVersion: %v", err)
	}
	if v.Number <= prev || !v.Current || v.Size != StorageImageSize {
		t.Errorf("CreateVersion = %+v, want a version after %d, current, size %d", v, prev, StorageImageSize)
	}
	f := "pt-f-" + s.sfx
	if _, err := s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: f, Image: s.img}); err != nil {
		t.Fatalf("CreateVolume %s: %v", f, err)
	}
	s.wantVolume(t, f, s.v2)
	if err := s.st.DeleteVolume(ctx, f); err != nil {
		t.Errorf("DeleteVolume %s: %v", f, err)
	}
	if err := s.st.SetCurrentVersion(ctx, s.img, prev); err != nil {
		t.Fatalf("SetCurrentVersion %d: %v", prev, err)
	}
	if err := s.st.DeleteVersion(ctx, s.img, v.Number); err != nil {
		t.Errorf("DeleteVersion %d, no longer current nor used: %v", v.Number, err)
	}
}

func (s *storageCheck) testPromote(t *testing.T) {
	ctx := s.ctx(t)
	info, err := s.st.Base().Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if !slices.Contains(info.Capabilities, storage.CapabilityPromote) {
		t.Skip("the plugin does not advertise the promote capability")
	}
	prev := s.current(t)
	a := s.open(t, s.volA)
	want := s.scribble(t, s.volA, a)
	s.close(t, s.volA, a)
	v, err := s.st.Promote(ctx, s.volA, s.img)
	if err != nil {
		t.Fatalf("Promote %s: %v", s.volA, err)
	}
	if v.Image != s.img || v.Number <= prev || !v.Current {
		t.Errorf("Promote = %+v, want a version of %s after %d, current", v, s.img, prev)
	}
	g := "pt-g-" + s.sfx
	if _, err := s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: g, Image: s.img}); err != nil {
		t.Fatalf("CreateVolume %s: %v", g, err)
	}
	s.wantVolume(t, g, want)
	if err := s.st.DeleteVolume(ctx, g); err != nil {
		t.Errorf("DeleteVolume %s: %v", g, err)
	}
	if err := s.st.SetCurrentVersion(ctx, s.img, prev); err != nil {
		t.Fatalf("SetCurrentVersion %d: %v", prev, err)
	}
	if err := s.st.DeleteVersion(ctx, s.img, v.Number); err != nil {
		t.Errorf("DeleteVersion %d, no longer current nor used: %v", v.Number, err)
	}
}

func (s *storageCheck) testMissing(t *testing.T) {
	ctx := s.ctx(t)
	vol, img := "pt-missing-"+s.sfx, "pt-missing-"+s.sfx
	calls := []struct {
		what string
		err  error
	}{
		{"Attach of a missing volume", firstErr(s.st.Attach(ctx, vol))},
		{"DeleteVolume of a missing volume", s.st.DeleteVolume(ctx, vol)},
		{"ResetVolume of a missing volume", firstErr(s.st.ResetVolume(ctx, storage.VolumeRequest{Volume: vol, Image: s.img}))},
		{"CreateVolume from a missing image", firstErr(s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: img}))},
		{"CreateVolume from a missing version", firstErr(s.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: s.img, Version: 999}))},
		{"ListVersions of a missing image", firstErr(s.st.ListVersions(ctx, img))},
		{"DeleteImage of a missing image", s.st.DeleteImage(ctx, img)},
		{"CreateVersion of a missing image", firstErr(s.st.CreateVersion(ctx, img))},
		{"DeleteVersion of a missing version", s.st.DeleteVersion(ctx, s.img, 999)},
		{"SetCurrentVersion to a missing version", s.st.SetCurrentVersion(ctx, s.img, 999)},
	}
	for _, c := range calls {
		if !errors.Is(c.err, storage.ErrNotFound) {
			t.Errorf("%s: got %v, want an error wrapping storage.ErrNotFound", c.what, c.err)
		}
	}
	if s.listsVolume(t, vol) {
		t.Errorf("ListVolumes lists %s after refused creations", vol)
	}
	// A failed import leaves no image behind.
	_, err := s.st.ImportImage(ctx, storage.ImportRequest{Image: img, Source: filepath.Join(s.scratch, "no-such-file.raw")})
	if err == nil {
		t.Errorf("ImportImage from a missing source file succeeded")
	}
	imgs, err := s.st.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if slices.ContainsFunc(imgs, func(im storage.Image) bool { return im.Name == img }) {
		t.Errorf("ListImages lists %s after its import failed", img)
	}
}

func (s *storageCheck) listsVolume(t *testing.T, name string) bool {
	t.Helper()
	vols, err := s.st.ListVolumes(s.ctx(t))
	if err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}
	return slices.ContainsFunc(vols, func(v storage.Volume) bool { return v.Name == name })
}

func (s *storageCheck) testDelete(t *testing.T) {
	ctx := s.ctx(t)
	for _, name := range []string{s.volA, s.volB} {
		if err := s.st.DeleteVolume(ctx, name); err != nil {
			t.Errorf("DeleteVolume %s: %v", name, err)
		}
		if s.listsVolume(t, name) {
			t.Errorf("ListVolumes lists %s after DeleteVolume", name)
		}
	}
	if cur := s.current(t); cur != 1 {
		if err := s.st.DeleteVersion(ctx, s.img, 1); err != nil {
			t.Errorf("DeleteVersion 1, no longer used: %v", err)
		}
	}
	if err := s.st.DeleteImage(ctx, s.img); err != nil {
		t.Fatalf("DeleteImage %s: %v", s.img, err)
	}
	imgs, err := s.st.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if slices.ContainsFunc(imgs, func(im storage.Image) bool { return im.Name == s.img }) {
		t.Errorf("ListImages lists %s after DeleteImage", s.img)
	}
	if _, err := s.st.ListVersions(ctx, s.img); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ListVersions of a deleted image: got %v, want storage.ErrNotFound", err)
	}
}

// cleanup removes what a failed run left behind, ignoring errors.
func (s *storageCheck) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), storageStepTimeout)
	defer cancel()
	vols, _ := s.st.ListVolumes(ctx)
	for _, v := range vols {
		if v.Image == s.img || strings.HasSuffix(v.Name, s.sfx) {
			_ = s.st.Detach(ctx, v.Name)
			_ = s.st.DeleteVolume(ctx, v.Name)
		}
	}
	_ = s.st.DeleteImage(ctx, s.img)
	if t.Failed() {
		t.Logf("storage checks used image %s and volumes pt-*-%s", s.img, s.sfx)
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// patterned returns n bytes of seeded pseudo-random data: no zero runs a
// storage could keep sparse, and different for each seed.
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
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}
