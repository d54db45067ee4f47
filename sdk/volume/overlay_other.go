//go:build !linux

package volume

import (
	"io/fs"
	"os"
)

// lockFile does not lock where flock is not used: only Linux targets are
// supported, and elsewhere the storage plugin alone keeps writers apart.
func lockFile(*os.File, bool) error { return nil }

// holdsNoData cannot tell outside Linux, so CreateOverlay never reuses a
// leftover delta there.
func holdsNoData(fs.FileInfo) bool { return false }
