package plugintest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
)

// The storage suite's subtests. Each makes its own images and volumes, so
// that one failing leaves the others meaningful.

func (r *storageRun) testImport(t *testing.T) {
	im := &suiteImage{name: r.name("import"), content: map[uint64][]byte{}}
	data := r.data()
	type report struct{ done, total int64 }
	var reports []report
	v, err := r.st.ImportImage(r.ctx(t), storage.ImportRequest{
		Image: im.name, Source: r.source(t, "import-1", data),
		Progress: func(done, total int64) { reports = append(reports, report{done, total}) },
	})
	if err != nil {
		t.Fatalf("ImportImage %s: %v", im.name, err)
	}

	t.Run("new_image_is_version_1_current", func(t *testing.T) {
		if v.Number != 1 {
			t.Errorf("ImportImage of a new image = %+v, want version 1", v)
		}
		r.added(t, im, "ImportImage", v, data)
	})
	t.Run("progress_never_goes_back_and_ends_at_total", func(t *testing.T) {
		if len(reports) == 0 {
			t.Fatal("ImportImage never called Progress")
		}
		for i, p := range reports {
			switch {
			case p.total != StorageImageSize:
				t.Errorf("progress report %d: %d of %d bytes, want a total of %d", i, p.done, p.total, StorageImageSize)
			case p.done < 0 || p.done > p.total:
				t.Errorf("progress report %d: %d of %d bytes", i, p.done, p.total)
			case i > 0 && p.done < reports[i-1].done:
				t.Errorf("progress went back from %d to %d bytes", reports[i-1].done, p.done)
			}
		}
		if last := reports[len(reports)-1]; last.done != last.total {
			t.Errorf("last progress report: %d of %d bytes, want done = total", last.done, last.total)
		}
	})
	t.Run("clone_is_byte_identical_to_source", func(t *testing.T) {
		vol := r.name("import-clone")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, data)
	})
	t.Run("reimport_makes_next_version_current", func(t *testing.T) {
		if im.current != 1 {
			t.Skip("the first import failed")
		}
		if n := r.importVersion(t, im); n != 2 {
			t.Errorf("ImportImage of an existing image with version 1 made version %d, want 2", n)
		}
		vol := r.name("import-clone2")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, im.content[im.current])
	})
}

func (r *storageRun) testVersions(t *testing.T) {
	im := r.newImage(t, "versions")
	running := r.name("versions-running")
	r.createVolume(t, running, im, 0)
	client := r.open(t, running)
	defer r.close(t, running, client)
	seen := im.content[1]

	t.Run("create_version_snapshots_current", func(t *testing.T) {
		n := r.createVersion(t, im)
		vol := r.name("versions-snap")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, im.content[n])
	})
	t.Run("new_volumes_clone_current_version", func(t *testing.T) {
		n := r.importVersion(t, im)
		vol := r.name("versions-new")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, im.content[n])
	})
	t.Run("running_client_keeps_its_version", func(t *testing.T) {
		wantContent(t, running+" (attached since version 1)", client, seen)
		if v, ok := r.listedVolume(t, running); !ok || v.Version != 1 {
			t.Errorf("ListVolumes lists %+v (listed: %v), want %s still on version 1", v, ok, running)
		}
	})
	t.Run("volumes_clone_any_kept_version", func(t *testing.T) {
		for _, n := range slices.Clone(im.versions) {
			vol := r.name("versions-pick-" + strconv.FormatUint(n, 10))
			r.createVolume(t, vol, im, n)
			r.wantVolume(t, vol, im.content[n])
		}
	})
	t.Run("rollback_to_any_kept_version", func(t *testing.T) {
		latest := im.current
		for _, n := range slices.Clone(im.versions) {
			r.setCurrent(t, im, n)
			vol := r.name("versions-rb-" + strconv.FormatUint(n, 10))
			r.createVolume(t, vol, im, 0)
			r.wantVolume(t, vol, im.content[n])
		}
		r.setCurrent(t, im, latest)
		wantContent(t, running+" (attached during rollbacks)", client, seen)
	})
}

func (r *storageRun) testNumbersNotReused(t *testing.T) {
	im := r.newImage(t, "numbers")
	r.importVersion(t, im)
	// Hold version 2, so that pruning cannot take it.
	r.createVolume(t, r.name("numbers-hold"), im, 2)
	three := r.createVersion(t, im)
	r.setCurrent(t, im, 2)
	if err := r.st.DeleteVersion(r.ctx(t), im.name, three); err != nil {
		t.Fatalf("DeleteVersion %s %d, neither current nor used: %v", im.name, three, err)
	}
	im.versions = slices.DeleteFunc(im.versions, func(n uint64) bool { return n == three })
	r.checkVersions(t, im)
	// added checks that the number is above every number the image had.
	r.createVersion(t, im)
}

