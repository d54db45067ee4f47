package file_test

import (
	"testing"

	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
)

// TestStorageConformance runs the SDK's storage conformance suite, through
// the real gRPC path, restarting the plugin on the same data directory. The
// no-space checks need root (they mount a small tmpfs) and skip otherwise.
func TestStorageConformance(t *testing.T) {
	start, restart := plugintest.StorageInProcess(func() storage.Storage { return file.New() })
	plugintest.RunStorageSuite(t, plugintest.StorageSuite{
		Start:   start,
		Restart: restart,
		Scratch: t.TempDir(),
		Full:    smallStorage,
	})
}
