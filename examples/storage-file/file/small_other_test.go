//go:build !linux

package file_test

import (
	"testing"

	"github.com/dls-project/dls/sdk/plugintest"
)

// smallStorage would mount a small tmpfs, which only Linux offers here.
func smallStorage(t *testing.T) *plugintest.StorageClient {
	t.Skip("the no-space checks mount a tmpfs: Linux only")
	return nil
}
