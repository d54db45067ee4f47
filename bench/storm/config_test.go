//go:build linux

package main

import (
	"testing"

	"github.com/dls-project/dls/core/config"
)

// TestDLSConfigLoads: the host configs the storm writes, with declared
// machines and with none (unknown_clients = "register"), load as the host
// would load them.
func TestDLSConfigLoads(t *testing.T) {
	machines := makeMachines(3)
	for _, register := range []bool{false, true} {
		path, err := dlsConfig(t.TempDir(), "/usr/lib/dls", "vsrv", "10.99.0.1", "/tmp/storm.img", 0, machines, register)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatalf("register=%v: %v", register, err)
		}
		want := len(machines)
		if register {
			want = 0
			if cfg.Boot.UnknownClients != config.UnknownClientsRegister || cfg.Boot.DefaultImage != "storm" {
				t.Errorf("register: unknown_clients %q default_image %q", cfg.Boot.UnknownClients, cfg.Boot.DefaultImage)
			}
		}
		if len(cfg.Clients) != want {
			t.Errorf("register=%v: %d clients, want %d", register, len(cfg.Clients), want)
		}
	}
}
