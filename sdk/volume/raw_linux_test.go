package volume

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDiscardPunchesHole checks that Discard frees space where the
// filesystem can punch holes (ext4, xfs, tmpfs, ...). Where it cannot,
// Discard writes zeros, so the test only logs.
func TestDiscardPunchesHole(t *testing.T) {
	dirs := map[string]string{"TempDir": t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		shm, err := os.MkdirTemp("/dev/shm", "dls-volume-test-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(shm) })
			dirs["tmpfs /dev/shm"] = shm
		}
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			const size = 4 << 20
			path := filepath.Join(dir, "disk.raw")
			if err := os.WriteFile(path, bytes.Repeat([]byte{0x5A}, size), 0o600); err != nil {
				t.Fatal(err)
			}
			vol, err := Open(Descriptor{Format: FormatRaw, Paths: []string{path}, Size: size})
			if err != nil {
				t.Fatal(err)
			}
			defer vol.Close()
			if err := vol.Flush(); err != nil {
				t.Fatal(err)
			}
			before := allocatedBytes(t, path)

			const off, length = 1 << 20, 2 << 20
			if err := vol.Discard(off, length); err != nil {
				t.Fatalf("Discard = %v", err)
			}
			if err := vol.Flush(); err != nil {
				t.Fatal(err)
			}
			after := allocatedBytes(t, path)

			got := make([]byte, size)
			if _, err := vol.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			want := bytes.Repeat([]byte{0x5A}, size)
			clear(want[off : off+length])
			if !bytes.Equal(got, want) {
				t.Fatal("discarded range does not read as zeros, or the rest changed")
			}
			if fi, _ := os.Stat(path); fi.Size() != size {
				t.Fatalf("file size = %d after Discard, want %d (KEEP_SIZE)", fi.Size(), size)
			}

			if vol.(*rawVolume).cannotPunch.Load() {
				t.Logf("filesystem cannot punch holes: zeros written, %d bytes allocated", after)
				return
			}
			t.Logf("allocated %d bytes before Discard, %d after", before, after)
			if before-after < length {
				// Copy-on-write and compressing filesystems may keep the
				// blocks; the ones named here must free them.
				if fs, known := punchingFilesystem(t, path); known {
					t.Errorf("Discard of %d bytes on %s freed only %d", length, fs, before-after)
				} else {
					t.Logf("Discard of %d bytes freed only %d on this filesystem", length, before-after)
				}
			}
		})
	}
}

// TestDiscardFallbackWritesZeros forces the path taken where holes cannot
// be punched, across several zero-buffer chunks and an unaligned tail.
func TestDiscardFallbackWritesZeros(t *testing.T) {
	const size = 1 << 20
	path := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xFF}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	vol, err := Open(Descriptor{Format: FormatRaw, Paths: []string{path}, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	defer vol.Close()
	vol.(*rawVolume).cannotPunch.Store(true)

	const off, length int64 = 100, 3*int64(len(zeros)) + 77
	if err := vol.Discard(off, length); err != nil {
		t.Fatalf("Discard = %v", err)
	}
	got := make([]byte, size)
	if _, err := vol.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xFF}, size)
	clear(want[off : off+length])
	if !bytes.Equal(got, want) {
		t.Fatal("fallback Discard did not zero exactly the range")
	}
	if zeros != [len(zeros)]byte{} {
		t.Fatal("the shared zero buffer was written to")
	}
}

// punchingFilesystem names the filesystem holding path if it is one known
// to free blocks when a hole is punched.
func punchingFilesystem(t *testing.T, path string) (string, bool) {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	switch st.Type {
	case 0xEF53:
		return "ext4", true
	case 0x01021994:
		return "tmpfs", true
	case 0x58465342:
		return "xfs", true
	}
	return "", false
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512 // st_blocks counts 512-byte units
}
