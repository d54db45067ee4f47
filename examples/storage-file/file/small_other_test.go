//go:build !linux

package file_test

import (
	"testing"

	"github.com/dls-project/dls/sdk/storage"
)

// smallStorage would mount a small tmpfs, which only Linux offers here.
func smallStorage(t *testing.T) *storage.Client {
	t.Skip("the no-space checks mount a tmpfs: Linux only")
	return nil
}