func (r *storageRun) testKeepVersions(t *testing.T) {
	n := r.cfg.KeepVersions
	if n <= 0 {
		t.Skip("StorageSuite.KeepVersions is 0: the plugin keeps every version")
	}
	im := r.newImage(t, "keep")
	hold := r.name("keep-hold")
	r.createVolume(t, hold, im, 1)
	// exactly checks that the image holds its newest n versions and those
	// named, nothing else.
	exactly := func(t *testing.T, also ...uint64) {
		t.Helper()
		vs := r.checkVersions(t, im)
		want := slices.Clone(also)
		for _, v := range im.versions[max(0, len(im.versions)-n):] {
			if !slices.Contains(want, v) {
				want = append(want, v)
			}
		}
		slices.Sort(want)
		var got []uint64
		for _, v := range vs {
			got = append(got, v.Number)
		}
		if !slices.Equal(got, want) {
			t.Errorf("ListVersions %s = %s, want %v: the newest %d (KeepVersions), and %v in use", im.name, numbers(vs), want, n, also)
		}
	}
	t.Run("old_versions_are_pruned_except_in_use", func(t *testing.T) {
		for range n + 2 {
			r.importVersion(t, im)
		}
		exactly(t, 1)
		r.wantVolume(t, hold, im.content[1])
	})
	t.Run("rollback_to_oldest_kept_version", func(t *testing.T) {
		if len(im.versions) < n {
			t.Fatalf("image %s has versions %v, fewer than KeepVersions %d", im.name, im.versions, n)
		}
		oldest := im.versions[len(im.versions)-n]
		r.setCurrent(t, im, oldest)
		vol := r.name("keep-rb")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, im.content[oldest])
		r.deleteVolume(t, vol)
	})
	t.Run("version_is_pruned_once_unused", func(t *testing.T) {
		r.deleteVolume(t, hold)
		r.importVersion(t, im)
		exactly(t)
	})
}

func (r *storageRun) testIsolation(t *testing.T) {
	im := r.newImage(t, "iso")
	orig := im.content[1]
	a, b := r.name("iso-a"), r.name("iso-b")
	r.createVolume(t, a, im, 0)
	r.createVolume(t, b, im, 0)
	va, vb := r.open(t, a), r.open(t, b)
	wroteA := r.scribble(t, a, va, orig)

	t.Run("write_is_seen_by_its_volume_only", func(t *testing.T) {
		wantContent(t, a+" (after writing to it)", va, wroteA)
		wantContent(t, b+" (after a write to "+a+")", vb, orig)
		wroteB := r.scribble(t, b, vb, orig)
		wantContent(t, a+" (after a write to "+b+")", va, wroteA)
		wantContent(t, b+" (after writing to it)", vb, wroteB)
	})
	t.Run("fresh_clone_sees_the_image", func(t *testing.T) {
		c := r.name("iso-c")
		r.createVolume(t, c, im, 0)
		r.wantVolume(t, c, orig)
	})
	t.Run("image_is_unchanged", func(t *testing.T) {
		// The image's current content, as a new version and as a clone of
		// the version the writers were cloned from.
		r.createVersion(t, im)
		d := r.name("iso-d")
		r.createVolume(t, d, im, 0)
		r.wantVolume(t, d, orig)
		e := r.name("iso-e")
		r.createVolume(t, e, im, 1)
		r.wantVolume(t, e, orig)
	})
	t.Run("volume_keeps_writes_across_detach", func(t *testing.T) {
		r.close(t, a, va)
		va = nil
		r.wantVolume(t, a, wroteA)
	})
	if va != nil {
		r.close(t, a, va)
	}
	r.close(t, b, vb)
}

func (r *storageRun) testReset(t *testing.T) {
	im := r.newImage(t, "reset")
	a := r.name("reset-a")
	r.createVolume(t, a, im, 0)
	write := func(t *testing.T) {
		t.Helper()
		v := r.open(t, a)
		r.scribble(t, a, v, im.content[1])
		r.close(t, a, v)
	}

	t.Run("discards_writes", func(t *testing.T) {
		write(t)
		r.resetVolume(t, a, im, 0)
		r.wantVolume(t, a, im.content[1])
	})
	t.Run("takes_the_current_version", func(t *testing.T) {
		write(t)
		n := r.importVersion(t, im)
		if v, ok := r.listedVolume(t, a); !ok || v.Version != 1 {
			t.Errorf("ListVolumes lists %+v (listed: %v), want %s still on version 1 until reset", v, ok, a)
		}
		r.resetVolume(t, a, im, 0)
		r.wantVolume(t, a, im.content[n])
	})
	t.Run("to_a_chosen_version", func(t *testing.T) {
		// Hold version 1, so that pruning cannot take it.
		r.createVolume(t, r.name("reset-hold"), im, 1)
		write(t)
		r.resetVolume(t, a, im, 1)
		r.wantVolume(t, a, im.content[1])
	})
}

