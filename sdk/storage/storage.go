// Package storage is the plugin kind that keeps golden disk images, their
// immutable numbered versions, and per-client copy-on-write volumes.
//
// An image is imported from a raw disk file and becomes version 1. Versions
// are immutable; one of them is current, and new volumes clone it. A volume
// belongs to one client; Attach returns a volume.Descriptor that the iSCSI
// plugin opens locally, so block data never crosses gRPC.
//
// Names of images and volumes are 1-64 characters of [a-z0-9._-], starting
// with a letter or digit (see ValidName); plugins must refuse others.
//
// # Metrics
//
// A storage plugin reports these families on the registry its Metrics
// method (base.MetricsDeclarer) returns; the host adds the label
// plugin="<instance>". This list is the one reference; the plugins'
// READMEs point here.
//
//	dls_disk_images                           gauge      images held
//	dls_storage_snapshots                     gauge      image versions held
//	dls_storage_used_bytes                    gauge      bytes used by images, versions and volumes
//	dls_storage_available_bytes               gauge      bytes still available
//	dls_image_operations_total{op,result}     counter    operations, by op and result
//	dls_image_operation_duration_seconds{op}  histogram  their durations
//
// The plugin declares the gauges with NewMetrics and sets them with
// Metrics.Set. The SDK declares the two operation families on the same
// registry when it serves the plugin, and times every call of the
// operations named by the Op constants (the op label's values) around the
// plugin's method, so a plugin records none itself. result is "ok",
// "error", or "canceled" when the error wraps context.Canceled. Reads (the
// List methods, Capacity) are not counted: the host makes them all the
// time. The duration buckets are .001 .01 .1 .5 1 5 30 120 600 seconds. A
// plugin that does not implement base.MetricsDeclarer reports none of
// these.
package storage

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/volume"
)

// Storage is implemented by storage plugins.
//
// Methods may be added to Storage in later SDK versions. Embed
// Unimplemented in the plugin's type so that such an addition still
// compiles: the new method then answers with an error wrapping
// ErrUnimplemented until the plugin implements it.
type Storage interface {
	base.Plugin

	// ImportImage creates image req.Image from the raw disk file at
	// req.Source as its version 1, or, when the image exists, as its next
	// version (made current). Progress, when set, is called as bytes copy.
	ImportImage(ctx context.Context, req ImportRequest) (Version, error)
	// ListImages lists images.
	ListImages(ctx context.Context) ([]Image, error)
	// DeleteImage deletes an image and all its versions; refused while a
	// volume uses any of them.
	DeleteImage(ctx context.Context, image string) error

	// CreateVersion snapshots the image's current content as a new
	// version and makes it current.
	CreateVersion(ctx context.Context, image string) (Version, error)
	// ListVersions lists an image's versions, oldest first.
	ListVersions(ctx context.Context, image string) ([]Version, error)
	// DeleteVersion deletes a version; refused (ErrInUse) while a volume
	// was cloned from it or it is current.
	DeleteVersion(ctx context.Context, image string, version uint64) error
	// SetCurrentVersion makes version the one new volumes clone (also a
	// roll back).
	SetCurrentVersion(ctx context.Context, image string, version uint64) error

	// CreateVolume clones an image version (0: current) into a new volume.
	CreateVolume(ctx context.Context, req VolumeRequest) (Volume, error)
	// ResetVolume discards a volume's writes: it becomes a fresh clone of
	// the version (0: the image's current version).
	ResetVolume(ctx context.Context, req VolumeRequest) (Volume, error)
	// DeleteVolume deletes a volume; refused while it is attached.
	DeleteVolume(ctx context.Context, name string) error
	// ListVolumes lists volumes.
	ListVolumes(ctx context.Context) ([]Volume, error)

	// Capacity reports space used by and available to this storage.
	Capacity(ctx context.Context) (Capacity, error)

	// Attach returns where a volume's blocks live, for local opening.
	Attach(ctx context.Context, name string) (volume.Descriptor, error)
	// Detach tells the plugin the volume is no longer open.
	Detach(ctx context.Context, name string) error
}

// Promoter is the optional capability "promote": turn a client's volume
// into a new version of an image (edit one machine, then roll it out).
type Promoter interface {
	Promote(ctx context.Context, volume, image string) (Version, error)
}

// CapabilityPromote is advertised by plugins implementing Promoter.
const CapabilityPromote = "promote"

// ImportRequest asks for an image import.
type ImportRequest struct {
	// Image is the image name.
	Image string
	// Source is a path to a raw disk image readable by the plugin.
	Source string
	// Progress, if set, is called with bytes done and total.
	Progress func(done, total int64)
}

// Image is a golden disk image.
type Image struct {
	Name           string
	CurrentVersion uint64
	Size           int64
}

// Version is an immutable snapshot of an image.
type Version struct {
	Image   string
	Number  uint64
	Size    int64
	Created time.Time
	Current bool
}

// VolumeRequest names a volume and the image version it clones.
type VolumeRequest struct {
	Volume  string
	Image   string
	Version uint64
}

// Volume is a client's copy-on-write clone of an image version.
type Volume struct {
	Name    string
	Image   string
	Version uint64
	Size    int64
}

// Capacity is space used and available, in bytes.
type Capacity struct {
	Used      int64
	Available int64
}

// Errors plugins return (wrapped) so the host can answer precisely.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrInUse       = errors.New("in use")
	ErrInvalidName = errors.New("invalid name")
	ErrNoSpace     = errors.New("no space left")
	// ErrUnimplemented is wrapped by the operations a plugin does not
	// implement (see Unimplemented); the host sees gRPC's Unimplemented.
	ErrUnimplemented = errors.New("unimplemented")
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidName returns an ErrInvalidName error unless name is a safe image or
// volume name: it can never contain "/" or be "." or "..".
func ValidName(name string) error {
	if !nameRE.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("%w: %q (want 1-64 of a-z 0-9 . _ -, starting with a letter or digit)", ErrInvalidName, name)
	}
	return nil
}
