package config

import (
	"os"
	"path/filepath"
	"testing"

	sdkconfig "github.com/dls-project/dls/sdk/config"
)

// FuzzParse checks that no config text makes Load or DecodeConfig panic,
// and that every error is reported.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.hcl")
	if err != nil {
		f.Fatal(err)
	}
	more, _ := filepath.Glob("testdata/errors/*.hcl")
	for _, name := range append(files, more...) {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	defaults := dhcpDefaults()
	schema, err := sdkconfig.Schema(&defaults)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := parse(src, "fuzz.hcl", "/etc/dls", fakeEnv(map[string]string{"A": "a"}))
		if err != nil {
			if err.Error() == "" {
				t.Error("empty error")
			}
			return
		}
		for _, p := range cfg.Plugins {
			data, err := p.DecodeConfig(schema)
			if err == nil {
				into := dhcpDefaults()
				_ = sdkconfig.Decode(data, &into)
			}
			_ = p.ConfigRange("pool[1].start")
			_ = p.ConfigRange(`labels["x"]`)
			_ = p.ConfigHash()
		}
	})
}
