package rawdir_test

import (
	"os"
	"testing"

	"github.com/dls-project/dls/examples/storage-minimal/rawdir"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
)

// TestConformance holds the plugin to the SDK's storage suite through the
// real gRPC path, with a restart on the same data and, as root, a full
// disk (an 8 MiB tmpfs).
func TestConformance(t *testing.T) {
	start, restart := plugintest.StorageInProcess(func() storage.Storage { return rawdir.New() })
	plugintest.RunStorageSuite(t, plugintest.StorageSuite{Start: start, Restart: restart, Full: small})
}

func small(t *testing.T) *plugintest.StorageClient {
	if os.Geteuid() != 0 {
		t.Skip("the no-space checks mount a small tmpfs, which needs root")
	}
	root := t.TempDir()
	if err := mountTmpfs(root, "8m"); err != nil {
		t.Skipf("mount an 8 MiB tmpfs on %s: %v", root, err)
	}
	t.Cleanup(func() { unmountTmpfs(root) })
	return plugintest.Start(t, rawdir.New(), plugintest.WithDataDir(root)).Storage()
}
