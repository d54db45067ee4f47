package auth_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/plugintest"
)

// bare implements base.Plugin and nothing of Auth but what it embeds.
type bare struct {
	auth.Unimplemented
}

func (bare) Info() base.Info                                        { return base.Info{Type: "bare", Version: "0"} }
func (bare) NewConfig() any                                         { return nil }
func (bare) Configure(context.Context, base.ConfigureRequest) error { return nil }

var _ auth.Auth = bare{}

// A plugin made only of Unimplemented is served, advertises no user_admin,
// and every operation reaches the host as ErrUnimplemented, not as one of
// the answers the host acts on (wrong password, user gone).
func TestUnimplementedAnswersEveryOperation(t *testing.T) {
	h := plugintest.Start(t, bare{})
	if slices.Contains(h.Info.Capabilities, auth.CapabilityUserAdmin) {
		t.Errorf("capabilities %v advertise user_admin; Unimplemented must not implement UserAdmin", h.Info.Capabilities)
	}
	c := h.Auth()
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"Verify": func() error { _, err := c.Verify(ctx, "alice", "pw"); return err },
		"Lookup": func() error { _, err := c.Lookup(ctx, "alice"); return err },
	} {
		err := call()
		if !errors.Is(err, auth.ErrUnimplemented) {
			t.Errorf("%s through gRPC = %v, want an error wrapping ErrUnimplemented", name, err)
		}
		if errors.Is(err, auth.ErrInvalidCredentials) || errors.Is(err, auth.ErrUserNotFound) {
			t.Errorf("%s through gRPC = %v, also matches an answer the host acts on", name, err)
		}
	}
	// A plugin without UserAdmin answers the same way.
	if _, err := c.ListUsers(ctx); !errors.Is(err, auth.ErrUnimplemented) {
		t.Errorf("ListUsers of a plugin without UserAdmin = %v, want ErrUnimplemented", err)
	}
}
