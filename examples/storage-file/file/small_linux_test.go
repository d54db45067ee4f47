package file_test

import (
	"os"
	"syscall"
	"testing"

	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/sdk/plugintest"
)

// smallStorage starts the plugin with its root on an 8 MiB tmpfs, for the
// suite's no-space checks. Mounting needs root: it skips otherwise.
func smallStorage(t *testing.T) *plugintest.StorageClient {
	if os.Geteuid() != 0 {
		t.Skip("the no-space checks mount a small tmpfs, which needs root")
	}
	root := t.TempDir()
	if err := syscall.Mount("tmpfs", root, "tmpfs", 0, "size=8m,mode=0700"); err != nil {
		t.Skipf("mount an 8 MiB tmpfs on %s: %v", root, err)
	}
	// Registered before Start's cleanup, so it runs after the plugin stops.
	t.Cleanup(func() {
		if err := syscall.Unmount(root, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", root, err)
		}
	})
	return plugintest.Start(t, file.New(), plugintest.WithConfig(map[string]any{"root": root})).Storage()
}
