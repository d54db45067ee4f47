package config

import (
	"context"
	"sync/atomic"

	"github.com/dls-project/dls/sdk/base"
)

// Current implements base.Plugin's NewConfig and Configure for a plugin
// whose configuration is a T and whose Configure has nothing else to do,
// and holds what the host applied last. Embed it; read the config with
// Config wherever the plugin needs it:
//
//	type Plugin struct {
//		config.Current[Config]
//		...
//	}
//
//	func (p *Plugin) Verify(...) {
//		users := p.Config().Users
//
// NewConfig returns a new T with the defaults of its SetDefaults method
// (see Defaulter), if it has one. Configure runs T's Validate method (see
// Validator), if it has one, and keeps the config only when it passes, so
// a refused reload leaves the plugin on its previous config. A reload
// swaps the config whole: calls running meanwhile see the old one or the
// new one, never a mix. A plugin whose Configure opens files or checks the
// data directory writes its own Configure, with As.
type Current[T any] struct {
	applied atomic.Pointer[applied[T]]
}

type applied[T any] struct {
	cfg *T
	req base.ConfigureRequest
}

// Validator is implemented by config types with checks that need more than
// one value, or more than the schema can say. Validate returns *Error or
// Errors values naming the attribute, which the host reports at its
// position in dls.hcl.
type Validator interface {
	Validate() error
}

// NewConfig implements base.Plugin.
func (*Current[T]) NewConfig() any { return withDefaults[T]() }

func withDefaults[T any]() *T {
	cfg := new(T)
	if d, ok := any(cfg).(Defaulter); ok {
		d.SetDefaults()
	}
	return cfg
}

// Configure implements base.Plugin.
func (c *Current[T]) Configure(_ context.Context, req base.ConfigureRequest) error {
	cfg, err := As[*T](req.Config)
	if err != nil {
		return err
	}
	if v, ok := any(cfg).(Validator); ok {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	c.applied.Store(&applied[T]{cfg: cfg, req: req})
	return nil
}

// Config returns the config applied last; before the first Configure, the
// defaults. Treat it as read-only: it is shared with every other caller.
func (c *Current[T]) Config() *T {
	if a := c.applied.Load(); a != nil {
		return a.cfg
	}
	return withDefaults[T]()
}

// Request returns the rest of the last Configure's request (the host
// services, the logger, the data directory); the zero request before it.
func (c *Current[T]) Request() base.ConfigureRequest {
	if a := c.applied.Load(); a != nil {
		return a.req
	}
	return base.ConfigureRequest{}
}