func (r *storageRun) testPromote(t *testing.T) {
	im := r.newImage(t, "promote")
	a, b := r.name("promote-a"), r.name("promote-b")
	r.createVolume(t, a, im, 0)
	r.createVolume(t, b, im, 0)

	if !r.promote {
		_, err := r.st.Promote(r.ctx(t), a, im.name)
		wantErr(t, "Promote by a plugin that does not advertise the promote capability", err, nil)
		r.checkVersions(t, im)
		t.Skip("the plugin does not advertise the promote capability; checked that it refuses Promote")
	}

	orig := im.content[1]
	va := r.open(t, a)
	wroteA := r.scribble(t, a, va, orig)
	r.close(t, a, va)
	vb := r.open(t, b)
	bOpen := true
	defer func() {
		if bOpen {
			r.close(t, b, vb)
		}
	}()
	promote := func(t *testing.T, vol string, im *suiteImage, content []byte) uint64 {
		t.Helper()
		v, err := r.st.Promote(r.ctx(t), vol, im.name)
		if err != nil {
			t.Fatalf("Promote %s to image %s: %v", vol, im.name, err)
		}
		return r.added(t, im, "Promote", v, content)
	}

	var promoted uint64
	t.Run("detached_volume_becomes_current_version", func(t *testing.T) {
		promoted = promote(t, a, im, wroteA)
		vol := r.name("promote-new")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, wroteA)
	})
	t.Run("promoted_volume_keeps_its_content", func(t *testing.T) {
		if _, ok := r.listedVolume(t, a); !ok {
			t.Fatalf("ListVolumes does not list %s after promoting it", a)
		}
		r.wantVolume(t, a, wroteA)
	})
	t.Run("running_client_keeps_its_version", func(t *testing.T) {
		wantContent(t, b+" (attached during the promotion of "+a+")", vb, orig)
		if v, ok := r.listedVolume(t, b); !ok || v.Version != 1 {
			t.Errorf("ListVolumes lists %+v (listed: %v), want %s still on version 1", v, ok, b)
		}
	})
	t.Run("client_gets_promoted_version_on_reset", func(t *testing.T) {
		if promoted == 0 {
			t.Skip("the promotion failed")
		}
		r.close(t, b, vb)
		bOpen = false
		if v := r.resetVolume(t, b, im, 0); v.Version != promoted {
			t.Errorf("ResetVolume %s = version %d, want the promoted %d", b, v.Version, promoted)
		}
		r.wantVolume(t, b, wroteA)
	})
	t.Run("into_another_existing_image", func(t *testing.T) {
		other := r.newImage(t, "promote-other")
		promote(t, a, other, wroteA)
		vol := r.name("promote-other-new")
		r.createVolume(t, vol, other, 0)
		r.wantVolume(t, vol, wroteA)
		r.checkVersions(t, im)
	})
	t.Run("into_a_new_image_creates_it_or_is_not_found", func(t *testing.T) {
		name := r.name("promote-fresh")
		v, err := r.st.Promote(r.ctx(t), a, name)
		if err != nil {
			wantErr(t, "Promote "+a+" to image "+name+", which does not exist", err, storage.ErrNotFound, name)
			r.wantNoImage(t, name, "a refused promotion")
			return
		}
		if v.Number != 1 {
			t.Errorf("Promote %s to the new image %s = %+v, want version 1", a, name, v)
		}
		fresh := &suiteImage{name: name, content: map[uint64][]byte{}}
		r.added(t, fresh, "Promote", v, wroteA)
	})
	t.Run("attached_volume_is_promoted_as_flushed_or_refused", func(t *testing.T) {
		va := r.open(t, a)
		defer r.close(t, a, va)
		flushed := r.scribble(t, a, va, wroteA)
		v, err := r.st.Promote(r.ctx(t), a, im.name)
		if err != nil {
			wantErr(t, "Promote of attached volume "+a, err, storage.ErrInUse, a)
			r.checkVersions(t, im)
			return
		}
		r.added(t, im, "Promote of an attached volume", v, flushed)
		vol := r.name("promote-attached")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, flushed)
	})
}

func (r *storageRun) testCapacity(t *testing.T) {
	im := r.newImage(t, "capacity")
	c, err := r.st.Capacity(r.ctx(t))
	if err != nil {
		t.Fatalf("Capacity: %v", err)
	}
	if c.Used <= 0 || c.Available <= 0 {
		t.Errorf("Capacity = %+v with an image stored, want used and available above zero", c)
	}
	t.Run("clones_are_cheap", func(t *testing.T) {
		if !r.cfg.CheapClones {
			t.Skip("StorageSuite.CheapClones is false: clones may be full copies")
		}
		const clones = 4
		for i := range clones {
			r.createVolume(t, r.name("capacity-"+strconv.Itoa(i)), im, 0)
		}
		after, err := r.st.Capacity(r.ctx(t))
		if err != nil {
			t.Fatalf("Capacity: %v", err)
		}
		if grew := after.Used - c.Used; grew >= StorageImageSize {
			t.Errorf("used space grew by %d bytes for %d clones of a %d-byte image, want less than one image (CheapClones)",
				grew, clones, StorageImageSize)
		}
	})
}

