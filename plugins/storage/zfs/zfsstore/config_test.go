package zfsstore

import (
	"slices"
	"strings"
	"testing"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
)

// These tests need no ZFS: they check the config through the real gRPC
// path, with stand-in zfs and zpool commands.

func TestConfigRefusals(t *testing.T) {
	fake := fakeCommand(t, "exit 0")
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	if h.Info.Type != "zfs" || !slices.Contains(h.Info.Capabilities, storage.CapabilityPromote) {
		t.Errorf("Info = %+v, want type zfs with promote", h.Info)
	}
	for _, c := range []struct {
		cfg  map[string]any
		path string
		text string
	}{
		{map[string]any{"zfs": fake, "zpool": fake}, "dataset", "dataset name is empty"},
		{map[string]any{"dataset": "/tank/dls", "zfs": fake, "zpool": fake}, "dataset", "empty component"},
		{map[string]any{"dataset": "tank/dls@x", "zfs": fake, "zpool": fake}, "dataset", "not allowed"},
		{map[string]any{"dataset": "tank/dls", "zfs": "zfs", "zpool": fake}, "zfs", "not an absolute path"},
		{map[string]any{"dataset": "tank/dls", "zfs": fake, "zpool": "/nonexistent/zpool"}, "zpool", "no such file"},
		{map[string]any{"dataset": "tank/dls", "zfs": fake, "zpool": fake, "keep_versions": -1}, "keep_versions", "0 (keep all) or more"},
		{map[string]any{"dataset": "tank/dls", "zfs": fake, "zpool": fake, "volume_mode": "block"}, "volume_mode", `"file" or "zvol"`},
		{map[string]any{"dataset": "tank/dls", "zfs": fake, "zpool": fake, "command_timeout": "0s"}, "command_timeout", "positive"},
	} {
		errs, err := h.Configure(c.cfg)
		if err != nil {
			t.Fatalf("Configure %v: %v", c.cfg, err)
		}
		if len(errs) != 1 || errs[0].Path != c.path || !strings.Contains(errs[0].Message, c.text) {
			t.Errorf("Configure %v: %v, want one error at %q saying %q", c.cfg, errs, c.path, c.text)
		}
	}
	// Operations before a successful Configure fail plainly.
	if _, err := h.Storage().ListImages(t.Context()); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("ListImages unconfigured: %v", err)
	}
}

func TestConfigZFSFailure(t *testing.T) {
	zfsCmd := fakeCommand(t, `echo "cannot create 'tank/dls/images': no such pool 'tank'" >&2; exit 1`)
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"dataset": "tank/dls", "zfs": zfsCmd, "zpool": zfsCmd})
	if err != nil {
		t.Fatal(err)
	}
	want := "zfs create -p tank/dls/images: cannot create 'tank/dls/images': no such pool 'tank'"
	if len(errs) != 1 || errs[0].Path != "dataset" || errs[0].Message != want {
		t.Errorf("Configure on a missing pool: %v, want one error at dataset: %s", errs, want)
	}
}

func TestDefaults(t *testing.T) {
	cfg := New().NewConfig().(*Config)
	if cfg.KeepVersions != DefaultKeepVersions || cfg.VolumeMode != ModeFile || cfg.CommandTimeout != DefaultCommandTimeout || cfg.Dataset != "" {
		t.Errorf("defaults = %+v", cfg)
	}
}
