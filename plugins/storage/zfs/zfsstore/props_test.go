package zfsstore

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/storage"
)

// The testdata files are captured `zfs get -H -p -o name,property,value,source`
// outputs: zfs-fuse-*.txt from zfs-fuse 0.7.0 (Debian 12) over a layout
// the plugin made, openzfs-zvol-images.txt in OpenZFS's identical format
// for zvol images (with a foreign snapshot and a dataset of an invalid
// image name, which the plugin must ignore).

func readTable(t *testing.T, name string) propTable {
	t.Helper()
	out, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := parseGet(out)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func TestParseGet(t *testing.T) {
	tab, err := parseGet([]byte("a/b\tmountpoint\t/a/b\tdefault\na/b\tio.dls:note\tx\ty\tlocal\na/b\torigin\t-\t-\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := tab.value("a/b", "mountpoint"); !ok || v != "/a/b" {
		t.Errorf("mountpoint = %q, %v", v, ok)
	}
	if v, ok := tab.local("a/b", "io.dls:note"); !ok || v != "x\ty" {
		t.Errorf("a value holding a tab = %q, %v; want \"x\\ty\"", v, ok)
	}
	if _, ok := tab.value("a/b", "origin"); ok {
		t.Error(`origin "-" reads as a value`)
	}
	if _, ok := tab.local("a/b", "mountpoint"); ok {
		t.Error("a default value reads as local")
	}
	if _, err := parseGet([]byte("a/b\tmountpoint\t/a/b\n")); err == nil {
		t.Error("a line without the source field parsed")
	}
}

func TestImagesFromZFSFuse(t *testing.T) {
	ims := imagesFrom(readTable(t, "zfs-fuse-images.txt"), "dlsci/sample/images")
	if len(ims) != 2 {
		t.Fatalf("images = %v, want lab and new", ims)
	}
	lab := ims["lab"]
	if lab.dataset != "dlsci/sample/images/lab" || lab.kind != typeFilesystem || lab.dirty {
		t.Errorf("lab = %+v", lab)
	}
	var nums []uint64
	for _, v := range lab.versions {
		nums = append(nums, v.number)
		if v.size != 1<<20 || v.created != time.Unix(1795652636, 0).UTC() {
			t.Errorf("version %+v: want size 1 MiB, created at 1795652636", v)
		}
	}
	if !slices.Equal(nums, []uint64{1, 2}) { // @manual is not a version
		t.Errorf("versions = %v, want [1 2]", nums)
	}
	if lab.current() != 1 || lab.latest() != 2 || lab.nextNumber() != 3 {
		t.Errorf("current %d latest %d next %d, want 1 2 3", lab.current(), lab.latest(), lab.nextNumber())
	}
	if v := lab.storageVersion(lab.versions[0]); !v.Current || v.Image != "lab" || v.Number != 1 {
		t.Errorf("storage version = %+v", v)
	}
	if n := ims["new"]; len(n.versions) != 0 || n.current() != 0 || n.nextNumber() != 1 {
		t.Errorf("image without versions = %+v (current %d, next %d)", n, n.current(), n.nextNumber())
	}
}

func TestImagesFromOpenZFSZvols(t *testing.T) {
	ims := imagesFrom(readTable(t, "openzfs-zvol-images.txt"), "tank/dls/images")
	if len(ims) != 1 || ims["win11"] == nil {
		t.Fatalf("images = %v, want only win11 (Bad_Name is not a valid name)", ims)
	}
	w := ims["win11"]
	if w.kind != typeVolume || w.current() != 3 || w.latest() != 3 || len(w.versions) != 2 {
		t.Errorf("win11 = %+v", w)
	}
	// io.dls:next remembers that a version 4 existed.
	if w.nextNumber() != 5 {
		t.Errorf("next number = %d, want 5", w.nextNumber())
	}
	if v := w.version(1); v == nil || v.size != 64<<30 {
		t.Errorf("version 1 = %+v, want 64 GiB", v)
	}
}

func TestCurrentFallsBackToLatest(t *testing.T) {
	im := &imageInfo{name: "x", currentProp: 7, versions: []versionInfo{{number: 2}, {number: 4}}}
	if im.current() != 4 {
		t.Errorf("current with io.dls:current naming a missing version = %d, want the latest, 4", im.current())
	}
	im.currentProp = 2
	if im.current() != 2 {
		t.Errorf("current = %d, want 2", im.current())
	}
	if _, err := resolve(im, 3); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "version 3 of image x") {
		t.Errorf("resolve of a missing version: %v", err)
	}
	if v, err := resolve(im, 0); err != nil || v.number != 2 {
		t.Errorf("resolve 0 = %+v, %v; want the current, 2", v, err)
	}
}

func TestVolumesFromZFSFuse(t *testing.T) {
	vols, temps := volumesFrom(readTable(t, "zfs-fuse-volumes.txt"), "dlsci/sample/volumes", "dlsci/sample/images")
	if !slices.Equal(temps, []string{"dlsci/sample/volumes/_tmp-version-abc"}) {
		t.Errorf("temporary clones = %v", temps)
	}
	if len(vols) != 1 {
		t.Fatalf("volumes = %v, want pc-01", vols)
	}
	v := vols["pc-01"]
	want := volumeInfo{
		name: "pc-01", dataset: "dlsci/sample/volumes/pc-01", kind: typeFilesystem,
		image: "lab", version: 1, size: 1 << 20, attached: "2026-11-26T00:30:00Z",
		mountpoint: "/dlsci/sample/volumes/pc-01", mounted: true,
	}
	if *v != want {
		t.Errorf("pc-01 = %+v\nwant  %+v", *v, want)
	}
}

func TestParseOrigin(t *testing.T) {
	for origin, want := range map[string]struct {
		image string
		n     uint64
	}{
		"tank/dls/images/lab@v12":       {"lab", 12},
		"tank/dls/images/lab@v0":        {"", 0},
		"tank/dls/images/lab@v012":      {"", 0},
		"tank/dls/images/lab@manual":    {"", 0},
		"tank/dls/images/Lab@v1":        {"", 0},
		"tank/other/images/lab@v1":      {"", 0},
		"tank/dls/images/a/b@v1":        {"", 0},
		"tank/dls/images/lab":           {"", 0},
		"tank/dls/images/lab@v99999999": {"lab", 99999999},
	} {
		image, n := parseOrigin(origin, "tank/dls/images")
		if image != want.image || n != want.n {
			t.Errorf("parseOrigin(%q) = %q %d, want %q %d", origin, image, n, want.image, want.n)
		}
	}
}

func TestValidDataset(t *testing.T) {
	for _, ok := range []string{"tank", "tank/dls", "tank/a.b/c_d-e:f", "T1/x"} {
		if err := validDataset(ok); err != nil {
			t.Errorf("validDataset(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/tank", "tank/", "tank//x", "tank/x@snap", "tank/x#b", "tank/../x", "tank/.", "1tank", "tank/a b", strings.Repeat("a", 201)} {
		if err := validDataset(bad); err == nil {
			t.Errorf("validDataset(%q) accepted it", bad)
		}
	}
	if poolOf("tank/dls/x") != "tank" || poolOf("tank") != "tank" {
		t.Error("poolOf")
	}
}

// FreeBSD's zfs (OpenZFS 2.2, FreeBSD 14) prints `zfs get -H -p` as on
// Linux; openzfs-freebsd-volumes.txt is written in that format for the
// layout FreeBSD installs make (pool zroot, a zvol volume beside a file
// volume, a manual snapshot, an io.dls:attached inherited rather than
// local), not captured on a FreeBSD machine: this host cannot run one.
func TestVolumesFromOpenZFSFreeBSD(t *testing.T) {
	vols, temps := volumesFrom(readTable(t, "openzfs-freebsd-volumes.txt"), "zroot/dls/volumes", "zroot/dls/images")
	if len(temps) != 0 || len(vols) != 2 {
		t.Fatalf("volumes = %v, temporary clones %v; want lab-07 and pc-02, none", vols, temps)
	}
	want := map[string]volumeInfo{
		"lab-07": {name: "lab-07", dataset: "zroot/dls/volumes/lab-07", kind: typeVolume,
			image: "win11", version: 3, size: 64 << 30, attached: "2026-12-05T21:14:03Z"},
		"pc-02": {name: "pc-02", dataset: "zroot/dls/volumes/pc-02", kind: typeFilesystem,
			image: "lab", version: 12, size: 1 << 20, mountpoint: "/zroot/dls/volumes/pc-02", mounted: true},
	}
	for name, w := range want {
		if v := vols[name]; v == nil || *v != w {
			t.Errorf("%s = %+v\nwant %+v", name, v, w)
		}
	}
}

// The busy messages FreeBSD's zfs prints (strerror(EBUSY) is "Device
// busy" there, "Device or resource busy" on Linux) are in use, like
// Linux's.
func TestErrorKindFreeBSDMessages(t *testing.T) {
	for msg, want := range map[string]error{
		"cannot unmount '/zroot/dls/volumes/pc-02': Device busy":                  storage.ErrInUse,
		"cannot destroy 'zroot/dls/volumes/pc-02': dataset is busy":               storage.ErrInUse,
		"cannot open 'zroot/dls/volumes/nope': dataset does not exist":            storage.ErrNotFound,
		"cannot create 'zroot/dls/volumes/pc-03': out of space":                   storage.ErrNoSpace,
		"cannot create 'zroot/dls/volumes/pc-03': Disc quota exceeded":            storage.ErrNoSpace,
		"cannot create 'zroot/dls/volumes/pc-03': No space left on device":        storage.ErrNoSpace,
		"cannot create 'zroot/dls/volumes/pc-02': dataset already exists":         storage.ErrExists,
		"cannot destroy 'zroot/dls/images/lab@v1': snapshot has dependent clones": storage.ErrInUse,
	} {
		if got := errorKind(msg); got != want {
			t.Errorf("errorKind(%q) = %v, want %v", msg, got, want)
		}
	}
}