func (r *storageRun) testConcurrentClones(t *testing.T) {
	im := r.newImage(t, "many")
	orig := im.content[1]

	t.Run("16_distinct_volumes_at_once", func(t *testing.T) {
		const n = 16
		names := make([]string, n)
		for i := range names {
			names[i] = r.name(fmt.Sprintf("many-%02d", i))
		}
		ctx := r.ctx(t)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, vol := range names {
			wg.Go(func() {
				_, errs[i] = r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: im.name})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("CreateVolume %s, with %d others at once: %v", names[i], n-1, err)
			}
		}
		if t.Failed() {
			return
		}
		for _, vol := range names {
			if v, ok := r.listedVolume(t, vol); !ok || v.Image != im.name || v.Version != 1 {
				t.Errorf("ListVolumes lists %+v (listed: %v), want %s of %s version 1", v, ok, vol, im.name)
			}
		}
		// Attach all and write each one's name at once: every volume must
		// hold the image and then only its own write.
		descs := make([]volume.Descriptor, n)
		for i, vol := range names {
			wg.Go(func() {
				descs[i], errs[i] = r.st.Attach(ctx, vol)
				if errs[i] != nil {
					return
				}
				v, err := openDescriptor(vol, descs[i])
				if err != nil {
					errs[i] = err
					return
				}
				defer v.Close()
				if err := checkContent(v, orig); err != nil {
					errs[i] = fmt.Errorf("volume %s: %w", vol, err)
					return
				}
				if _, err := v.WriteAt([]byte(vol), 0); err != nil {
					errs[i] = fmt.Errorf("write volume %s: %w", vol, err)
					return
				}
				errs[i] = v.Flush()
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		paths := map[string]string{}
		for i, d := range descs {
			if len(d.Paths) == 0 {
				continue
			}
			if other, ok := paths[d.Paths[0]]; ok {
				t.Errorf("volumes %s and %s share the path %s", other, names[i], d.Paths[0])
			}
			paths[d.Paths[0]] = names[i]
		}
		for i, vol := range names {
			v, err := openDescriptor(vol, descs[i])
			if err != nil {
				continue
			}
			want := slices.Concat([]byte(vol), orig[len(vol):])
			wantContent(t, vol+" (after 16 volumes each wrote their name)", v, want)
			_ = v.Close()
		}
		for i, vol := range names {
			wg.Go(func() {
				if errs[i] = r.st.Detach(ctx, vol); errs[i] == nil {
					errs[i] = r.st.DeleteVolume(ctx, vol)
				}
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("Detach and DeleteVolume %s, with %d others at once: %v", names[i], n-1, err)
			}
			if _, ok := r.listedVolume(t, names[i]); ok {
				t.Errorf("ListVolumes lists %s after DeleteVolume", names[i])
			}
		}
	})
	t.Run("8_creations_of_one_name_make_one_volume", func(t *testing.T) {
		const n = 8
		vol := r.name("many-one")
		ctx := r.ctx(t)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, errs[i] = r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: im.name})
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else {
				wantErr(t, "CreateVolume "+vol+" losing a race", err, storage.ErrExists, vol)
			}
		}
		if won != 1 {
			t.Errorf("%d of %d concurrent creations of volume %s succeeded, want 1", won, n, vol)
		}
		vols, err := r.st.ListVolumes(ctx)
		if err != nil {
			t.Fatalf("ListVolumes: %v", err)
		}
		if got := len(slices.DeleteFunc(vols, func(v storage.Volume) bool { return v.Name != vol })); got != 1 {
			t.Errorf("ListVolumes lists %s %d times, want once", vol, got)
		}
		if won > 0 {
			r.wantVolume(t, vol, orig)
		}
	})
}

func (r *storageRun) testRefusals(t *testing.T) {
	im := r.newImage(t, "refuse")
	t.Run("invalid_names", func(t *testing.T) { r.testInvalidNames(t, im) })
	t.Run("valid_names_at_the_limits", r.testValidNames)
	t.Run("bad_sources", r.testBadSources)
	t.Run("duplicate_volume", func(t *testing.T) { r.testDuplicateVolume(t, im) })
	t.Run("in_use", r.testInUse)
	t.Run("not_found", func(t *testing.T) { r.testNotFound(t, im) })
}

// invalidNames are names every plugin must refuse with ErrInvalidName.
var invalidNames = []string{
	"", ".", "..", "../x", "a/b", "/abs", "x/..", "Upper", "-dash", ".hidden", "a b", "é",
	strings.Repeat("a", 65),
}

