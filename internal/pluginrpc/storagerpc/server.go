package storagerpc

import (
	"context"
	"errors"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/dls-project/dls/sdk/volume"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"time"
)

// server serves impl's operations and times them in ops (see the package
// doc's Metrics).
type server struct {
	dlsv1.UnimplementedStorageServer
	impl storage.Storage
	ops  *operations
}

// toStatus maps the kind's sentinel errors onto gRPC codes, which the client
// maps back, so errors.Is works across the process boundary.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, storage.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, storage.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, storage.ErrInUse):
		code = codes.FailedPrecondition
	case errors.Is(err, storage.ErrInvalidName):
		code = codes.InvalidArgument
	case errors.Is(err, storage.ErrNoSpace):
		code = codes.ResourceExhausted
	case errors.Is(err, storage.ErrUnimplemented):
		code = codes.Unimplemented
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func (s *server) ImportImage(r *dlsv1.ImportImageRequest, stream grpc.ServerStreamingServer[dlsv1.ImportProgress]) error {
	var sendErr error
	start := time.Now()
	v, err := s.impl.ImportImage(stream.Context(), storage.ImportRequest{
		Image: r.GetImage(), Source: r.GetSource(),
		Progress: func(done, total int64) {
			if sendErr == nil {
				sendErr = stream.Send(&dlsv1.ImportProgress{DoneBytes: done, TotalBytes: total})
			}
		},
	})
	s.ops.observe(storage.OpImport, start, err)
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&dlsv1.ImportProgress{DoneBytes: v.Size, TotalBytes: v.Size, Version: versionToProto(v)})
}

func (s *server) ListImages(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.ImageList, error) {
	imgs, err := s.impl.ListImages(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &dlsv1.ImageList{Images: make([]*dlsv1.Image, len(imgs))}
	for i, im := range imgs {
		out.Images[i] = &dlsv1.Image{Name: im.Name, CurrentVersion: im.CurrentVersion, SizeBytes: im.Size}
	}
	return out, nil
}

func (s *server) DeleteImage(ctx context.Context, r *dlsv1.ImageRef) (*dlsv1.Empty, error) {
	start := time.Now()
	err := s.impl.DeleteImage(ctx, r.GetImage())
	s.ops.observe(storage.OpDeleteImage, start, err)
	return &dlsv1.Empty{}, toStatus(err)
}

func (s *server) CreateVersion(ctx context.Context, r *dlsv1.ImageRef) (*dlsv1.Version, error) {
	start := time.Now()
	v, err := s.impl.CreateVersion(ctx, r.GetImage())
	s.ops.observe(storage.OpCreateVersion, start, err)
	if err != nil {
		return nil, toStatus(err)
	}
	return versionToProto(v), nil
}

func (s *server) ListVersions(ctx context.Context, r *dlsv1.ImageRef) (*dlsv1.VersionList, error) {
	vs, err := s.impl.ListVersions(ctx, r.GetImage())
	if err != nil {
		return nil, toStatus(err)
	}
	out := &dlsv1.VersionList{Versions: make([]*dlsv1.Version, len(vs))}
	for i, v := range vs {
		out.Versions[i] = versionToProto(v)
	}
	return out, nil
}

func (s *server) DeleteVersion(ctx context.Context, r *dlsv1.VersionRef) (*dlsv1.Empty, error) {
	start := time.Now()
	err := s.impl.DeleteVersion(ctx, r.GetImage(), r.GetVersion())
	s.ops.observe(storage.OpDeleteVersion, start, err)
	return &dlsv1.Empty{}, toStatus(err)
}

func (s *server) SetCurrentVersion(ctx context.Context, r *dlsv1.VersionRef) (*dlsv1.Empty, error) {
	start := time.Now()
	err := s.impl.SetCurrentVersion(ctx, r.GetImage(), r.GetVersion())
	s.ops.observe(storage.OpSetCurrent, start, err)
	return &dlsv1.Empty{}, toStatus(err)
}

func (s *server) CreateVolume(ctx context.Context, r *dlsv1.VolumeRequest) (*dlsv1.Volume, error) {
	start := time.Now()
	v, err := s.impl.CreateVolume(ctx, storage.VolumeRequest{Volume: r.GetVolume(), Image: r.GetImage(), Version: r.GetVersion()})
	s.ops.observe(storage.OpClone, start, err)
	if err != nil {
		return nil, toStatus(err)
	}
	return volumeToProto(v), nil
}

func (s *server) ResetVolume(ctx context.Context, r *dlsv1.VolumeRequest) (*dlsv1.Volume, error) {
	start := time.Now()
	v, err := s.impl.ResetVolume(ctx, storage.VolumeRequest{Volume: r.GetVolume(), Image: r.GetImage(), Version: r.GetVersion()})
	s.ops.observe(storage.OpReset, start, err)
	if err != nil {
		return nil, toStatus(err)
	}
	return volumeToProto(v), nil
}

func (s *server) DeleteVolume(ctx context.Context, r *dlsv1.VolumeRef) (*dlsv1.Empty, error) {
	start := time.Now()
	err := s.impl.DeleteVolume(ctx, r.GetVolume())
	s.ops.observe(storage.OpDeleteVolume, start, err)
	return &dlsv1.Empty{}, toStatus(err)
}

func (s *server) ListVolumes(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.VolumeList, error) {
	vs, err := s.impl.ListVolumes(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &dlsv1.VolumeList{Volumes: make([]*dlsv1.Volume, len(vs))}
	for i, v := range vs {
		out.Volumes[i] = volumeToProto(v)
	}
	return out, nil
}

func (s *server) Capacity(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.CapacityInfo, error) {
	c, err := s.impl.Capacity(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &dlsv1.CapacityInfo{UsedBytes: c.Used, AvailableBytes: c.Available}, nil
}

func (s *server) Attach(ctx context.Context, r *dlsv1.VolumeRef) (*dlsv1.VolumeDescriptor, error) {
	start := time.Now()
	d, err := s.impl.Attach(ctx, r.GetVolume())
	s.ops.observe(storage.OpAttach, start, err)
	if err != nil {
		return nil, toStatus(err)
	}
	return volume.ToProto(d), nil
}

func (s *server) Detach(ctx context.Context, r *dlsv1.VolumeRef) (*dlsv1.Empty, error) {
	start := time.Now()
	err := s.impl.Detach(ctx, r.GetVolume())
	s.ops.observe(storage.OpDetach, start, err)
	return &dlsv1.Empty{}, toStatus(err)
}

func (s *server) Promote(ctx context.Context, r *dlsv1.PromoteRequest) (*dlsv1.Version, error) {
	p, ok := s.impl.(storage.Promoter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this storage plugin cannot promote volumes")
	}
	start := time.Now()
	v, err := p.Promote(ctx, r.GetVolume(), r.GetImage())
	s.ops.observe(storage.OpPromote, start, err)
	if err != nil {
		return nil, toStatus(err)
	}
	return versionToProto(v), nil
}

func versionToProto(v storage.Version) *dlsv1.Version {
	var created int64
	if !v.Created.IsZero() {
		created = v.Created.Unix()
	}
	return &dlsv1.Version{Image: v.Image, Number: v.Number, SizeBytes: v.Size, CreatedUnix: created, Current: v.Current}
}

func volumeToProto(v storage.Volume) *dlsv1.Volume {
	return &dlsv1.Volume{Name: v.Name, Image: v.Image, Version: v.Version, SizeBytes: v.Size}
}
