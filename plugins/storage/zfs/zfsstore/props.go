package zfsstore

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/sdk/storage"
)

// User properties the plugin keeps its state in. ZFS user properties need
// a colon in their name; "io.dls:" is the plugin's namespace.
const (
	// propCurrent, on an image dataset, is the number of the current
	// version.
	propCurrent = "io.dls:current"
	// propNext, on an image dataset, is the lowest number the next version
	// may get. It is set only when the newest version is deleted, so that
	// version numbers are never reused.
	propNext = "io.dls:next"
	// propDirty, on an image dataset, says its head is being written (an
	// import or a promotion in progress); one left set by a crash makes the
	// next start roll the head back to the newest version.
	propDirty = "io.dls:dirty"
	// propSize, on a version snapshot and on a volume clone, is the disk's
	// size in bytes.
	propSize = "io.dls:size"
	// propAttached, on a volume, is when it was attached; it is cleared by
	// Detach.
	propAttached = "io.dls:attached"
)

// Dataset types as the "type" property names them.
const (
	typeFilesystem = "filesystem"
	typeVolume     = "volume"
	typeSnapshot   = "snapshot"
)

// getFields is the -o argument of every `zfs get` the plugin runs.
const getFields = "name,property,value,source"

// prop is one property value from `zfs get`.
type prop struct {
	value  string
	source string // "local", "default", "-", "inherited from <dataset>", ...
}

// propTable holds `zfs get -H -p -o name,property,value,source` output: for
// each dataset, its properties.
type propTable map[string]map[string]prop

// parseGet parses the output of `zfs get -H -p -o name,property,value,source`.
// Fields are tab-separated; a value could itself hold a tab, so the name
// and property are the first two fields, the source the last, and the
// value all in between.
func parseGet(out []byte) (propTable, error) {
	t := propTable{}
	for i, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 4 {
			return nil, fmt.Errorf("zfs get output line %d: want 4 tab-separated fields (name, property, value, source), got %q", i+1, line)
		}
		name, property, source := f[0], f[1], f[len(f)-1]
		value := strings.Join(f[2:len(f)-1], "\t")
		if t[name] == nil {
			t[name] = map[string]prop{}
		}
		t[name][property] = prop{value: value, source: source}
	}
	return t, nil
}

// value returns a property of a dataset, and whether it has a value ("-"
// is ZFS's "no value").
func (t propTable) value(name, property string) (string, bool) {
	p, ok := t[name][property]
	if !ok || p.value == "-" && (p.source == "-" || p.source == "") {
		return "", false
	}
	return p.value, true
}

// local returns a property set on the dataset itself, not inherited.
// Snapshots inherit their dataset's user properties, so the plugin's state
// is always read with local.
func (t propTable) local(name, property string) (string, bool) {
	p, ok := t[name][property]
	if !ok || (p.source != "local" && p.source != "received") {
		return "", false
	}
	return p.value, true
}