func (r *storageRun) testInvalidNames(t *testing.T, im *suiteImage) {
	ctx := r.ctx(t)
	src := r.source(t, "bad-names", im.content[1])
	vol := r.name("refuse-good")
	for _, bad := range invalidNames {
		calls := []struct {
			what string
			err  error
		}{
			{"ImportImage", firstErr(r.st.ImportImage(ctx, storage.ImportRequest{Image: bad, Source: src}))},
			{"CreateVolume (volume name)", firstErr(r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: bad, Image: im.name}))},
			{"CreateVolume (image name)", firstErr(r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: bad}))},
			{"ResetVolume", firstErr(r.st.ResetVolume(ctx, storage.VolumeRequest{Volume: bad, Image: im.name}))},
			{"Attach", firstErr(r.st.Attach(ctx, bad))},
			{"Detach", r.st.Detach(ctx, bad)},
			{"DeleteVolume", r.st.DeleteVolume(ctx, bad)},
			{"DeleteImage", r.st.DeleteImage(ctx, bad)},
			{"ListVersions", firstErr(r.st.ListVersions(ctx, bad))},
			{"CreateVersion", firstErr(r.st.CreateVersion(ctx, bad))},
			{"DeleteVersion", r.st.DeleteVersion(ctx, bad, 1)},
			{"SetCurrentVersion", r.st.SetCurrentVersion(ctx, bad, 1)},
		}
		if r.promote {
			calls = append(calls,
				struct {
					what string
					err  error
				}{"Promote (volume name)", firstErr(r.st.Promote(ctx, bad, im.name))},
				struct {
					what string
					err  error
				}{"Promote (image name)", firstErr(r.st.Promote(ctx, vol, bad))})
		}
		for _, c := range calls {
			wantErr(t, fmt.Sprintf("%s with name %q", c.what, bad), c.err, storage.ErrInvalidName, bad)
		}
	}
	if _, ok := r.listedVolume(t, vol); ok {
		t.Errorf("ListVolumes lists %s after its creation from an invalid image name was refused", vol)
	}
	imgs, err := r.st.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	for _, x := range imgs {
		if storage.ValidName(x.Name) != nil {
			t.Errorf("ListImages lists %q, an invalid name", x.Name)
		}
	}
	vols, err := r.st.ListVolumes(ctx)
	if err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}
	for _, x := range vols {
		if storage.ValidName(x.Name) != nil {
			t.Errorf("ListVolumes lists %q, an invalid name", x.Name)
		}
	}
}

func (r *storageRun) testValidNames(t *testing.T) {
	long := r.name("")
	long += strings.Repeat("x", 64-len(long))
	im := &suiteImage{name: long, content: map[uint64][]byte{}}
	r.importVersion(t, im)
	r.createVolume(t, long[:63]+"v", im, 0)
	odd := "0" + r.sfx + ".ct_odd-name"
	odd += strings.Repeat("9", 64-len(odd))
	r.createVolume(t, odd, im, 0)
	// Not named ct-<suffix>-*: delete it here.
	r.deleteVolume(t, odd)
}

func (r *storageRun) testBadSources(t *testing.T) {
	ctx := r.ctx(t)
	empty := r.source(t, "empty", nil)
	sources := []struct{ what, path string }{
		{"a missing file", filepath.Join(r.scratch, "no-such-file.raw")},
		{"a directory", r.scratch},
		{"an empty file", empty},
	}
	if p, ok := shortSource(); ok {
		sources = append(sources, struct{ what, path string }{"a file that ends before its size (" + p + ")", p})
	} else {
		t.Log("no short source found (a sysfs attribute): skipping that import")
	}
	for i, s := range sources {
		name := r.name("badsrc-" + strconv.Itoa(i))
		_, err := r.st.ImportImage(ctx, storage.ImportRequest{Image: name, Source: s.path})
		wantErr(t, "ImportImage "+name+" from "+s.what, err, nil, s.path)
		r.wantNoImage(t, name, "its import from "+s.what+" failed")
	}

	// A size that is not a multiple of 512: refused, or padded to a
	// volume the target can use.
	name := r.name("badsrc-odd")
	data := r.data()[:StorageImageSize-300]
	if _, err := r.st.ImportImage(ctx, storage.ImportRequest{Image: name, Source: r.source(t, "odd", data)}); err != nil {
		r.wantNoImage(t, name, "its import from a source of "+strconv.Itoa(len(data))+" bytes failed")
		return
	}
	vol := r.name("badsrc-odd")
	if _, err := r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: name}); err != nil {
		t.Fatalf("CreateVolume %s: %v", vol, err)
	}
	got := r.readVolume(t, vol)
	if len(got) < len(data) || firstDiff(got[:len(data)], data) >= 0 {
		t.Errorf("a %d-byte source imported as %s: the volume does not start with it", len(data), name)
	}
}

// shortSource returns a regular file whose size is a positive multiple of
// 512 but whose reads end sooner, the way a source whose read fails half
// way ends: sysfs attributes say 4096 bytes and hold a few.
func shortSource() (string, bool) {
	for _, p := range []string{
		"/sys/devices/system/cpu/online",
		"/sys/devices/system/cpu/possible",
		"/sys/kernel/mm/transparent_hugepage/enabled",
		"/sys/power/state",
	} {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() <= 0 || fi.Size()%512 != 0 {
			continue
		}
		if data, err := os.ReadFile(p); err == nil && int64(len(data)) < fi.Size() {
			return p, true
		}
	}
	return "", false
}

func (r *storageRun) testDuplicateVolume(t *testing.T, im *suiteImage) {
	vol := r.name("refuse-dup")
	r.createVolume(t, vol, im, 0)
	v := r.open(t, vol)
	wrote := r.scribble(t, vol, v, im.content[1])
	r.close(t, vol, v)
	other := r.newImage(t, "refuse-dup-other")
	for _, img := range []*suiteImage{im, other} {
		_, err := r.st.CreateVolume(r.ctx(t), storage.VolumeRequest{Volume: vol, Image: img.name})
		wantErr(t, "CreateVolume "+vol+" from "+img.name+", when it exists", err, storage.ErrExists, vol)
	}
	if got, ok := r.listedVolume(t, vol); !ok || got.Image != im.name || got.Version != 1 {
		t.Errorf("ListVolumes lists %+v (listed: %v), want %s unchanged: of %s version 1", got, ok, vol, im.name)
	}
	r.wantVolume(t, vol, wrote)
}

