package storage

import (
	"context"
	"fmt"

	"github.com/dls-project/dls/sdk/volume"
)

// Unimplemented answers every Storage operation with an error wrapping
// ErrUnimplemented. Embed it in a plugin, as gRPC's generated
// Unimplemented*Server types are embedded, so that a method added to
// Storage in a later SDK compiles and answers "unimplemented" until the
// plugin implements it:
//
//	type Plugin struct {
//		storage.Unimplemented
//		...
//	}
//
// It implements neither base.Plugin (Info, NewConfig, Configure are the
// plugin's own) nor the optional Promoter: the SDK advertises promote only
// for plugins that implement it.
type Unimplemented struct{}

func unimplemented(method string) error {
	return fmt.Errorf("storage plugin does not implement %s: %w", method, ErrUnimplemented)
}

// ImportImage implements Storage.
func (Unimplemented) ImportImage(context.Context, ImportRequest) (Version, error) {
	return Version{}, unimplemented("ImportImage")
}

// ListImages implements Storage.
func (Unimplemented) ListImages(context.Context) ([]Image, error) {
	return nil, unimplemented("ListImages")
}

// DeleteImage implements Storage.
func (Unimplemented) DeleteImage(context.Context, string) error {
	return unimplemented("DeleteImage")
}

// CreateVersion implements Storage.
func (Unimplemented) CreateVersion(context.Context, string) (Version, error) {
	return Version{}, unimplemented("CreateVersion")
}

// ListVersions implements Storage.
func (Unimplemented) ListVersions(context.Context, string) ([]Version, error) {
	return nil, unimplemented("ListVersions")
}

// DeleteVersion implements Storage.
func (Unimplemented) DeleteVersion(context.Context, string, uint64) error {
	return unimplemented("DeleteVersion")
}

// SetCurrentVersion implements Storage.
func (Unimplemented) SetCurrentVersion(context.Context, string, uint64) error {
	return unimplemented("SetCurrentVersion")
}

// CreateVolume implements Storage.
func (Unimplemented) CreateVolume(context.Context, VolumeRequest) (Volume, error) {
	return Volume{}, unimplemented("CreateVolume")
}

// ResetVolume implements Storage.
func (Unimplemented) ResetVolume(context.Context, VolumeRequest) (Volume, error) {
	return Volume{}, unimplemented("ResetVolume")
}

// DeleteVolume implements Storage.
func (Unimplemented) DeleteVolume(context.Context, string) error {
	return unimplemented("DeleteVolume")
}

// ListVolumes implements Storage.
func (Unimplemented) ListVolumes(context.Context) ([]Volume, error) {
	return nil, unimplemented("ListVolumes")
}

// Capacity implements Storage.
func (Unimplemented) Capacity(context.Context) (Capacity, error) {
	return Capacity{}, unimplemented("Capacity")
}

// Attach implements Storage.
func (Unimplemented) Attach(context.Context, string) (volume.Descriptor, error) {
	return volume.Descriptor{}, unimplemented("Attach")
}

// Detach implements Storage.
func (Unimplemented) Detach(context.Context, string) error {
	return unimplemented("Detach")
}
