package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testPlugin is the real test plugin binary (core/internal/testplugin),
// built once in TestMain.
var testPlugin string

// launcher is shared: its thread lives as long as the test binary.
var launcher = NewLauncher()

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dls-supervisor-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin = filepath.Join(dir, "dls-protocol-test")
	cmd := exec.Command("go", "build", "-o", testPlugin, "github.com/dls-project/dls/core/internal/testplugin")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the test plugin:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func logger(t *testing.T) hclog.Logger {
	if testing.Verbose() {
		return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Output: os.Stderr, Level: hclog.Debug})
	}
	return hclog.NewNullLogger()
}

func testSpec(name string) Spec {
	return Spec{
		Name: name, Kind: "protocol", Type: "test", Path: testPlugin,
		Restart:      RestartPolicy{InitialDelay: 20 * time.Millisecond, MaxDelay: 80 * time.Millisecond, MaxFailures: 3, ResetAfter: time.Hour},
		StopGrace:    2 * time.Second,
		StartTimeout: 30 * time.Second,
	}
}

// fakeLife records what the supervisor asks of the host. setup, if set,
// decides each Setup's result (attempt counts from 1).
type fakeLife struct {
	mu        sync.Mutex
	setup     func(attempt int) error
	setups    []time.Time
	setupPids []int
	teardowns []int
	badProc   []string
}

func (f *fakeLife) Setup(_ context.Context, spec Spec, p *Process) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p == nil || p.Pid <= 0 || p.Info.Type != spec.Type || p.Info.Kind != spec.Kind || p.Base() == nil {
		f.badProc = append(f.badProc, fmt.Sprintf("%+v", p))
	}
	f.setups = append(f.setups, time.Now())
	f.setupPids = append(f.setupPids, p.Pid)
	if f.setup != nil {
		return f.setup(len(f.setups))
	}
	return nil
}

func (f *fakeLife) Teardown(_ Spec, p *Process) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.teardowns = append(f.teardowns, p.Pid)
}

func (f *fakeLife) setSetup(fn func(attempt int) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setup = fn
}

// snapshot returns the number of Setups and the pids Teardown and Setup saw.
func (f *fakeLife) snapshot() (setups int, teardowns, setupPids []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.setups), append([]int(nil), f.teardowns...), append([]int(nil), f.setupPids...)
}

func (f *fakeLife) setupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.setups)
}

// running starts s.Run and returns a function that cancels it and waits for
// Run to return.
func running(t *testing.T, s *Supervisor) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return within 30s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor waits for a status that satisfies cond.
func waitFor(t *testing.T, s *Supervisor, what string, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		changed := s.Changed()
		st := s.Status()
		if cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("waiting for %s: status stayed %+v", what, st)
		}
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

