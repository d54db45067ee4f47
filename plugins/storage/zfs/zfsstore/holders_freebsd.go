package zfsstore

import (
	"bytes"
	"context"
	"os/exec"
)

// heldOpen tells whether any process holds path open, by asking fuser(1):
// FreeBSD has no file leases to ask the kernel with. known is false when
// fuser cannot tell (not installed, path missing, it failed). fuser sees
// only the processes this one may see (all of them as root; otherwise
// security.bsd.see_other_uids decides), so a volume held by a process out
// of sight counts as closed.
func heldOpen(ctx context.Context, path string) (held, known bool) {
	fuser, err := findBinary("fuser") // plugins run with an empty PATH
	if err != nil {
		return false, false
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, fuser, path)
	cmd.Env = commandEnv
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return false, false
	}
	pids, err := fuserPIDs(stdout.String())
	if err != nil {
		return false, false
	}
	return len(pids) > 0, true
}
