package zfsstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
)

// binDirs are searched, in order, for zfs and zpool when the config does
// not give their paths. Plugins start with an empty PATH, so the plugin
// never relies on it.
var binDirs = []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"}

// findBinary returns the first of binDirs holding an executable name.
func findBinary(name string) (string, error) {
	for _, d := range binDirs {
		p := filepath.Join(d, name)
		if err := checkExecutable(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s (install ZFS, or set the path)", name, strings.Join(binDirs, ", "))
}

// checkExecutable refuses a path that is not an executable regular file.
func checkExecutable(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

// commandEnv is the environment of every zfs and zpool command: a fixed
// PATH for the helpers they run (mount, umount), and the C locale so that
// their messages are the ones errorKind knows.
var commandEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}

// runner runs the zfs and zpool commands, by absolute path, each under a
// timeout, and turns a failure into a *CommandError carrying its stderr.
// All ZFS access goes through it.
type runner struct {
	zfs, zpool string
	timeout    time.Duration
	logger     hclog.Logger
}

// zfsCmd runs zfs with args and returns its stdout.
func (r *runner) zfsCmd(ctx context.Context, args ...string) ([]byte, error) {
	return r.run(ctx, r.zfs, args)
}

// zpoolCmd runs zpool with args and returns its stdout.
func (r *runner) zpoolCmd(ctx context.Context, args ...string) ([]byte, error) {
	return r.run(ctx, r.zpool, args)
}

// get runs `zfs get -H -p` for props of the datasets (recursively with
// recursive) and parses its output.
func (r *runner) get(ctx context.Context, recursive bool, props []string, datasets ...string) (propTable, error) {
	args := []string{"get", "-H", "-p"}
	if recursive {
		args = append(args, "-r")
	}
	args = append(args, "-o", getFields, strings.Join(props, ","))
	out, err := r.zfsCmd(ctx, append(args, datasets...)...)
	if err != nil {
		return nil, err
	}
	return parseGet(out)
}

// errTimedOut is the cause of a command's context when command_timeout
// ran out (rather than the caller's own deadline).
var errTimedOut = errors.New("command timed out")

func (r *runner) run(ctx context.Context, bin string, args []string) ([]byte, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, r.timeout, errTimedOut)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = commandEnv
	// zfs may start helpers (mount, umount): a timeout kills them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	if r.logger != nil {
		r.logger.Trace("ran command", "command", commandLine(bin, args), "duration", time.Since(start), "error", err)
	}
	if err == nil {
		return stdout.Bytes(), nil
	}
	cerr := &CommandError{Command: commandLine(bin, args), Stderr: cleanStderr(stderr.String()), Err: err}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); cause == errTimedOut {
			cerr.Err = fmt.Errorf("timed out after %s (command_timeout): %w", r.timeout, context.DeadlineExceeded)
		} else {
			cerr.Err = ctx.Err()
		}
	} else {
		cerr.Kind = errorKind(cerr.Stderr)
	}
	return nil, cerr
}

// CommandError is a zfs or zpool command that failed. Its message is the
// command and what it printed on stderr:
//
//	zfs destroy tank/dls/volumes/pc1: cannot destroy 'tank/dls/volumes/pc1': dataset is busy
//
// It wraps the storage sentinel error its message means (Kind), so that a
// "dataset is busy" reaches the host as storage.ErrInUse, and the
// process error (an exit status, a timeout).
type CommandError struct {
	// Command is the command line, with the binary's base name.
	Command string
	// Stderr is what the command printed on stderr, on one line.
	Stderr string
	// Err is why it failed: an *exec.ExitError, a timeout, a cancellation.
	Err error
	// Kind is the storage sentinel error Stderr means, or nil.
	Kind error
}

func (e *CommandError) Error() string {
	if e.Stderr != "" {
		if errors.Is(e.Err, context.DeadlineExceeded) || errors.Is(e.Err, context.Canceled) {
			return fmt.Sprintf("%s: %v: %s", e.Command, e.Err, e.Stderr)
		}
		return e.Command + ": " + e.Stderr
	}
	return fmt.Sprintf("%s: %v", e.Command, e.Err)
}

// Unwrap returns the sentinel and the process error.
func (e *CommandError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Err}
	}
	return []error{e.Kind, e.Err}
}

// stderrKinds map messages of zfs and zpool (zfs-fuse and OpenZFS) to the
// storage sentinel errors. Matched in order, case-insensitively.
var stderrKinds = []struct {
	text string
	kind error
}{
	{"dataset does not exist", storage.ErrNotFound},
	{"no such pool", storage.ErrNotFound},
	{"could not find any snapshots", storage.ErrNotFound},
	{"dataset already exists", storage.ErrExists},
	{"has dependent clones", storage.ErrInUse},
	{"dataset is busy", storage.ErrInUse},
	{"pool or dataset is busy", storage.ErrInUse},
	{"target is busy", storage.ErrInUse},
	{"device or resource busy", storage.ErrInUse},
	{"device busy", storage.ErrInUse}, // FreeBSD's strerror(EBUSY)
	{"out of space", storage.ErrNoSpace},
	{"no space left", storage.ErrNoSpace},
	{"quota exceeded", storage.ErrNoSpace},
}

// errorKind returns the sentinel error a command's stderr means, or nil.
func errorKind(stderr string) error {
	s := strings.ToLower(stderr)
	for _, k := range stderrKinds {
		if strings.Contains(s, k.text) {
			return k.kind
		}
	}
	return nil
}

// cleanStderr puts a command's stderr on one line.
func cleanStderr(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// commandLine renders a command for messages: the binary's base name and
// its arguments.
func commandLine(bin string, args []string) string {
	return strings.Join(append([]string{filepath.Base(bin)}, args...), " ")
}
