package rawdir_test

import (
	"fmt"
	"os/exec"
)

// mountTmpfs mounts a tmpfs of size (e.g. "8m") on dir, owner-only.
func mountTmpfs(dir, size string) error {
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func unmountTmpfs(dir string) { _ = exec.Command("umount", "-f", dir).Run() }
