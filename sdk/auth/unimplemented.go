package auth

import (
	"context"
	"fmt"
)

// Unimplemented answers every Auth operation with an error wrapping
// ErrUnimplemented. Embed it in a plugin, as gRPC's generated
// Unimplemented*Server types are embedded, so that a method added to Auth
// in a later SDK compiles and answers "unimplemented" until the plugin
// implements it:
//
//	type Plugin struct {
//		auth.Unimplemented
//		...
//	}
//
// It implements neither base.Plugin (Info, NewConfig, Configure are the
// plugin's own) nor the optional UserAdmin: the SDK advertises user_admin
// only for plugins that implement it.
type Unimplemented struct{}

func unimplemented(method string) error {
	return fmt.Errorf("auth plugin does not implement %s: %w", method, ErrUnimplemented)
}

// Verify implements Auth.
func (Unimplemented) Verify(context.Context, string, string) (Identity, error) {
	return Identity{}, unimplemented("Verify")
}

// Lookup implements Auth.
func (Unimplemented) Lookup(context.Context, string) (Identity, error) {
	return Identity{}, unimplemented("Lookup")
}
