// Package diskimage makes the raw disk files admins import as images: an
// ext4 filesystem made from a directory tree (a root filesystem built with
// debootstrap, say) by mke2fs -d, sized from the tree's content.
//
// The filesystem is the whole disk, with no partition table: a Linux
// client mounts it as root=/dev/sda.
package diskimage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

const (
	block = 4096
	// inodeBytes is what one file costs beside its data: its inode (256
	// bytes on ext4) and its directory entry, rounded up generously so
	// that trees of many small files are not undersized.
	inodeBytes = 512
	// minHeadroom is the least free space an image gets: clients write to
	// their clones of it (logs, package caches), and ext4 needs room for
	// its journal and metadata.
	minHeadroom = 128 << 20
	// Round is what image sizes are rounded up to.
	Round = 64 << 20
)

// ContentSize is the space the tree at dir takes on ext4: each regular
// file's size rounded up to 4 KiB blocks (hard links counted once), a
// block per directory and symlink, and the inodes.
func ContentSize(dir string) (int64, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	if !st.IsDir() {
		return 0, fmt.Errorf("measure %s: not a directory", dir)
	}
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var total int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += inodeBytes
		switch {
		case info.Mode().IsRegular():
			if s, ok := info.Sys().(*syscall.Stat_t); ok && s.Nlink > 1 {
				k := ino{uint64(s.Dev), s.Ino}
				if seen[k] {
					return nil
				}
				seen[k] = true
			}
			total += (info.Size() + block - 1) / block * block
		case info.IsDir(), info.Mode()&fs.ModeSymlink != 0:
			total += block
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return total, nil
}

// SizeFor is the image size for content bytes: the content plus a quarter
// of it as headroom (at least 128 MiB), rounded up to 64 MiB.
func SizeFor(content int64) int64 {
	head := max(content/4, minHeadroom)
	return (content + head + Round - 1) / Round * Round
}

// ErrNoMke2fs: mke2fs is not installed.
var ErrNoMke2fs = errors.New("mke2fs not found on PATH, in /usr/sbin or /sbin: install e2fsprogs")

// sbin is where Debian keeps mke2fs, often not on an admin's PATH.
var sbin = []string{"/usr/sbin", "/sbin"}

// findMke2fs is the first mke2fs in dirs.
func findMke2fs(dirs []string) (string, error) {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, "mke2fs")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNoMke2fs
}

// Ext4FromDir writes an ext4 filesystem of size bytes (0: SizeFor the
// tree's ContentSize) holding the tree at dir to out, which must not
// exist; it is removed again if mke2fs fails. It returns the size used.
// Ownership, modes, symlinks, device nodes and hard links are kept as
// mke2fs -d copies them, so a root filesystem must be read as root.
func Ext4FromDir(ctx context.Context, dir, out string, size int64) (int64, error) {
	mke2fs, err := findMke2fs(append(filepath.SplitList(os.Getenv("PATH")), sbin...))
	if err != nil {
		return 0, err
	}
	if size <= 0 {
		content, err := ContentSize(dir)
		if err != nil {
			return 0, err
		}
		size = SizeFor(content)
	}
	if size%1024 != 0 {
		return 0, fmt.Errorf("image size %d: not a multiple of 1 KiB", size)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create image: %w", err)
	}
	f.Close()
	// -F: out is a regular file, not a block device; -E root_owner is
	// implied by -d (the root directory takes dir's owner).
	cmd := exec.CommandContext(ctx, mke2fs, "-q", "-F", "-t", "ext4", "-d", dir, out, strconv.FormatInt(size/1024, 10)+"k")
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(out)
		return 0, fmt.Errorf("mke2fs -d %s %s: %w: %s", dir, out, err, strings.TrimSpace(string(b)))
	}
	return size, nil
}
