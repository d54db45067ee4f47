package volume

import "github.com/dls-project/dls/sdk/proto/dlsv1"

// FromProto converts a wire descriptor. The SDK's gRPC adapters call it;
// plugins never need to.
func FromProto(d *dlsv1.VolumeDescriptor) Descriptor {
	return Descriptor{
		Format: Format(d.GetFormat()), Paths: d.GetPaths(), Size: d.GetSizeBytes(),
		BlockSize: d.GetBlockSize(), ReadOnly: d.GetReadOnly(), Options: d.GetOptions(),
	}
}

// ToProto converts a descriptor for the wire.
func ToProto(d Descriptor) *dlsv1.VolumeDescriptor {
	return &dlsv1.VolumeDescriptor{
		Format: string(d.Format), Paths: d.Paths, SizeBytes: d.Size,
		BlockSize: d.BlockSize, ReadOnly: d.ReadOnly, Options: d.Options,
	}
}
