package protocol_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dls-project/dls/internal/fakeprotocol"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/protocol"
)

// bare implements base.Plugin and nothing of Protocol but what it embeds.
type bare struct {
	protocol.Unimplemented
}

// stoppable is bare with a Stop of its own: plugintest stops the plugin
// at the end of the test and fails on an error.
type stoppable struct{ bare }

func (stoppable) Stop(context.Context) error { return nil }

func (bare) Info() base.Info                                        { return base.Info{Type: "bare", Version: "0"} }
func (bare) NewConfig() any                                         { return nil }
func (bare) Configure(context.Context, base.ConfigureRequest) error { return nil }

var _ protocol.Protocol = bare{}

// A plugin made of Unimplemented is served as a protocol plugin, and
// Start and Status reach the host as ErrUnimplemented.
func TestUnimplementedAnswersEveryOperation(t *testing.T) {
	h := plugintest.Start(t, stoppable{})
	if h.Info.Kind != base.KindProtocol {
		t.Fatalf("kind %q, want %q", h.Info.Kind, base.KindProtocol)
	}
	c := h.Protocol()
	ctx := t.Context()
	if err := c.Start(ctx); !errors.Is(err, protocol.ErrUnimplemented) {
		t.Errorf("Start through gRPC = %v, want an error wrapping ErrUnimplemented", err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, protocol.ErrUnimplemented) {
		t.Errorf("Status through gRPC = %v, want an error wrapping ErrUnimplemented", err)
	}
}

// Stop fails rather than pretend it drained: a plugin that forgot it would
// otherwise keep its sockets across a reload.
func TestUnimplementedStopFails(t *testing.T) {
	if err := (bare{}).Stop(t.Context()); !errors.Is(err, protocol.ErrUnimplemented) {
		t.Errorf("Stop = %v, want an error wrapping ErrUnimplemented", err)
	}
}

// Other errors cross as they did: not mistaken for ErrUnimplemented.
func TestOtherErrorsAreNotUnimplemented(t *testing.T) {
	m := &fakeprotocol.Mock{StartFn: func(context.Context) error { return errors.New("bind: address in use") }}
	err := plugintest.Start(t, m).Protocol().Start(t.Context())
	if err == nil || errors.Is(err, protocol.ErrUnimplemented) {
		t.Errorf("Start = %v, want the plugin's error and not ErrUnimplemented", err)
	}
}
