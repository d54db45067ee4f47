package config

import (
	"fmt"
	"reflect"
)

// As returns the decoded config a plugin's Configure receives
// (base.ConfigureRequest.Config) as the type its NewConfig returns:
//
//	func (p *Plugin) Configure(ctx context.Context, req base.ConfigureRequest) error {
//		cfg, err := config.As[*Config](req.Config)
//		if err != nil {
//			return err
//		}
//		...
//
// A plain type assertion panics, taking the plugin down, when NewConfig and
// Configure disagree on the type; As says so in an error instead, which
// the host reports as a failed Configure. A nil config (NewConfig returned
// nil, or a nil pointer) is an error too.
func As[T any](v any) (T, error) {
	var zero T
	if v == nil {
		return zero, fmt.Errorf("configure: no config was decoded (NewConfig returned nil), want %T", zero)
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("configure: config is a %T, want %T (NewConfig and Configure disagree)", v, zero)
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return zero, fmt.Errorf("configure: config is a nil %T (NewConfig returned nil)", v)
	}
	return t, nil
}
