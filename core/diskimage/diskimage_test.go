package diskimage

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tree makes a small root: a file, a hard link to it, a symlink, an empty
// file and a nested folder.
func tree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc", "dls"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc", "hostname"), []byte("diskless\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc", "dls", "big"), make([]byte, 10000), 0o600))
	must(os.Link(filepath.Join(dir, "etc", "dls", "big"), filepath.Join(dir, "etc", "dls", "big.link")))
	must(os.Symlink("/etc/hostname", filepath.Join(dir, "hostname")))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))
	return dir
}

func TestContentSize(t *testing.T) {
	dir := tree(t)
	got, err := ContentSize(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 8 entries (., etc, etc/dls, etc/hostname, big, big.link, the
	// symlink, empty), each an inode; blocks: 3 folders, the symlink,
	// hostname (1), big (3, once for both links), empty (0).
	want := int64(8*inodeBytes + (3+1+1+3)*block)
	if got != want {
		t.Errorf("ContentSize = %d, want %d", got, want)
	}
	if _, err := ContentSize(filepath.Join(dir, "empty")); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("ContentSize of a file: %v", err)
	}
	if _, err := ContentSize(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ContentSize of nothing: %v", err)
	}
}

func TestSizeFor(t *testing.T) {
	for _, tc := range []struct{ content, want int64 }{
		{0, 128 << 20},
		{1, 192 << 20},           // 1 byte + 128 MiB headroom, rounded up
		{64 << 20, 192 << 20},    // headroom at its minimum
		{400 << 20, 576 << 20},   // a quarter (100 MiB) is under the minimum: 528 → 576
		{1000 << 20, 1280 << 20}, // 1000 + 250 = 1250 → 1280
	} {
		if got := SizeFor(tc.content); got != tc.want {
			t.Errorf("SizeFor(%d MiB) = %d MiB, want %d MiB", tc.content>>20, got>>20, tc.want>>20)
		}
		if got := SizeFor(tc.content); got%Round != 0 || got < tc.content+minHeadroom {
			t.Errorf("SizeFor(%d) = %d: not rounded or too small", tc.content, got)
		}
	}
}

func TestExt4FromDir(t *testing.T) {
	if _, err := findMke2fs(append(filepath.SplitList(os.Getenv("PATH")), sbin...)); err != nil {
		t.Skip("mke2fs not installed (package e2fsprogs)")
	}
	debugfs, err := exec.LookPath("debugfs")
	if err != nil {
		if debugfs, err = findIn("debugfs", sbin); err != nil {
			t.Skip("debugfs not installed (package e2fsprogs)")
		}
	}
	dir := tree(t)
	out := filepath.Join(t.TempDir(), "disk.img")
	size, err := Ext4FromDir(context.Background(), dir, out, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	content, err := ContentSize(dir)
	if err != nil {
		t.Fatal(err)
	}
	if size != SizeFor(content) || st.Size() != size {
		t.Errorf("size %d, file %d bytes; want %d", size, st.Size(), SizeFor(content))
	}
	// debugfs reads the filesystem back without mounting it.
	cat := func(p string) string {
		t.Helper()
		b, err := exec.Command(debugfs, "-R", "cat "+p, out).Output()
		if err != nil {
			t.Fatalf("debugfs cat %s: %v", p, err)
		}
		return string(b)
	}
	if got := cat("/etc/hostname"); got != "diskless\n" {
		t.Errorf("/etc/hostname in the image: %q", got)
	}
	if got := cat("/etc/dls/big.link"); len(got) != 10000 {
		t.Errorf("/etc/dls/big.link in the image: %d bytes", len(got))
	}
	b, err := exec.Command(debugfs, "-R", "stat /hostname", out).Output()
	if err != nil || !strings.Contains(string(b), "Type: symlink") || !strings.Contains(string(b), `Fast link dest: "/etc/hostname"`) {
		t.Errorf("/hostname in the image is not the symlink: %v\n%s", err, b)
	}
	b, err = exec.Command(debugfs, "-R", "stat /etc/dls/big", out).Output()
	if err != nil || !strings.Contains(string(b), "Links: 2") || !strings.Contains(string(b), "Mode:  0600") {
		t.Errorf("/etc/dls/big in the image: not mode 0600 with 2 links: %v\n%s", err, b)
	}

	// An existing output is never overwritten.
	if _, err := Ext4FromDir(context.Background(), dir, out, 0); !errors.Is(err, os.ErrExist) {
		t.Errorf("second build onto %s: %v, want it to exist", out, err)
	}
	// A size mke2fs cannot fit the tree into fails, and leaves no file.
	small := filepath.Join(t.TempDir(), "small.img")
	// Not zeros: mke2fs leaves zero blocks out as holes.
	huge := []byte(strings.Repeat("DLS ", 512<<10))
	if err := os.WriteFile(filepath.Join(dir, "etc", "dls", "huge"), huge, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Ext4FromDir(context.Background(), dir, small, 1<<20); err == nil || !strings.Contains(err.Error(), "mke2fs -d") {
		t.Errorf("2 MiB of files into a 1 MiB image: %v", err)
	}
	if _, err := os.Stat(small); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed build left %s: %v", small, err)
	}
	if _, err := Ext4FromDir(context.Background(), dir, small, 1000); err == nil || !strings.Contains(err.Error(), "multiple of 1 KiB") {
		t.Errorf("size 1000: %v", err)
	}
}

func TestNoMke2fs(t *testing.T) {
	if _, err := findMke2fs([]string{t.TempDir(), ""}); !errors.Is(err, ErrNoMke2fs) || !strings.Contains(err.Error(), "e2fsprogs") {
		t.Errorf("findMke2fs in an empty folder: %v", err)
	}
	// A file named mke2fs that cannot be run is not it.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "mke2fs"), []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := findMke2fs([]string{dir}); !errors.Is(err, ErrNoMke2fs) {
		t.Errorf("findMke2fs with a non-executable mke2fs: %v", err)
	}
}

func findIn(name string, dirs []string) (string, error) {
	for _, d := range dirs {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