func TestBackoff(t *testing.T) {
	p := RestartPolicy{InitialDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for failures, want := range map[int]time.Duration{
		0: 100 * time.Millisecond, 1: 100 * time.Millisecond, 2: 200 * time.Millisecond,
		3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 6: time.Second, 1000: time.Second,
	} {
		if got := backoff(p, failures); got != want {
			t.Errorf("backoff(%+v, %d) = %s, want %s", p, failures, got, want)
		}
	}
	p = RestartPolicy{InitialDelay: 300 * time.Millisecond, MaxDelay: time.Second}
	for failures, want := range map[int]time.Duration{1: 300 * time.Millisecond, 2: 600 * time.Millisecond, 3: time.Second} {
		if got := backoff(p, failures); got != want {
			t.Errorf("backoff(%+v, %d) = %s, want %s", p, failures, got, want)
		}
	}
	// An initial delay over the cap is capped.
	if got := backoff(RestartPolicy{InitialDelay: time.Minute, MaxDelay: time.Second}, 1); got != time.Second {
		t.Errorf("initial delay over the cap: %s, want 1s", got)
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("config rejected")
	p := Permanent(base)
	if !IsPermanent(p) {
		t.Error("IsPermanent(Permanent(err)) = false")
	}
	if !IsPermanent(fmt.Errorf("start plugin: %w", p)) {
		t.Error("IsPermanent of a wrapped Permanent = false")
	}
	if !errors.Is(p, base) {
		t.Error("Permanent hides the error it marks from errors.Is")
	}
	if p.Error() != base.Error() {
		t.Errorf("Permanent changed the message: %q", p)
	}
	if IsPermanent(base) || IsPermanent(nil) {
		t.Error("IsPermanent true for an unmarked error or nil")
	}
}

func TestSpecDefaults(t *testing.T) {
	s := Spec{}
	s.applyDefaults()
	if s.Restart != DefaultRestart {
		t.Errorf("restart policy %+v, want %+v", s.Restart, DefaultRestart)
	}
	if s.HealthInterval <= 0 || s.HealthTimeout <= 0 || s.HealthFailures <= 0 || s.StopGrace <= 0 || s.StartTimeout <= 0 {
		t.Errorf("zero fields left: %+v", s)
	}
	s = Spec{Restart: RestartPolicy{MaxFailures: 9}}
	s.applyDefaults()
	if s.Restart.MaxFailures != 9 || s.Restart.InitialDelay != DefaultRestart.InitialDelay {
		t.Errorf("set fields must be kept, zero ones defaulted: %+v", s.Restart)
	}
}

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLaunchErrors(t *testing.T) {
	sum := func(path string) string {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	missing := filepath.Join(t.TempDir(), "dls-protocol-nope")
	notExec := writeFile(t, "dls-protocol-noexec", "#!/bin/sh\nexit 0\n", 0o644)
	echo := writeFile(t, "dls-protocol-echo", "#!/bin/sh\necho hello\n", 0o755)
	silent := writeFile(t, "dls-protocol-silent", "#!/bin/sh\nexit 0\n", 0o755)
	hang := writeFile(t, "dls-protocol-hang", "#!/bin/sh\nexec /bin/sleep 60\n", 0o755)

	cases := []struct {
		name      string
		edit      func(*Spec)
		want      string
		permanent bool
	}{
		{"missing binary", func(s *Spec) { s.Path = missing },
			"plugin p1: binary " + missing + " not found", true},
		{"not executable", func(s *Spec) { s.Path = notExec },
			"plugin p1: binary " + notExec + " is not executable", true},
		{"script printing junk", func(s *Spec) { s.Path = echo },
			"plugin p1: " + echo + ` is not a DLS plugin: its first line on stdout is "hello"`, true},
		{"script exiting at once", func(s *Spec) { s.Path = silent },
			"plugin p1: " + silent + " is not a DLS plugin", false},
		{"start timeout", func(s *Spec) { s.Path, s.StartTimeout = hang, 300*time.Millisecond },
			"plugin p1: " + hang + " is not a DLS plugin", false},
		{"sha256 not hex", func(s *Spec) { s.SHA256 = "xyz" },
			`plugin p1: sha256 "xyz" is not 64 hex digits`, true},
		{"sha256 mismatch", func(s *Spec) { s.SHA256 = strings.Repeat("0", 64) },
			"plugin p1: " + testPlugin + " does not match its sha256", true},
		{"type mismatch", func(s *Spec) { s.Type = "dhcp" },
			`plugin p1: ` + testPlugin + ` is a protocol "test" plugin, the config asks for protocol "dhcp"`, true},
		{"kind mismatch", func(s *Spec) { s.Kind = "storage" },
			`is a protocol "test" plugin, the config asks for storage "test"`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := testSpec("p1")
			tc.edit(&spec)
			proc, err := Launch(context.Background(), spec, launcher, logger(t))
			if err == nil {
				proc.Kill()
				t.Fatal("Launch succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Launch error:\n%s\nwant it to contain\n%s", err, tc.want)
			}
			if IsPermanent(err) != tc.permanent {
				t.Errorf("IsPermanent(%q) = %v, want %v", err, IsPermanent(err), tc.permanent)
			}
		})
	}

	t.Run("matching sha256", func(t *testing.T) {
		spec := testSpec("p1")
		spec.SHA256 = sum(testPlugin)
		proc, err := Launch(context.Background(), spec, launcher, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer proc.Kill()
		if proc.Pid <= 0 || proc.Info.Version != "1.2.3" || proc.Base() == nil {
			t.Errorf("process %+v", proc)
		}
	})
}

func TestSupervisorRunRestartStop(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	life := &fakeLife{}
	s := New(testSpec("t1"), life, launcher, m, logger(t))
	if st := s.Status(); st.State != StateStarting || st.Name != "t1" || st.Kind != "protocol" || st.Type != "test" {
		t.Errorf("status before Run: %+v", st)
	}
	if got := testutil.ToFloat64(m.Restarts.WithLabelValues("t1")); got != 0 {
		t.Errorf("restarts series before Run = %g, want 0", got)
	}
	stop := running(t, s)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if st := s.WaitSettled(ctx); st != StateRunning {
		t.Fatalf("settled in %s (%s), want running", st, s.Status().LastError)
	}
	first := s.Status()
	if first.Pid <= 0 || !alive(first.Pid) || !first.Healthy || first.Restarts != 0 {
		t.Fatalf("running status %+v; process alive: %v", first, first.Pid > 0 && alive(first.Pid))
	}
	if first.Kind != "protocol" || first.Type != "test" || first.Version != "1.2.3" {
		t.Errorf("status %+v, want kind protocol, type test, the process's version 1.2.3", first)
	}
	if p := s.Process(); p == nil || p.Pid != first.Pid {
		t.Errorf("Process() = %+v, want the running process %d", p, first.Pid)
	}
	if _, _, pids := life.snapshot(); len(pids) != 1 || pids[0] != first.Pid {
		t.Errorf("Setup saw pids %v, want [%d]", pids, first.Pid)
	}

	s.Restart()
	second := waitFor(t, s, "a new process", func(st Status) bool {
		return st.State == StateRunning && st.Pid != 0 && st.Pid != first.Pid
	})
	if second.Restarts != 1 {
		t.Errorf("Restarts = %d after one Restart, want 1", second.Restarts)
	}
	if alive(first.Pid) {
		t.Errorf("old process %d still exists after the restart", first.Pid)
	}
	if !alive(second.Pid) {
		t.Errorf("new process %d does not exist", second.Pid)
	}
	if _, teardowns, _ := life.snapshot(); len(teardowns) != 1 || teardowns[0] != first.Pid {
		t.Errorf("Teardown saw %v, want [%d]", teardowns, first.Pid)
	}
	if got := testutil.ToFloat64(m.Restarts.WithLabelValues("t1")); got != 1 {
		t.Errorf("dls_service_restarts_total{plugin=t1} = %g, want 1", got)
	}

	stop()
	final := s.Status()
	if final.State != StateStopped || final.Pid != 0 || s.Process() != nil {
		t.Errorf("after ctx cancel: %+v, want stopped with no process", final)
	}
	if alive(second.Pid) {
		t.Errorf("process %d still exists after Run returned", second.Pid)
	}
	setups, teardowns, _ := life.snapshot()
	if setups != 2 || len(teardowns) != 2 {
		t.Errorf("%d Setups, %d Teardowns, want 2 of each", setups, len(teardowns))
	}
	life.mu.Lock()
	defer life.mu.Unlock()
	if len(life.badProc) > 0 {
		t.Errorf("Setup got incomplete processes: %v", life.badProc)
	}
}

func TestSupervisorPermanentSetupError(t *testing.T) {
	life := &fakeLife{setup: func(int) error { return Permanent(errors.New("config rejected")) }}
	s := New(testSpec("t2"), life, launcher, nil, logger(t))
	stop := running(t, s)
	st := waitFor(t, s, "failed", func(st Status) bool { return st.State == StateFailed })
	if !strings.Contains(st.LastError, "config rejected") {
		t.Errorf("LastError = %q", st.LastError)
	}
	if st.Pid != 0 || st.Healthy {
		t.Errorf("failed status %+v", st)
	}
	setups, teardowns, pids := life.snapshot()
	if setups != 1 {
		t.Errorf("%d Setup attempts, want 1 for a permanent error", setups)
	}
	if len(teardowns) != 1 {
		t.Errorf("%d Teardowns after a failed Setup, want 1", len(teardowns))
	}
	if len(pids) == 1 && alive(pids[0]) {
		t.Errorf("process %d of the failed Setup still exists", pids[0])
	}
	stop()
	if st := s.Status(); st.State != StateStopped {
		t.Errorf("after ctx cancel: %s, want stopped", st.State)
	}
}

func TestSupervisorTransientSetupErrorBacksOffThenFails(t *testing.T) {
	spec := testSpec("t3")
	spec.Restart = RestartPolicy{InitialDelay: 50 * time.Millisecond, MaxDelay: 100 * time.Millisecond, MaxFailures: 4, ResetAfter: time.Hour}
	life := &fakeLife{setup: func(n int) error { return fmt.Errorf("attempt %d: storage not ready", n) }}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := New(spec, life, launcher, m, logger(t))
	sawBackoff := make(chan struct{})
	go func() {
		// Watch for the backoff state between attempts.
		deadline := time.After(60 * time.Second)
		for {
			ch := s.Changed()
			switch s.Status().State {
			case StateBackoff:
				close(sawBackoff)
				return
			case StateFailed, StateStopped:
				return
			}
			select {
			case <-ch:
			case <-deadline:
				return
			}
		}
	}()
	running(t, s)

	st := waitFor(t, s, "failed", func(st Status) bool { return st.State == StateFailed })
	if n := life.setupCount(); n != spec.Restart.MaxFailures {
		t.Fatalf("%d Setup attempts before failed, want MaxFailures = %d", n, spec.Restart.MaxFailures)
	}
	if !strings.Contains(st.LastError, "attempt 4: storage not ready") {
		t.Errorf("LastError = %q, want the last attempt's error", st.LastError)
	}
	if st.Restarts != 3 {
		t.Errorf("Restarts = %d, want 3", st.Restarts)
	}
	if got := testutil.ToFloat64(m.Restarts.WithLabelValues("t3")); got != 3 {
		t.Errorf("dls_service_restarts_total = %g, want 3", got)
	}
	select {
	case <-sawBackoff:
	default:
		t.Error("never saw the backoff state between attempts")
	}
	life.mu.Lock()
	times := append([]time.Time(nil), life.setups...)
	life.mu.Unlock()
	for i := 1; i < len(times); i++ {
		want := backoff(spec.Restart, i)
		if gap := times[i].Sub(times[i-1]); gap < want {
			t.Errorf("attempt %d came %s after attempt %d, want at least the backoff %s", i+1, gap, i, want)
		}
	}

	// Restart gives a failed instance a fresh start: the failure count is
	// cleared, so it gets MaxFailures attempts again.
	s.Restart()
	waitFor(t, s, "failed again", func(st Status) bool { return st.State == StateFailed && life.setupCount() > 4 })
	if n := life.setupCount(); n != 2*spec.Restart.MaxFailures {
		t.Errorf("%d Setup attempts in all, want %d (MaxFailures after Restart)", n, 2*spec.Restart.MaxFailures)
	}

	life.setSetup(nil)
	s.Restart()
	st = waitFor(t, s, "running", func(st Status) bool { return st.State == StateRunning })
	if st.Pid <= 0 || !alive(st.Pid) {
		t.Errorf("running after Restart with pid %d", st.Pid)
	}
}

func TestSupervisorStopsDuringBackoff(t *testing.T) {
	spec := testSpec("t4")
	spec.Restart.InitialDelay, spec.Restart.MaxDelay = time.Hour, time.Hour
	life := &fakeLife{setup: func(int) error { return errors.New("not yet") }}
	s := New(spec, life, launcher, nil, logger(t))
	stop := running(t, s)
	waitFor(t, s, "backoff", func(st Status) bool { return st.State == StateBackoff })
	stop() // fails the test if Run waits out the hour
	if st := s.Status(); st.State != StateStopped {
		t.Errorf("state %s after ctx cancel during backoff, want stopped", st.State)
	}
	if n := life.setupCount(); n != 1 {
		t.Errorf("%d Setup attempts, want 1", n)
	}
}

// A process that dies is replaced without anyone asking.
func TestSupervisorReplacesCrashedProcess(t *testing.T) {
	life := &fakeLife{}
	s := New(testSpec("t5"), life, launcher, nil, logger(t))
	running(t, s)
	first := waitFor(t, s, "running", func(st Status) bool { return st.State == StateRunning })
	if err := syscall.Kill(first.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitFor(t, s, "a replacement", func(st Status) bool {
		return st.State == StateRunning && st.Pid != first.Pid
	})
	if second.Restarts != 1 || !strings.Contains(second.LastError, "exited") {
		t.Errorf("after a crash: %+v, want 1 restart and LastError saying the process exited", second)
	}
}

// A plugin that keeps failing its health checks is replaced.
func TestSupervisorReplacesUnhealthyProcess(t *testing.T) {
	spec := testSpec("t6")
	spec.HealthInterval, spec.HealthTimeout, spec.HealthFailures = 20*time.Millisecond, 5*time.Second, 2
	life := &fakeLife{}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := New(spec, configuring{life, `{"unhealthy": true}`, t.TempDir()}, launcher, m, logger(t))
	running(t, s)
	first := waitFor(t, s, "running", func(st Status) bool { return st.State == StateRunning })
	second := waitFor(t, s, "a replacement", func(st Status) bool {
		return st.State == StateRunning && st.Pid != first.Pid
	})
	if second.Restarts < 1 || !strings.Contains(second.LastError, "2 health checks failed in a row") {
		t.Errorf("after failed health checks: %+v", second)
	}
	if alive(first.Pid) {
		t.Errorf("unhealthy process %d still exists", first.Pid)
	}
	if got := testutil.ToFloat64(m.HealthChecks.WithLabelValues("fail")); got < 2 {
		t.Errorf("dls_health_checks_total{result=fail} = %g, want at least 2", got)
	}
}

// configuring is a Lifecycle that configures the plugin with cfg (JSON)
// before handing over to the wrapped fake.
type configuring struct {
	*fakeLife
	cfg     string
	dataDir string
}

func (c configuring) Setup(ctx context.Context, spec Spec, p *Process) error {
	errs, err := p.Base().Configure(ctx, baserpc.ConfigureArgs{ConfigJSON: []byte(c.cfg), Instance: spec.Name, DataDir: c.dataDir})
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return Permanent(errs)
	}
	return c.fakeLife.Setup(ctx, spec, p)
}

// TestLaunchErrorClasses: go-plugin's handshake failures, as its v1.8.0
// words them, are told apart: another protocol or another program is
// permanent, a silent exit may be a crash at start and is retried.
func TestLaunchErrorClasses(t *testing.T) {
	spec := testSpec("p1")
	for _, tc := range []struct {
		err       string
		want      string
		permanent bool
	}{
		{"incompatible API version with plugin. Plugin version: 2, Client versions: [1]",
			"speaks another plugin protocol than this host", true},
		{"incompatible core API version with plugin. Plugin version: 2, Core version: 1",
			"speaks another plugin protocol than this host", true},
		{"Unrecognized remote plugin message: Usage: foo [-x]\nThis usually means\n  the plugin was not compiled for this architecture",
			`its first line on stdout is "Usage: foo [-x]"`, true},
		{"Unrecognized remote plugin message: \nFailed to read any lines from plugin's stdout",
			"is not a DLS plugin (protocol", false},
		{"Unrecognized remote plugin message: \nThis usually means",
			"is not a DLS plugin (protocol", false},
		{"plugin exited before we could connect", "or failed during start", false},
	} {
		err := launchError(spec, errors.New(tc.err))
		if !strings.Contains(err.Error(), tc.want) || IsPermanent(err) != tc.permanent {
			t.Errorf("launchError(%q) = %q (permanent %v), want %q (permanent %v)", tc.err, err, IsPermanent(err), tc.want, tc.permanent)
		}
	}
}
