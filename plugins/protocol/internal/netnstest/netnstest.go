//go:build linux

// Package netnstest runs a whole DLS host (bin/dls serve, its plugins as
// supervised subprocesses, the SQLite store) and real peers in network
// namespaces, for the protocol plugins' root tests (the DHCP and DHCPv6
// plugins'). Those tests need root; without it they skip, and fail when CI
// is set (CI must run them).
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Lab is one test binary's namespaces and built programs. Declare it once
// per test package, and call Main from TestMain.
type Lab struct {
	// Prefix starts every namespace's and temporary link's name ("dlst");
	// with the pid, it keeps concurrent test binaries apart.
	Prefix string
	// Install is the hint a skip gives for missing tools ("apt-get
	// install ...").
	Install string
	// Packages are the programs Binaries builds: path under its directory
	// ("plugins/dls-protocol-dhcp") → Go package. The host ("dls") and
	// the file storage plugin its configs name (storage "file") are always
	// built.
	Packages map[string]string

	once sync.Once
	dir  string
	err  error
	seq  atomic.Int32
}

// NeedRoot skips t without root and the named tools (and ip), or fails it
// when CI is set.
func (l *Lab) NeedRoot(t *testing.T, tools ...string) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") != "" {
			t.Fatalf(format+" (CI is set: these tests must run)", args...)
		}
		t.Skipf(format, args...)
	}
	if testing.Short() {
		t.Skip("network namespace test: not in -short mode")
	}
	if os.Geteuid() != 0 {
		skip("needs root: network namespaces")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			skip("needs %s (%s)", tool, l.Install)
		}
	}
}

// Binaries builds the host and l.Packages, once, and returns their
// directory (the host is dls in it).
func (l *Lab) Binaries(t *testing.T) string {
	t.Helper()
	l.once.Do(func() {
		l.dir, l.err = os.MkdirTemp("", l.Prefix+"-bin-")
		if l.err != nil {
			return
		}
		pkgs := map[string]string{
			"dls":                      "github.com/dls-project/dls/core/cmd/dls",
			"plugins/dls-storage-file": "github.com/dls-project/dls/examples/storage-file",
		}
		for out, pkg := range l.Packages {
			pkgs[out] = pkg
		}
		for out, pkg := range pkgs {
			cmd := exec.Command("go", "build", "-o", filepath.Join(l.dir, out), pkg)
			if b, err := cmd.CombinedOutput(); err != nil {
				l.err = fmt.Errorf("build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.dir
}

// Main runs a test package's tests (call it from TestMain), then removes
// what Binaries built.
func (l *Lab) Main(m *testing.M) {
	code := m.Run()
	if l.dir != "" {
		_ = os.RemoveAll(l.dir)
	}
	os.Exit(code)
}

// Netns creates a network namespace with loopback up and the sysctls
// ("net.ipv6.conf.all.accept_dad=0") set, deleted at cleanup.
func (l *Lab) Netns(t *testing.T, role string, sysctls ...string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d-%d-%s", l.Prefix, os.Getpid()%100000, l.seq.Add(1), role)
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	Run(t, "ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
	for _, s := range sysctls {
		Run(t, "ip", "netns", "exec", name, "sysctl", "-qw", s)
	}
	return name
}

// Link links namespaces a and b with a veth pair, interfaces ia and ib,
// both still down (so that their addresses can be set first).
func (l *Lab) Link(t *testing.T, a, ia, b, ib string) {
	t.Helper()
	n := l.seq.Add(1)
	tmpA, tmpB := fmt.Sprintf("%s%da", l.Prefix, n), fmt.Sprintf("%s%db", l.Prefix, n)
	Run(t, "ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	Run(t, "ip", "link", "set", tmpA, "netns", a, "name", ia)
	Run(t, "ip", "link", "set", tmpB, "netns", b, "name", ib)
}

// Veth is Link with both interfaces up.
func (l *Lab) Veth(t *testing.T, a, ia, b, ib string) {
	t.Helper()
	l.Link(t, a, ia, b, ib)
	Run(t, "ip", "netns", "exec", a, "ip", "link", "set", ia, "up")
	Run(t, "ip", "netns", "exec", b, "ip", "link", "set", ib, "up")
}

// InNS is args run in namespace ns.
func InNS(ns string, args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, args...)
}

// Run runs args and returns their output; it fails t when they fail.
func Run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RunTimeout runs cmd, killed after d, and returns its output.
func RunTimeout(cmd *exec.Cmd, d time.Duration) ([]byte, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return []byte(out.String()), err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		return []byte(out.String()), fmt.Errorf("%s: timed out after %s", cmd.Path, d)
	}
}

// EnterNS runs fn on an OS thread moved into namespace ns. Sockets fn
// opens stay in ns for their life, whichever goroutine uses them later.
func EnterNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with the goroutine rather
		// than go back to the scheduler in another namespace.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// WriteScript writes an executable file.
func WriteScript(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

// ReadFile is path's content; it fails t when it cannot be read.
func ReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
