package config_test

import (
	"strings"
	"testing"

	"github.com/dls-project/dls/sdk/config"
)

type asConfig struct{ Root string }

func TestAsReturnsTheTypedConfig(t *testing.T) {
	in := &asConfig{Root: "/srv"}
	got, err := config.As[*asConfig](any(in))
	if err != nil || got != in {
		t.Fatalf("As[*asConfig](%p) = %p, %v; want the same pointer, nil", in, got, err)
	}
	v, err := config.As[asConfig](any(asConfig{Root: "x"}))
	if err != nil || v.Root != "x" {
		t.Fatalf("As[asConfig](value) = %+v, %v; want Root x, nil", v, err)
	}
}

func TestAsRefusesWhatItCannotConvert(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		want string
	}{
		{"nil", nil, "no config was decoded"},
		{"nil pointer", (*asConfig)(nil), "nil *config_test.asConfig"},
		{"other type", &struct{ Port int }{}, "config is a *struct { Port int }, want *config_test.asConfig"},
		{"value for pointer", asConfig{}, "config is a config_test.asConfig, want *config_test.asConfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := config.As[*asConfig](tc.in)
			if err == nil {
				t.Fatalf("As[*asConfig](%#v) = %v, nil error; want an error", tc.in, got)
			}
			if got != nil {
				t.Errorf("As[*asConfig](%#v) returned %v with its error, want nil", tc.in, got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("As[*asConfig](%#v) error %q, want it to contain %q", tc.in, err, tc.want)
			}
		})
	}
}
