package storage_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
)

// bare implements base.Plugin and nothing of Storage but what it embeds.
type bare struct {
	storage.Unimplemented
}

func (bare) Info() base.Info                                        { return base.Info{Type: "bare", Version: "0"} }
func (bare) NewConfig() any                                         { return nil }
func (bare) Configure(context.Context, base.ConfigureRequest) error { return nil }

var _ storage.Storage = bare{}

// A plugin made only of Unimplemented is served, advertises no promote,
// and every operation reaches the host as ErrUnimplemented.
func TestUnimplementedAnswersEveryOperation(t *testing.T) {
	h := plugintest.Start(t, bare{})
	if slices.Contains(h.Info.Capabilities, storage.CapabilityPromote) {
		t.Errorf("capabilities %v advertise promote; Unimplemented must not implement Promoter", h.Info.Capabilities)
	}
	st := h.Storage()
	ctx := t.Context()
	vr := storage.VolumeRequest{Volume: "v", Image: "i"}
	for name, call := range map[string]func() error{
		"ImportImage": func() error {
			_, err := st.ImportImage(ctx, storage.ImportRequest{Image: "i", Source: "/dev/null"})
			return err
		},
		"ListImages":        func() error { _, err := st.ListImages(ctx); return err },
		"DeleteImage":       func() error { return st.DeleteImage(ctx, "i") },
		"CreateVersion":     func() error { _, err := st.CreateVersion(ctx, "i"); return err },
		"ListVersions":      func() error { _, err := st.ListVersions(ctx, "i"); return err },
		"DeleteVersion":     func() error { return st.DeleteVersion(ctx, "i", 1) },
		"SetCurrentVersion": func() error { return st.SetCurrentVersion(ctx, "i", 1) },
		"CreateVolume":      func() error { _, err := st.CreateVolume(ctx, vr); return err },
		"ResetVolume":       func() error { _, err := st.ResetVolume(ctx, vr); return err },
		"DeleteVolume":      func() error { return st.DeleteVolume(ctx, "v") },
		"ListVolumes":       func() error { _, err := st.ListVolumes(ctx); return err },
		"Capacity":          func() error { _, err := st.Capacity(ctx); return err },
		"Attach":            func() error { _, err := st.Attach(ctx, "v"); return err },
		"Detach":            func() error { return st.Detach(ctx, "v") },
	} {
		if err := call(); !errors.Is(err, storage.ErrUnimplemented) {
			t.Errorf("%s through gRPC = %v, want an error wrapping ErrUnimplemented", name, err)
		}
	}
}
