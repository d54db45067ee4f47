package rawdir_test

import "syscall"

// mountTmpfs mounts a tmpfs of size (e.g. "8m") on dir, owner-only.
func mountTmpfs(dir, size string) error {
	return syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700")
}

func unmountTmpfs(dir string) { _ = syscall.Unmount(dir, syscall.MNT_DETACH) }
