//go:build !linux

package volume

import "os"

// punchHole is Linux-only; elsewhere Discard writes zeros.
func punchHole(*os.File, int64, int64) error { return errCannotPunch }

// datasync falls back to a full fsync where fdatasync is not offered.
func datasync(f *os.File) error { return f.Sync() }
