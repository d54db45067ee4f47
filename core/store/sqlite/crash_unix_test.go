//go:build unix

package sqlite

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// crashEnv tells the re-executed test binary to be the crashing child.
const crashEnv = "DLS_STORE_CRASH_DB"

// TestCrashDurability: a lease CommitLeases has returned OK for survives
// kill -9 of the process. The child commits, says so, then SIGKILLs itself
// before Close can checkpoint, so the lease lives only in the WAL.
func TestCrashDurability(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	path := filepath.Join(t.TempDir(), "dls.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashDurability$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child: err = %v, want killed; output:\n%s", err, out)
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "committed 16") {
		t.Fatalf("child did not commit; output:\n%s", out)
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL left by the killed child (stat: %v): the test would prove nothing", err)
	}

	s, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer s.Close()
	ls, err := s.LoadLeases(t.Context(), "lan")
	if err != nil {
		t.Fatalf("LoadLeases: %v", err)
	}
	if len(ls) != 16 {
		t.Errorf("%d leases after kill -9, want the 16 committed", len(ls))
	}
}

func crashChild(path string) {
	s, err := Open(context.Background(), path, nil)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	batch := make([]store.Lease, 16)
	for i := range batch {
		batch[i] = store.Lease{Pool: "lan", Address: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}),
			MAC: fmt.Sprintf("52:54:00:00:00:%02x", i), Expires: time.Now().Add(time.Hour), State: store.LeaseBound}
	}
	// One lease per commit, as a busy DHCP server would with small batches.
	for i := range batch {
		if _, err := s.CommitLeases(context.Background(), batch[i:i+1]); err != nil {
			fmt.Println("commit:", err)
			os.Exit(2)
		}
	}
	fmt.Println("committed", len(batch))
	os.Stdout.Sync()
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	time.Sleep(time.Minute) // not reached
}
