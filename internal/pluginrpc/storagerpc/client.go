package storagerpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Client is the host's side of a storage plugin. It has storage.Storage's
// operations (not base.Plugin's) and storage.Promoter's.
type Client struct {
	base *baserpc.Client
	rpc  dlsv1.StorageClient
}

// Base returns the plugin's Base client.
func (c *Client) Base() *baserpc.Client { return c.base }

// fromStatus maps gRPC codes back onto the kind's sentinel errors.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	st, _ := status.FromError(err)
	var sentinel error
	switch st.Code() {
	case codes.NotFound:
		sentinel = storage.ErrNotFound
	case codes.AlreadyExists:
		sentinel = storage.ErrExists
	case codes.FailedPrecondition:
		sentinel = storage.ErrInUse
	case codes.InvalidArgument:
		sentinel = storage.ErrInvalidName
	case codes.ResourceExhausted:
		sentinel = storage.ErrNoSpace
	case codes.Unimplemented:
		sentinel = storage.ErrUnimplemented
	case codes.DeadlineExceeded:
		sentinel = context.DeadlineExceeded
	case codes.Canceled:
		sentinel = context.Canceled
	}
	// Plugins usually name the operation themselves; say it once.
	msg := st.Message()
	if !strings.HasPrefix(msg, op) {
		msg = op + ": " + msg
	}
	return remoteError{msg: msg, sentinel: sentinel}
}

// remoteError carries the plugin's message and matches its sentinel with
// errors.Is, without repeating the sentinel's text.
type remoteError struct {
	msg      string
	sentinel error
}

func (e remoteError) Error() string { return e.msg }
func (e remoteError) Unwrap() error { return e.sentinel }

// Is lets errors without a sentinel match nothing but themselves.
func (e remoteError) Is(target error) bool { return e.sentinel == nil && target == error(e) }

// ImportImage implements Storage.
func (c *Client) ImportImage(ctx context.Context, req storage.ImportRequest) (storage.Version, error) {
	op := fmt.Sprintf("import image %s from %s", req.Image, req.Source)
	stream, err := c.rpc.ImportImage(ctx, &dlsv1.ImportImageRequest{Image: req.Image, Source: req.Source})
	if err != nil {
		return storage.Version{}, fromStatus(op, err)
	}
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return storage.Version{}, fmt.Errorf("%s: stream ended without a version", op)
		}
		if err != nil {
			return storage.Version{}, fromStatus(op, err)
		}
		if p.GetVersion() != nil {
			return versionFromProto(p.GetVersion()), nil
		}
		if req.Progress != nil {
			req.Progress(p.GetDoneBytes(), p.GetTotalBytes())
		}
	}
}

// ListImages implements Storage.
func (c *Client) ListImages(ctx context.Context) ([]storage.Image, error) {
	r, err := c.rpc.ListImages(ctx, &dlsv1.Empty{})
	if err != nil {
		return nil, fromStatus("list images", err)
	}
	out := make([]storage.Image, len(r.GetImages()))
	for i, im := range r.GetImages() {
		out[i] = storage.Image{Name: im.GetName(), CurrentVersion: im.GetCurrentVersion(), Size: im.GetSizeBytes()}
	}
	return out, nil
}

// DeleteImage implements Storage.
func (c *Client) DeleteImage(ctx context.Context, image string) error {
	_, err := c.rpc.DeleteImage(ctx, &dlsv1.ImageRef{Image: image})
	return fromStatus("delete image "+image, err)
}

// CreateVersion implements Storage.
func (c *Client) CreateVersion(ctx context.Context, image string) (storage.Version, error) {
	v, err := c.rpc.CreateVersion(ctx, &dlsv1.ImageRef{Image: image})
	if err != nil {
		return storage.Version{}, fromStatus("create version of image "+image, err)
	}
	return versionFromProto(v), nil
}

// ListVersions implements Storage.
func (c *Client) ListVersions(ctx context.Context, image string) ([]storage.Version, error) {
	r, err := c.rpc.ListVersions(ctx, &dlsv1.ImageRef{Image: image})
	if err != nil {
		return nil, fromStatus("list versions of image "+image, err)
	}
	out := make([]storage.Version, len(r.GetVersions()))
	for i, v := range r.GetVersions() {
		out[i] = versionFromProto(v)
	}
	return out, nil
}