func (r *storageRun) testInUse(t *testing.T) {
	im := r.newImage(t, "inuse")
	vol := r.name("inuse-vol")
	r.createVolume(t, vol, im, 0)
	r.importVersion(t, im)
	ctx := r.ctx(t)

	wantErr(t, "DeleteVersion 1 of "+im.name+", which a volume was cloned from",
		r.st.DeleteVersion(ctx, im.name, 1), storage.ErrInUse, im.name)
	wantErr(t, "DeleteVersion of the current version of "+im.name,
		r.st.DeleteVersion(ctx, im.name, im.current), storage.ErrInUse, im.name)
	wantErr(t, "DeleteImage "+im.name+", which has a volume",
		r.st.DeleteImage(ctx, im.name), storage.ErrInUse, im.name)
	r.checkVersions(t, im)

	v := r.open(t, vol)
	wrote := r.scribble(t, vol, v, im.content[1])
	wantErr(t, "DeleteVolume of attached volume "+vol, r.st.DeleteVolume(ctx, vol), storage.ErrInUse, vol)
	// A reset would replace the file a running target has open (see the
	// promises in package volume's documentation).
	wantErr(t, "ResetVolume of attached volume "+vol,
		firstErr(r.st.ResetVolume(ctx, storage.VolumeRequest{Volume: vol, Image: im.name})), storage.ErrInUse, vol)
	wantContent(t, vol+" (after refused deletion and reset)", v, wrote)
	r.close(t, vol, v)
	if got, ok := r.listedVolume(t, vol); !ok || got.Version != 1 {
		t.Errorf("ListVolumes lists %+v (listed: %v), want %s still on version 1", got, ok, vol)
	}
	r.wantVolume(t, vol, wrote)

	// Once its volume is gone, the version can go (unless pruning took it).
	r.deleteVolume(t, vol)
	err := r.st.DeleteVersion(ctx, im.name, 1)
	if err != nil && (r.cfg.KeepVersions == 0 || !errors.Is(err, storage.ErrNotFound)) {
		t.Errorf("DeleteVersion 1 of %s, no longer used nor current: %v", im.name, err)
	}
}

func (r *storageRun) testNotFound(t *testing.T, im *suiteImage) {
	vol, img, have := r.name("nf-vol"), r.name("nf-img"), r.name("nf-have")
	r.createVolume(t, have, im, 0)
	ctx := r.ctx(t)
	calls := []struct {
		what  string
		err   error
		names []string
	}{
		{"Attach of a missing volume", firstErr(r.st.Attach(ctx, vol)), []string{vol}},
		{"DeleteVolume of a missing volume", r.st.DeleteVolume(ctx, vol), []string{vol}},
		{"ResetVolume of a missing volume", firstErr(r.st.ResetVolume(ctx, storage.VolumeRequest{Volume: vol, Image: im.name})), []string{vol}},
		{"ResetVolume to a missing version", firstErr(r.st.ResetVolume(ctx, storage.VolumeRequest{Volume: have, Image: im.name, Version: 999})), []string{have}},
		{"ResetVolume to a missing image", firstErr(r.st.ResetVolume(ctx, storage.VolumeRequest{Volume: have, Image: img})), []string{have}},
		{"CreateVolume from a missing image", firstErr(r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: img})), []string{img}},
		{"CreateVolume from a missing version", firstErr(r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: im.name, Version: 999})), []string{im.name}},
		{"ListVersions of a missing image", firstErr(r.st.ListVersions(ctx, img)), []string{img}},
		{"DeleteImage of a missing image", r.st.DeleteImage(ctx, img), []string{img}},
		{"CreateVersion of a missing image", firstErr(r.st.CreateVersion(ctx, img)), []string{img}},
		{"DeleteVersion of a missing image", r.st.DeleteVersion(ctx, img, 1), []string{img}},
		{"DeleteVersion of a missing version", r.st.DeleteVersion(ctx, im.name, 999), []string{im.name, "999"}},
		{"SetCurrentVersion of a missing image", r.st.SetCurrentVersion(ctx, img, 1), []string{img}},
		{"SetCurrentVersion to a missing version", r.st.SetCurrentVersion(ctx, im.name, 999), []string{im.name, "999"}},
	}
	if r.promote {
		calls = append(calls, struct {
			what  string
			err   error
			names []string
		}{"Promote of a missing volume", firstErr(r.st.Promote(ctx, vol, im.name)), []string{vol}})
	}
	for _, c := range calls {
		wantErr(t, c.what, c.err, storage.ErrNotFound, c.names...)
	}
	if _, ok := r.listedVolume(t, vol); ok {
		t.Errorf("ListVolumes lists %s after refused creations", vol)
	}
	r.wantNoImage(t, img, "operations on it were refused")
	r.checkVersions(t, im)
}

