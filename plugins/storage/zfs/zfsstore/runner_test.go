package zfsstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/storage"
)

// fakeCommand writes an executable shell script standing in for zfs.
func fakeCommand(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "zfs")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunnerErrors(t *testing.T) {
	for _, c := range []struct {
		stderr string
		want   error
	}{
		{"cannot destroy 'tank/dls/volumes/pc1': dataset is busy", storage.ErrInUse},
		{"cannot destroy 'tank/dls/images/lab@v1': snapshot has dependent clones\nuse '-R' to destroy the following datasets:\ntank/dls/volumes/pc1", storage.ErrInUse},
		{"cannot open 'tank/dls/images/x': dataset does not exist", storage.ErrNotFound},
		{"cannot create 'tank/dls/volumes/pc1': dataset already exists", storage.ErrExists},
		{"cannot create 'tank/dls/images/x': out of space", storage.ErrNoSpace},
		{"cannot create 'nopool/dls': no such pool 'nopool'", storage.ErrNotFound},
		{"umount: /tank/dls/volumes/pc1: target is busy.", storage.ErrInUse},
		{"internal error: Function not implemented", nil},
	} {
		r := &runner{zfs: fakeCommand(t, "printf '%s\\n' \""+c.stderr+"\" >&2; exit 1"), timeout: 10 * time.Second}
		_, err := r.zfsCmd(t.Context(), "destroy", "tank/dls/volumes/pc1")
		var ce *CommandError
		if !errors.As(err, &ce) {
			t.Fatalf("error %v is not a *CommandError", err)
		}
		wantMsg := "zfs destroy tank/dls/volumes/pc1: " + strings.ReplaceAll(c.stderr, "\n", "; ")
		if err.Error() != wantMsg {
			t.Errorf("error = %q\nwant    %q", err, wantMsg)
		}
		if c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%q: not %v", c.stderr, c.want)
		}
		for _, other := range []error{storage.ErrInUse, storage.ErrNotFound, storage.ErrExists, storage.ErrNoSpace} {
			if other != c.want && errors.Is(err, other) {
				t.Errorf("%q also matches %v", c.stderr, other)
			}
		}
		var exit interface{ ExitCode() int }
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%v does not carry the exit status", err)
		}
	}
}

func TestRunnerOutputAndEnvironment(t *testing.T) {
	r := &runner{zfs: fakeCommand(t, `echo "$PATH|$LC_ALL|$HOME|$*"`), timeout: 10 * time.Second}
	out, err := r.zfsCmd(t.Context(), "get", "-H", "a b")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out); got != "/usr/sbin:/usr/bin:/sbin:/bin|C||get -H a b\n" {
		t.Errorf("command saw %q: want a fixed PATH, the C locale, nothing else, arguments as given", got)
	}
	r.zfs = fakeCommand(t, `exit 3`)
	_, err = r.zfsCmd(t.Context(), "list")
	if err == nil || err.Error() != "zfs list: exit status 3" {
		t.Errorf("silent failure: %v", err)
	}
}

func TestRunnerTimeout(t *testing.T) {
	// The script's child (sleep) must be killed too, or Run would wait
	// for its stdout.
	r := &runner{zfs: fakeCommand(t, "echo stuck >&2; sleep 30; echo done"), timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := r.zfsCmd(t.Context(), "destroy", "x")
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a hung command returned after %s", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out after 200ms") || !strings.Contains(err.Error(), "zfs destroy x") {
		t.Errorf("timeout error: %v", err)
	}

	r.timeout = time.Minute
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = r.zfsCmd(ctx, "destroy", "x")
	if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled command: %v, want context.Canceled", err)
	}
}

func TestRunnerGet(t *testing.T) {
	r := &runner{zfs: fakeCommand(t, `echo "$*" >&2; cat testdata/zfs-fuse-volumes.txt`), timeout: 10 * time.Second}
	tab, err := r.get(t.Context(), true, []string{"type", "origin"}, "dlsci/sample/volumes")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := tab.value("dlsci/sample/volumes/pc-01", "origin"); v != "dlsci/sample/images/lab@v1" {
		t.Errorf("origin = %q", v)
	}
	r.zfs = fakeCommand(t, `echo "$*"`)
	_, err = r.get(t.Context(), false, []string{"type"}, "a")
	if err == nil || !strings.Contains(err.Error(), "get -H -p -o name,property,value,source type a") {
		t.Errorf("get ran something else: %v", err)
	}
}

func TestFindBinary(t *testing.T) {
	dir := t.TempDir()
	old := binDirs
	t.Cleanup(func() { binDirs = old })
	if err := os.WriteFile(filepath.Join(dir, "zfs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "zfs")
	if err := os.WriteFile(exe, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	binDirs = []string{"/nonexistent", dir, filepath.Dir(exe)}
	if got, err := findBinary("zfs"); err != nil || got != exe {
		t.Errorf("findBinary = %q, %v; want the first executable, %s", got, err, exe)
	}
	binDirs = []string{dir}
	if _, err := findBinary("zfs"); err == nil || !strings.Contains(err.Error(), "install ZFS") {
		t.Errorf("findBinary without an executable: %v", err)
	}
	if err := checkExecutable("zfs"); err == nil {
		t.Error("a relative path passed")
	}
}
