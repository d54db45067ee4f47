package volume_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/dls-project/dls/sdk/volume"
)

func TestValidate(t *testing.T) {
	raw := func(edit func(*volume.Descriptor)) volume.Descriptor {
		d := volume.Descriptor{Format: volume.FormatRaw, Paths: []string{"/srv/disk.raw"}, Size: 1 << 20}
		if edit != nil {
			edit(&d)
		}
		return d
	}
	tests := []struct {
		name    string
		d       volume.Descriptor
		wantErr string // substring; empty means valid
	}{
		{"raw minimal", raw(nil), ""},
		{"raw block size 512", raw(func(d *volume.Descriptor) { d.BlockSize = 512 }), ""},
		{"raw block size 4096", raw(func(d *volume.Descriptor) { d.BlockSize = 4096 }), ""},
		{"raw read-only with options", raw(func(d *volume.Descriptor) {
			d.ReadOnly = true
			d.Options = map[string]string{"vendor_hint": "x"}
		}), ""},
		{"overlay three paths", volume.Descriptor{
			Format: volume.FormatOverlay, Paths: []string{"/v/delta", "/v/map", "/i/base"}, Size: 4096,
		}, ""},

		{"empty format", raw(func(d *volume.Descriptor) { d.Format = "" }), "format is empty"},
		{"unknown format", raw(func(d *volume.Descriptor) { d.Format = "qcow2" }), `unsupported volume format "qcow2"`},
		{"raw no path", raw(func(d *volume.Descriptor) { d.Paths = nil }), `format "raw" takes 1 path(s), got 0`},
		{"raw two paths", raw(func(d *volume.Descriptor) { d.Paths = []string{"/a", "/b"} }), "takes 1 path(s), got 2"},
		{"overlay one path", raw(func(d *volume.Descriptor) { d.Format = volume.FormatOverlay }), `format "overlay" takes 3 path(s), got 1`},
		{"empty path", raw(func(d *volume.Descriptor) { d.Paths = []string{""} }), "path 0 is empty"},
		{"relative path", raw(func(d *volume.Descriptor) { d.Paths = []string{"disk.raw"} }), `path 0 "disk.raw" is not absolute`},
		{"dot-relative path", raw(func(d *volume.Descriptor) { d.Paths = []string{"./disk.raw"} }), "is not absolute"},
		{"zero size", raw(func(d *volume.Descriptor) { d.Size = 0 }), "size 0 is not positive"},
		{"negative size", raw(func(d *volume.Descriptor) { d.Size = -512 }), "size -512 is not positive"},
		{"size not multiple of 512", raw(func(d *volume.Descriptor) { d.Size = 1000 }), "size 1000 is not a multiple of the block size 512"},
		{"size not multiple of 4096", raw(func(d *volume.Descriptor) { d.Size, d.BlockSize = 512*3, 4096 }), "not a multiple of the block size 4096"},
		{"block size 1024", raw(func(d *volume.Descriptor) { d.BlockSize = 1024 }), "block size 1024 is not 512 or 4096"},
		{"block size 1", raw(func(d *volume.Descriptor) { d.BlockSize = 1 }), "block size 1 is not 512 or 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.d.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, volume.ErrInvalidDescriptor) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalidDescriptor", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateUnknownFormatIsUnsupported(t *testing.T) {
	d := volume.Descriptor{Format: "vmdk", Paths: []string{"/a"}, Size: 512}
	if err := d.Validate(); !errors.Is(err, volume.ErrUnsupportedFormat) {
		t.Fatalf("Validate() = %v, want it to wrap ErrUnsupportedFormat", err)
	}
}

func TestEffectiveBlockSize(t *testing.T) {
	for bs, want := range map[uint32]uint32{0: 512, 512: 512, 4096: 4096} {
		if got := (volume.Descriptor{BlockSize: bs}).EffectiveBlockSize(); got != want {
			t.Errorf("EffectiveBlockSize() with BlockSize %d = %d, want %d", bs, got, want)
		}
	}
}