func (r *storageRun) testNoSpace(t *testing.T) {
	if r.cfg.Full == nil {
		t.Skip("StorageSuite.Full is not set")
	}
	st := r.cfg.Full(t)
	ctx := r.ctx(t)
	capacity := func(t *testing.T) storage.Capacity {
		t.Helper()
		c, err := st.Capacity(ctx)
		if err != nil {
			t.Fatalf("Capacity of Full's storage: %v", err)
		}
		return c
	}
	before := capacity(t)
	if before.Available <= 0 || before.Available > 1<<30 {
		t.Fatalf("Full's storage has %d bytes available, want some and at most 1 GiB", before.Available)
	}
	// What a failed operation may keep, at most: a little metadata.
	slack := max(256<<10, before.Available/32)
	// wantSpaceBack waits a little for the storage to free what a failed
	// operation wrote (ZFS frees asynchronously).
	wantSpaceBack := func(t *testing.T, after string) {
		t.Helper()
		var c storage.Capacity
		for range 50 {
			if c = capacity(t); c.Available >= before.Available-slack && c.Used <= before.Used+slack {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if c.Available < before.Available-slack || c.Used > before.Used+slack {
			t.Errorf("after %s, Capacity = %+v, was %+v: space was not given back", after, c, before)
		}
	}

	t.Run("import_bigger_than_the_space", func(t *testing.T) {
		size := (before.Available + before.Available/4 + 2<<20) &^ (1<<20 - 1)
		name := r.name("full-big")
		src := r.source(t, "full-big", patterned(r.seed.Add(1), int(size)))
		defer os.Remove(src)
		_, err := st.ImportImage(ctx, storage.ImportRequest{Image: name, Source: src})
		wantErr(t, fmt.Sprintf("ImportImage %s of %d bytes into %d available", name, size, before.Available), err, storage.ErrNoSpace, name)
		if slices.ContainsFunc(listImages(t, st), func(im storage.Image) bool { return im.Name == name }) {
			t.Errorf("ListImages lists %s after its import ran out of space", name)
		}
		wantSpaceBack(t, "an import that ran out of space")
	})
	t.Run("clone_bigger_than_the_space", func(t *testing.T) {
		if r.cfg.CheapClones {
			t.Skip("StorageSuite.CheapClones is true: a clone takes no space to speak of")
		}
		name, vol := r.name("full-fits"), r.name("full-clone")
		size := (before.Available * 3 / 5) &^ 4095
		src := r.source(t, "full-fits", patterned(r.seed.Add(1), int(size)))
		defer os.Remove(src)
		if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: name, Source: src}); err != nil {
			t.Fatalf("ImportImage %s of %d bytes into %d available: %v", name, size, before.Available, err)
		}
		_, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: name})
		wantErr(t, fmt.Sprintf("CreateVolume %s, a copy of %d bytes, with less left", vol, size), err, storage.ErrNoSpace, vol)
		vols, lerr := st.ListVolumes(ctx)
		if lerr != nil {
			t.Fatalf("ListVolumes: %v", lerr)
		}
		if slices.ContainsFunc(vols, func(v storage.Volume) bool { return v.Name == vol }) {
			t.Errorf("ListVolumes lists %s after its creation ran out of space", vol)
			_ = st.DeleteVolume(ctx, vol)
		}
		if err := st.DeleteImage(ctx, name); err != nil {
			t.Fatalf("DeleteImage %s: %v", name, err)
		}
		wantSpaceBack(t, "a clone that ran out of space and the deletion of its image")
	})
	t.Run("storage_works_again", func(t *testing.T) {
		name := r.name("full-after")
		size := min(StorageImageSize, before.Available/4) &^ 4095
		if _, err := st.ImportImage(ctx, storage.ImportRequest{Image: name, Source: r.source(t, "full-after", patterned(r.seed.Add(1), int(size)))}); err != nil {
			t.Fatalf("ImportImage %s of %d bytes, after running out of space: %v", name, size, err)
		}
		if err := st.DeleteImage(ctx, name); err != nil {
			t.Errorf("DeleteImage %s: %v", name, err)
		}
	})
}

func listImages(t *testing.T, st *StorageClient) []storage.Image {
	t.Helper()
	imgs, err := st.ListImages(t.Context())
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	return imgs
}

// restartState is what before_restart made, for after_restart to check.
type restartState struct {
	im             *suiteImage
	attached, idle string
	wroteA, wroteI []byte
	failed         string
	versions       []storage.Version
	volumes        map[string]storage.Volume
}

