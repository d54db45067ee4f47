package protocol

import (
	"context"
	"errors"
	"fmt"
)

// ErrUnimplemented is wrapped by the operations a plugin does not implement
// (see Unimplemented); the host sees gRPC's Unimplemented.
var ErrUnimplemented = errors.New("unimplemented")

// Unimplemented answers every Protocol operation with an error wrapping
// ErrUnimplemented. Embed it in a plugin, as gRPC's generated
// Unimplemented*Server types are embedded, so that a method added to
// Protocol in a later SDK compiles and answers "unimplemented" until the
// plugin implements it:
//
//	type Plugin struct {
//		protocol.Unimplemented
//		...
//	}
//
// It does not implement base.Plugin: Info, NewConfig and Configure are the
// plugin's own.
type Unimplemented struct{}

func unimplemented(method string) error {
	return fmt.Errorf("protocol plugin does not implement %s: %w", method, ErrUnimplemented)
}

// Start implements Protocol.
func (Unimplemented) Start(context.Context) error { return unimplemented("Start") }

// Stop implements Protocol.
func (Unimplemented) Stop(context.Context) error { return unimplemented("Stop") }

// Status implements Protocol.
func (Unimplemented) Status(context.Context) (Status, error) {
	return Status{}, unimplemented("Status")
}