// number parses a property holding a non-negative integer; 0 when missing
// or malformed.
func (t propTable) number(name, property string, local bool) uint64 {
	get := t.value
	if local {
		get = t.local
	}
	v, ok := get(name, property)
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// versionSnapshot returns the snapshot name of version n: "v<n>".
func versionSnapshot(n uint64) string { return "v" + strconv.FormatUint(n, 10) }

// parseVersionSnapshot reads a snapshot name "v<n>" (n ≥ 1, no leading
// zeros); other snapshots are not versions.
func parseVersionSnapshot(s string) (uint64, bool) {
	digits, ok := strings.CutPrefix(s, "v")
	if !ok || digits == "" || digits[0] == '0' || len(digits) > 19 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// imageInfo is one image as ZFS holds it: a dataset under <root>/images and
// its version snapshots.
type imageInfo struct {
	name    string
	dataset string
	kind    string // typeFilesystem or typeVolume
	// currentProp is io.dls:current; use current().
	currentProp uint64
	nextProp    uint64
	dirty       bool
	versions    []versionInfo // oldest first
}

type versionInfo struct {
	number  uint64
	size    int64
	created time.Time
}

// version returns version n, or nil.
func (im *imageInfo) version(n uint64) *versionInfo {
	for i := range im.versions {
		if im.versions[i].number == n {
			return &im.versions[i]
		}
	}
	return nil
}

// latest returns the newest version's number, 0 when there is none.
func (im *imageInfo) latest() uint64 {
	if len(im.versions) == 0 {
		return 0
	}
	return im.versions[len(im.versions)-1].number
}

// current returns the current version: io.dls:current when it names an
// existing version, else the newest (a crash between snapshot and set).
func (im *imageInfo) current() uint64 {
	if im.version(im.currentProp) != nil {
		return im.currentProp
	}
	return im.latest()
}

// nextNumber returns the number the next version gets: never one used
// before.
func (im *imageInfo) nextNumber() uint64 {
	return max(im.nextProp, im.latest()+1, 1)
}

func (im *imageInfo) storageVersion(v versionInfo) storage.Version {
	return storage.Version{Image: im.name, Number: v.number, Size: v.size, Created: v.created, Current: v.number == im.current()}
}

// imagesFrom builds the images from `zfs get -r` output over imagesDS:
// every child dataset with a valid image name, with its "v<n>" snapshots.
// Datasets and snapshots of other names are ignored. Images without a
// version (an import in progress, or one a crash interrupted) are
// included; callers decide.
func imagesFrom(t propTable, imagesDS string) map[string]*imageInfo {
	out := map[string]*imageInfo{}
	image := func(name string) *imageInfo {
		if out[name] == nil {
			out[name] = &imageInfo{name: name, dataset: imagesDS + "/" + name}
		}
		return out[name]
	}
	for name := range t {
		rest, ok := strings.CutPrefix(name, imagesDS+"/")
		if !ok {
			continue
		}
		ds, snap, isSnap := strings.Cut(rest, "@")
		if strings.Contains(ds, "/") || storage.ValidName(ds) != nil {
			continue
		}
		if !isSnap {
			kind, _ := t.value(name, "type")
			if kind != typeFilesystem && kind != typeVolume {
				continue
			}
			im := image(ds)
			im.kind = kind
			im.currentProp = t.number(name, propCurrent, true)
			im.nextProp = t.number(name, propNext, true)
			_, im.dirty = t.local(name, propDirty)
			continue
		}
		n, ok := parseVersionSnapshot(snap)
		if !ok {
			continue
		}
		created := time.Unix(int64(t.number(name, "creation", false)), 0).UTC()
		im := image(ds)
		im.versions = append(im.versions, versionInfo{number: n, size: int64(t.number(name, propSize, true)), created: created})
	}
	for name, im := range out {
		if im.kind == "" { // snapshots whose dataset was not listed
			delete(out, name)
			continue
		}
		slices.SortFunc(im.versions, func(a, b versionInfo) int { return cmp.Compare(a.number, b.number) })
	}
	return out
}

// tmpPrefix starts the names of the plugin's temporary clones under
// <root>/volumes. It can never start a volume name (see storage.ValidName).
const tmpPrefix = "_tmp-"

// volumeInfo is one volume: a clone under <root>/volumes.
type volumeInfo struct {
	name    string
	dataset string
	kind    string
	// image and version are read from the clone's origin; empty and 0 when
	// the origin is not a version of an image of this storage.
	image   string
	version uint64
	size    int64
	// attached is io.dls:attached: when it was attached, "" if it is not.
	attached   string
	mountpoint string
	mounted    bool
}

// volumesFrom builds the volumes from `zfs get -r` output over volumesDS.
// Temporary clones (tmpPrefix) are returned apart, by dataset name.
func volumesFrom(t propTable, volumesDS, imagesDS string) (vols map[string]*volumeInfo, temps []string) {
	vols = map[string]*volumeInfo{}
	for name := range t {
		rest, ok := strings.CutPrefix(name, volumesDS+"/")
		if !ok || strings.ContainsAny(rest, "/@") {
			continue
		}
		kind, _ := t.value(name, "type")
		if kind != typeFilesystem && kind != typeVolume {
			continue
		}
		if strings.HasPrefix(rest, tmpPrefix) {
			temps = append(temps, name)
			continue
		}
		if storage.ValidName(rest) != nil {
			continue
		}
		v := &volumeInfo{name: rest, dataset: name, kind: kind}
		if origin, ok := t.value(name, "origin"); ok {
			v.image, v.version = parseOrigin(origin, imagesDS)
		}
		v.size = int64(t.number(name, propSize, true))
		v.attached, _ = t.local(name, propAttached)
		v.mountpoint, _ = t.value(name, "mountpoint")
		mounted, _ := t.value(name, "mounted")
		v.mounted = mounted == "yes"
		vols[rest] = v
	}
	slices.Sort(temps)
	return vols, temps
}

// parseOrigin reads a clone's origin "<imagesDS>/<image>@v<n>".
func parseOrigin(origin, imagesDS string) (string, uint64) {
	rest, ok := strings.CutPrefix(origin, imagesDS+"/")
	if !ok {
		return "", 0
	}
	image, snap, ok := strings.Cut(rest, "@")
	if !ok || storage.ValidName(image) != nil {
		return "", 0
	}
	n, ok := parseVersionSnapshot(snap)
	if !ok {
		return "", 0
	}
	return image, n
}

// validDataset checks a ZFS filesystem name given in the config: a pool
// name and optional children, each component made of the characters ZFS
// allows, no snapshot or bookmark part.
func validDataset(name string) error {
	if name == "" {
		return fmt.Errorf("dataset name is empty")
	}
	if len(name) > 200 {
		return fmt.Errorf("dataset name %q is longer than 200 characters (ZFS allows 255, and the plugin adds children)", name)
	}
	for i, c := range strings.Split(name, "/") {
		if c == "" {
			return fmt.Errorf("dataset name %q has an empty component (leading, trailing or double slash)", name)
		}
		if c == "." || c == ".." {
			return fmt.Errorf("dataset name %q has a %q component", name, c)
		}
		for _, r := range c {
			ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-.:", r)
			if !ok {
				return fmt.Errorf("dataset name %q: character %q is not allowed (letters, digits, _ - . : only)", name, r)
			}
		}
		if first := c[0]; i == 0 && !(first >= 'a' && first <= 'z' || first >= 'A' && first <= 'Z') {
			return fmt.Errorf("dataset name %q: a pool name starts with a letter", name)
		}
	}
	return nil
}

// poolOf returns the pool a dataset lives in.
func poolOf(dataset string) string {
	pool, _, _ := strings.Cut(dataset, "/")
	return pool
}