func (r *storageRun) testBeforeRestart(t *testing.T) {
	if r.cfg.Restart == nil {
		t.Skip("StorageSuite.Restart is not set")
	}
	rs := &restartState{im: r.newImage(t, "restart"), volumes: map[string]storage.Volume{}}
	im := rs.im
	rs.attached, rs.idle = r.name("restart-attached"), r.name("restart-idle")
	r.createVolume(t, rs.idle, im, 1) // holds version 1 against pruning
	r.importVersion(t, im)
	r.setCurrent(t, im, 1)
	r.createVolume(t, rs.attached, im, 2)

	vi := r.open(t, rs.idle)
	rs.wroteI = r.scribble(t, rs.idle, vi, im.content[1])
	r.close(t, rs.idle, vi)
	// The attached volume stays attached through the restart, written and
	// flushed, as a running client's would.
	va := r.open(t, rs.attached)
	rs.wroteA = r.scribble(t, rs.attached, va, im.content[2])
	if err := va.Close(); err != nil {
		t.Fatalf("close volume %s: %v", rs.attached, err)
	}

	if p, ok := shortSource(); ok {
		rs.failed = r.name("restart-failed")
		_, err := r.st.ImportImage(r.ctx(t), storage.ImportRequest{Image: rs.failed, Source: p})
		wantErr(t, "ImportImage "+rs.failed+" from a file that ends before its size", err, nil)
		r.wantNoImage(t, rs.failed, "its import failed")
	}

	rs.versions = r.checkVersions(t, im)
	for _, vol := range []string{rs.attached, rs.idle} {
		rs.volumes[vol], _ = r.listedVolume(t, vol)
	}
	r.restart = rs
}

func (r *storageRun) testAfterRestart(t *testing.T) {
	rs := r.restart
	if rs == nil {
		t.Skip("before_restart was skipped or failed")
	}
	im := rs.im
	t.Run("images_and_versions_survive", func(t *testing.T) {
		if vs := r.checkVersions(t, im); !slices.EqualFunc(vs, rs.versions, func(a, b storage.Version) bool {
			return a.Number == b.Number && a.Current == b.Current && a.Size == b.Size && a.Created.Equal(b.Created)
		}) {
			t.Errorf("ListVersions %s after the restart = %+v, before = %+v", im.name, vs, rs.versions)
		}
		if rs.failed != "" {
			r.wantNoImage(t, rs.failed, "its import failed and the plugin restarted")
		}
	})
	t.Run("volumes_and_their_writes_survive", func(t *testing.T) {
		for vol, want := range rs.volumes {
			if got, ok := r.listedVolume(t, vol); !ok || got != want {
				t.Errorf("ListVolumes lists %+v (listed: %v) after the restart, want %+v", got, ok, want)
			}
		}
		r.wantVolume(t, rs.attached, rs.wroteA)
		r.wantVolume(t, rs.idle, rs.wroteI)
	})
	t.Run("in_use_rules_survive", func(t *testing.T) {
		ctx := r.ctx(t)
		wantErr(t, "DeleteVersion 2 of "+im.name+", which a volume was cloned from, after the restart",
			r.st.DeleteVersion(ctx, im.name, 2), storage.ErrInUse, im.name)
		wantErr(t, "DeleteVersion of the current version of "+im.name+" after the restart",
			r.st.DeleteVersion(ctx, im.name, im.current), storage.ErrInUse, im.name)
		v := r.open(t, rs.idle)
		wantErr(t, "DeleteVolume of attached volume "+rs.idle+" after the restart",
			r.st.DeleteVolume(ctx, rs.idle), storage.ErrInUse, rs.idle)
		r.close(t, rs.idle, v)
	})
	t.Run("numbers_continue", func(t *testing.T) {
		r.createVersion(t, im)
		vol := r.name("restart-new")
		r.createVolume(t, vol, im, 0)
		r.wantVolume(t, vol, im.content[im.current])
	})
}

func (r *storageRun) testDelete(t *testing.T) {
	im := r.newImage(t, "delete")
	vol := r.name("delete-vol")
	r.createVolume(t, vol, im, 0)
	r.importVersion(t, im)
	ctx := r.ctx(t)

	if err := r.st.DeleteVolume(ctx, vol); err != nil {
		t.Fatalf("DeleteVolume %s: %v", vol, err)
	}
	if _, ok := r.listedVolume(t, vol); ok {
		t.Errorf("ListVolumes lists %s after DeleteVolume", vol)
	}
	wantErr(t, "Attach of deleted volume "+vol, firstErr(r.st.Attach(ctx, vol)), storage.ErrNotFound, vol)

	// Version 1 current, version 2 the newest: no pruning can take either.
	r.setCurrent(t, im, 1)
	if err := r.st.DeleteVersion(ctx, im.name, 2); err != nil {
		t.Fatalf("DeleteVersion 2 of %s, neither used nor current: %v", im.name, err)
	}
	im.versions = slices.DeleteFunc(im.versions, func(n uint64) bool { return n == 2 })
	r.checkVersions(t, im)
	wantErr(t, "CreateVolume from deleted version 2 of "+im.name,
		firstErr(r.st.CreateVolume(ctx, storage.VolumeRequest{Volume: vol, Image: im.name, Version: 2})), storage.ErrNotFound, im.name)

	if err := r.st.DeleteImage(ctx, im.name); err != nil {
		t.Fatalf("DeleteImage %s: %v", im.name, err)
	}
	r.wantNoImage(t, im.name, "DeleteImage")
	wantErr(t, "DeleteImage of deleted image "+im.name, r.st.DeleteImage(ctx, im.name), storage.ErrNotFound, im.name)
}
