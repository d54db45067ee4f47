// Package fakeprotocol is a protocol plugin made of function fields, for
// tests of the code that drives protocol plugins (the host, plugintest):
// test support, not part of the SDK vendors build on.
package fakeprotocol

import (
	"context"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/protocol"
)

// Mock is a protocol.Protocol made of function fields. A nil field does nothing and succeeds.
type Mock struct {
	InfoFn      func() base.Info
	NewConfigFn func() any
	ConfigureFn func(ctx context.Context, req base.ConfigureRequest) error
	StartFn     func(ctx context.Context) error
	StopFn      func(ctx context.Context) error
	StatusFn    func(ctx context.Context) (protocol.Status, error)
}

var _ protocol.Protocol = (*Mock)(nil)

// Info implements base.Plugin.
func (m *Mock) Info() base.Info {
	if m.InfoFn == nil {
		return base.Info{Type: "mock", Version: "0.0.0"}
	}
	return m.InfoFn()
}

// NewConfig implements base.Plugin.
func (m *Mock) NewConfig() any {
	if m.NewConfigFn == nil {
		return nil
	}
	return m.NewConfigFn()
}

// Configure implements base.Plugin.
func (m *Mock) Configure(ctx context.Context, req base.ConfigureRequest) error {
	if m.ConfigureFn == nil {
		return nil
	}
	return m.ConfigureFn(ctx, req)
}

// Start implements protocol.Protocol.
func (m *Mock) Start(ctx context.Context) error {
	if m.StartFn == nil {
		return nil
	}
	return m.StartFn(ctx)
}

// Stop implements protocol.Protocol.
func (m *Mock) Stop(ctx context.Context) error {
	if m.StopFn == nil {
		return nil
	}
	return m.StopFn(ctx)
}

// Status implements protocol.Protocol.
func (m *Mock) Status(ctx context.Context) (protocol.Status, error) {
	if m.StatusFn == nil {
		return protocol.Status{Serving: true}, nil
	}
	return m.StatusFn(ctx)
}