// DeleteVersion implements Storage.
func (c *Client) DeleteVersion(ctx context.Context, image string, version uint64) error {
	_, err := c.rpc.DeleteVersion(ctx, &dlsv1.VersionRef{Image: image, Version: version})
	return fromStatus(fmt.Sprintf("delete version %d of image %s", version, image), err)
}

// SetCurrentVersion implements Storage.
func (c *Client) SetCurrentVersion(ctx context.Context, image string, version uint64) error {
	_, err := c.rpc.SetCurrentVersion(ctx, &dlsv1.VersionRef{Image: image, Version: version})
	return fromStatus(fmt.Sprintf("set current version of image %s to %d", image, version), err)
}

// CreateVolume implements Storage.
func (c *Client) CreateVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	v, err := c.rpc.CreateVolume(ctx, &dlsv1.VolumeRequest{Volume: req.Volume, Image: req.Image, Version: req.Version})
	if err != nil {
		return storage.Volume{}, fromStatus(fmt.Sprintf("create volume %s from image %s", req.Volume, req.Image), err)
	}
	return volumeFromProto(v), nil
}

// ResetVolume implements Storage.
func (c *Client) ResetVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	v, err := c.rpc.ResetVolume(ctx, &dlsv1.VolumeRequest{Volume: req.Volume, Image: req.Image, Version: req.Version})
	if err != nil {
		return storage.Volume{}, fromStatus("reset volume "+req.Volume, err)
	}
	return volumeFromProto(v), nil
}

// DeleteVolume implements Storage.
func (c *Client) DeleteVolume(ctx context.Context, name string) error {
	_, err := c.rpc.DeleteVolume(ctx, &dlsv1.VolumeRef{Volume: name})
	return fromStatus("delete volume "+name, err)
}

// ListVolumes implements Storage.
func (c *Client) ListVolumes(ctx context.Context) ([]storage.Volume, error) {
	r, err := c.rpc.ListVolumes(ctx, &dlsv1.Empty{})
	if err != nil {
		return nil, fromStatus("list volumes", err)
	}
	out := make([]storage.Volume, len(r.GetVolumes()))
	for i, v := range r.GetVolumes() {
		out[i] = volumeFromProto(v)
	}
	return out, nil
}

// Capacity implements Storage.
func (c *Client) Capacity(ctx context.Context) (storage.Capacity, error) {
	r, err := c.rpc.Capacity(ctx, &dlsv1.Empty{})
	if err != nil {
		return storage.Capacity{}, fromStatus("storage capacity", err)
	}
	return storage.Capacity{Used: r.GetUsedBytes(), Available: r.GetAvailableBytes()}, nil
}

// Attach implements Storage.
func (c *Client) Attach(ctx context.Context, name string) (volume.Descriptor, error) {
	d, err := c.rpc.Attach(ctx, &dlsv1.VolumeRef{Volume: name})
	if err != nil {
		return volume.Descriptor{}, fromStatus("attach volume "+name, err)
	}
	return volume.FromProto(d), nil
}

// Detach implements Storage.
func (c *Client) Detach(ctx context.Context, name string) error {
	_, err := c.rpc.Detach(ctx, &dlsv1.VolumeRef{Volume: name})
	return fromStatus("detach volume "+name, err)
}

// Promote implements Promoter; plugins without the capability answer an
// error.
func (c *Client) Promote(ctx context.Context, vol, image string) (storage.Version, error) {
	v, err := c.rpc.Promote(ctx, &dlsv1.PromoteRequest{Volume: vol, Image: image})
	if err != nil {
		return storage.Version{}, fromStatus(fmt.Sprintf("promote volume %s to image %s", vol, image), err)
	}
	return versionFromProto(v), nil
}

func versionFromProto(v *dlsv1.Version) storage.Version {
	var created time.Time
	if v.GetCreatedUnix() != 0 {
		created = time.Unix(v.GetCreatedUnix(), 0)
	}
	return storage.Version{Image: v.GetImage(), Number: v.GetNumber(), Size: v.GetSizeBytes(), Created: created, Current: v.GetCurrent()}
}

func volumeFromProto(v *dlsv1.Volume) storage.Volume {
	return storage.Volume{Name: v.GetName(), Image: v.GetImage(), Version: v.GetVersion(), Size: v.GetSizeBytes()}
}
