//go:build linux

package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dls-project/dls/core/diskimage"
	"golang.org/x/sys/unix"
)

// The Debian root the Linux machines boot: what debootstrap is asked for.
// The cache is keyed on all of it.
const (
	DebianSuite   = "bookworm"
	DebianMirror  = "http://deb.debian.org/debian"
	DebianInclude = "linux-image-amd64,open-iscsi,initramfs-tools,e2fsprogs,udev,kmod,iproute2,busybox"
)

// DebianCache is where built roots are kept between runs: $DLS_E2E_CACHE,
// else /var/cache/dls-e2e.
func DebianCache() string {
	if d := os.Getenv("DLS_E2E_CACHE"); d != "" {
		return d
	}
	return "/var/cache/dls-e2e"
}

// LinuxInit is where the e2e's init script is installed in the root (the
// image's kernel line says init=LinuxInit).
const LinuxInit = "/sbin/dls-e2e-init"

// DebianRoot returns a Debian root made by debootstrap --variant=minbase
// with DebianInclude, from cache/<suite>-<key>/root, building it there
// first when missing (about 80 s and 100 MB of downloads). The key is a
// hash of the suite, the mirror and the package list, so a changed list
// builds a new root; an interrupted build leaves no root behind.
func DebianRoot(cache string, logf func(string, ...any)) (string, error) {
	sum := sha256.Sum256([]byte(strings.Join([]string{DebianSuite, "minbase", DebianInclude, DebianMirror}, "\n")))
	dir := filepath.Join(cache, DebianSuite+"-"+hex.EncodeToString(sum[:6]))
	root := filepath.Join(dir, "root")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return root, nil
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return "", fmt.Errorf("debootstrap not found (package debootstrap): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("debian root cache: %w", err)
	}
	// One build at a time: a second run waits for the first's root.
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("debian root cache: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("debian root cache: lock: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return root, nil
	}
	tmp := root + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return "", fmt.Errorf("debian root cache: %w", err)
	}
	logf("building the Debian root with debootstrap into %s (cached for later runs)", dir)
	start := time.Now()
	cmd := exec.Command("debootstrap", "--variant=minbase", "--include="+DebianInclude, DebianSuite, tmp, DebianMirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		tail := string(out)
		if len(tail) > 4000 {
			tail = tail[len(tail)-4000:]
		}
		return "", fmt.Errorf("debootstrap %s: %v\n%s", DebianSuite, err, tail)
	}
	// The downloaded packages are not needed in the image.
	debs, _ := filepath.Glob(filepath.Join(tmp, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		os.Remove(d)
	}
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, root); err != nil {
		return "", fmt.Errorf("debian root cache: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "complete"), []byte(DebianInclude+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("debian root cache: %w", err)
	}
	logf("Debian root built in %.1fs", time.Since(start).Seconds())
	return root, nil
}

// LinuxImage is a Linux image made for a run: the disk and its kernel and
// initrd, as boot.files serves them.
type LinuxImage struct {
	Disk   string // the ext4 disk (the whole disk is the root filesystem)
	Kernel string // the kernel file
	Initrd string // the initrd file
	Size   int64  // the disk's size
}

// MakeLinuxImage installs initScript at LinuxInit in root, builds the
// ext4 disk from root into dir/linux.img with diskimage.Ext4FromDir (what
// `dls image import --from-dir` runs), and copies the kernel and initrd
// into files/linux/ (vmlinuz, initrd.img).
func MakeLinuxImage(root, initScript, dir, files string) (*LinuxImage, error) {
	script, err := os.ReadFile(initScript)
	if err != nil {
		return nil, err
	}
	// Written each run: the cached root is otherwise never changed.
	if err := os.WriteFile(filepath.Join(root, LinuxInit), script, 0o755); err != nil {
		return nil, fmt.Errorf("install the init script: %w", err)
	}
	im := &LinuxImage{Disk: filepath.Join(dir, "linux.img")}
	for _, f := range []struct {
		glob string
		dst  *string
		name string
	}{{"vmlinuz-*", &im.Kernel, "vmlinuz"}, {"initrd.img-*", &im.Initrd, "initrd.img"}} {
		m, _ := filepath.Glob(filepath.Join(root, "boot", f.glob))
		if len(m) != 1 {
			return nil, fmt.Errorf("%s in %s/boot: found %v, want one", f.glob, root, m)
		}
		*f.dst = filepath.Join(files, "linux", f.name)
		if err := os.MkdirAll(filepath.Dir(*f.dst), 0o755); err != nil {
			return nil, err
		}
		if err := CopySparse(m[0], *f.dst); err != nil {
			return nil, err
		}
	}
	os.Remove(im.Disk)
	im.Size, err = diskimage.Ext4FromDir(context.Background(), root, im.Disk, 0)
	if err != nil {
		return nil, err
	}
	return im, nil
}

// CopySparse copies src to dst keeping holes (cp --sparse=always): the
// disk images are mostly empty.
func CopySparse(src, dst string) error {
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s %s: %v: %s", src, dst, err, strings.TrimSpace(string(out)))
	}
	return nil
}
