package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// pluginDir holds real plugin binaries built once for every test here.
var pluginDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dls-daemon-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pluginDir = dir
	for out, pkg := range map[string]string{
		"dls-protocol-test": "github.com/dls-project/dls/core/internal/testplugin",
		"dls-storage-file":  "github.com/dls-project/dls/examples/storage-file",
		"dls-auth-local":    "github.com/dls-project/dls/plugins/auth/local",
		"dls-auth-ldap":     "github.com/dls-project/dls/plugins/auth/ldap",
		"dls-storage-probe": "github.com/dls-project/dls/core/internal/teststorage",
		"dls-auth-probe":    "github.com/dls-project/dls/core/internal/testauth",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type harness struct {
	t      *testing.T
	d      *Daemon
	url    string
	cfg    string
	cancel context.CancelFunc
	done   chan error
	hup    chan os.Signal
}

// start runs a daemon on body (HCL after the header this adds).
func start(t *testing.T, body string) *harness {
	t.Helper()
	return startIn(t, t.TempDir(), body, nil)
}

// startLogged is start with the daemon's logger; nil: discard (or stderr
// with -v).
func startLogged(t *testing.T, body string, logger hclog.Logger) *harness {
	t.Helper()
	return startIn(t, t.TempDir(), body, logger)
}

// startIn is startLogged with the config and data dir in dir.
func startIn(t *testing.T, dir, body string, logger hclog.Logger) *harness {
	t.Helper()
	cfg := filepath.Join(dir, "dls.hcl")
	header := fmt.Sprintf("data_dir = %q\nplugin_dir = %q\nhttp {\n  listen = \"127.0.0.1:0\"\n  scrape_timeout = \"500ms\"\n}\n", filepath.Join(dir, "var"), pluginDir)
	if err := os.WriteFile(cfg, []byte(header+body), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Output: io.Discard, Level: hclog.Error})
		if testing.Verbose() {
			logger = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Debug})
		}
	}
	d, err := New(ctx, cfg, logger)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &harness{t: t, d: d, cfg: cfg, cancel: cancel, done: make(chan error, 1), hup: make(chan os.Signal, 1)}
	go func() { h.done <- d.Run(ctx, h.hup) }()
	actx, acancel := context.WithTimeout(ctx, 60*time.Second)
	defer acancel()
	addr := d.Addr(actx)
	if addr == "" {
		cancel()
		t.Fatal("daemon did not listen")
	}
	h.url = "http://" + addr
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
		h.t.Error("daemon did not stop within 30s")
	}
}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(h.url + path)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type readyz struct {
	Ready   bool `json:"ready"`
	Plugins []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Pid      int    `json:"pid"`
		Restarts int    `json:"restarts"`
		Error    string `json:"error"`
	} `json:"plugins"`
}

func (h *harness) readyz() (int, readyz) {
	code, body := h.get("/readyz")
	var r readyz
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		h.t.Fatalf("readyz: %v: %s", err, body)
	}
	return code, r
}

// waitFor polls cond until it holds or d passes.
func (h *harness) waitFor(d time.Duration, what string, cond func() bool) time.Duration {
	h.t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(25 * time.Millisecond)
	}
	h.t.Fatalf("timed out after %s waiting for %s", d, what)
	return 0
}

func (h *harness) plugin(name string) (state string, pid, restarts int, errText string) {
	_, r := h.readyz()
	for _, p := range r.Plugins {
		if p.Name == name {
			return p.State, p.Pid, p.Restarts, p.Error
		}
	}
	h.t.Fatalf("plugin %s not in /readyz", name)
	return
}

// metric returns the value of the first series matching name{labels...}.
func metric(body, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` ([0-9.e+-]+|NaN)$`)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

const twoPlugins = `
protocol "test" "alpha" {
  config {
    tick = "10ms"
  }
}
protocol "test" "beta" {}
storage "file" "files" {}
`

func TestServeReadyAndMetrics(t *testing.T) {
	h := start(t, twoPlugins)
	h.waitFor(10*time.Second, "/readyz 200", func() bool { c, _ := h.readyz(); return c == 200 })
	code, _ := h.get("/healthz")
	if code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	_, body := h.get("/metrics")
	for _, s := range []string{`dls_plugin_up{plugin="alpha"}`, `dls_plugin_up{plugin="beta"}`, `dls_plugin_up{plugin="files"}`} {
		if v, ok := metric(body, s); !ok || v != 1 {
			t.Errorf("%s = %v (present %v)", s, v, ok)
		}
	}
	h.waitFor(5*time.Second, "plugin counter", func() bool {
		_, body = h.get("/metrics")
		v, ok := metric(body, `dls_test_requests_total{plugin="alpha",type="tick"}`)
		return ok && v > 0
	})
	for _, s := range []string{
		`dls_plugin_info{kind="protocol",plugin="alpha",type="test",version="1.2.3"}`,
		`dls_test_latency_seconds_bucket{plugin="alpha",le="0.1"}`,
		`dls_disk_images{plugin="files"}`,
		`dls_service_restarts_total{plugin="alpha"}`,
		`dls_uptime_seconds`,
		`dls_store_purged_total{what="sessions"}`,
	} {
		if _, ok := metric(body, s); !ok {
			t.Errorf("missing %s", s)
		}
	}
	promtoolCheck(t, body)
}

// promtoolCheck lints a scrape with Prometheus's own promtool.
func promtoolCheck(t *testing.T, body string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not installed (package prometheus)")
		}
		t.Log("promtool not installed; lint skipped")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestKilledPluginRestarts(t *testing.T) {
	h := start(t, twoPlugins)
	h.waitFor(10*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	_, pid, _, _ := h.plugin("alpha")
	_, betaPid, _, _ := h.plugin("beta")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := h.waitFor(5*time.Second, "alpha running with a new pid", func() bool {
		st, np, _, _ := h.plugin("alpha")
		return st == "running" && np != pid && np != 0
	})
	t.Logf("alpha running again %s after kill -9", took)
	if took > 2*time.Second {
		t.Errorf("restart took %s, want < 2s", took)
	}
	_, body := h.get("/metrics")
	if v, _ := metric(body, `dls_service_restarts_total{plugin="alpha"}`); v != 1 {
		t.Errorf("restarts of alpha = %v, want 1", v)
	}
	if v, _ := metric(body, `dls_service_restarts_total{plugin="beta"}`); v != 0 {
		t.Errorf("restarts of beta = %v, want 0", v)
	}
	if _, np, _, _ := h.plugin("beta"); np != betaPid {
		t.Errorf("beta was restarted too")
	}
	h.waitFor(5*time.Second, "/readyz 200 again", func() bool { c, _ := h.readyz(); return c == 200 })
}

func TestCrashLoopEndsFailed(t *testing.T) {
	began := time.Now()
	h := start(t, `
protocol "test" "crashy" {
  restart {
    initial_delay = "100ms"
    max_delay     = "400ms"
    max_failures  = 4
  }
  config {
    crash_on_start = true
  }
}
protocol "test" "fine" {}
`)
	h.waitFor(20*time.Second, "crashy failed", func() bool { st, _, _, _ := h.plugin("crashy"); return st == "failed" })
	elapsed := time.Since(began)
	st, _, restarts, errText := h.plugin("crashy")
	t.Logf("failed after %s, %d restarts, last error: %s", elapsed, restarts, errText)
	// 4 attempts with 100+200+400 ms of backoff between them: no busy loop.
	if restarts != 3 {
		t.Errorf("restarts = %d, want 3 (4 attempts)", restarts)
	}
	if elapsed < 700*time.Millisecond {
		t.Errorf("gave up after %s: backoff not applied", elapsed)
	}
	time.Sleep(time.Second)
	if _, _, r2, _ := h.plugin("crashy"); r2 != restarts || st != "failed" {
		t.Errorf("still restarting after failing: %d → %d", restarts, r2)
	}
	code, r := h.readyz()
	if code != 503 || r.Ready {
		t.Errorf("/readyz = %d ready=%v with a failed plugin", code, r.Ready)
	}
	_, body := h.get("/metrics")
	if v, _ := metric(body, `dls_plugin_up{plugin="crashy"}`); v != 0 {
		t.Errorf("dls_plugin_up crashy = %v", v)
	}
	if v, _ := metric(body, `dls_plugin_up{plugin="fine"}`); v != 1 {
		t.Errorf("dls_plugin_up fine = %v", v)
	}
}

func TestHangingCollectDoesNotFailScrape(t *testing.T) {
	h := start(t, `
protocol "test" "stuck" {
  config {
    hang_collect = true
  }
}
protocol "test" "fine" {}
`)
	h.waitFor(10*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	began := time.Now()
	code, body := h.get("/metrics")
	took := time.Since(began)
	t.Logf("scrape with a hung plugin took %s", took)
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	if took > 1500*time.Millisecond {
		t.Errorf("scrape took %s; deadline is 500ms", took)
	}
	if v, _ := metric(body, `dls_plugin_up{plugin="stuck"}`); v != 0 {
		t.Errorf("up stuck = %v", v)
	}
	if v, _ := metric(body, `dls_plugin_up{plugin="fine"}`); v != 1 {
		t.Errorf("up fine = %v", v)
	}
	if v, _ := metric(body, `dls_plugin_scrape_errors_total{plugin="stuck"}`); v < 1 {
		t.Errorf("scrape errors stuck = %v", v)
	}
	if strings.Contains(body, `dls_test_requests_total{plugin="stuck"`) {
		t.Errorf("stuck plugin's series present")
	}
}

func TestRefusedBinaries(t *testing.T) {
	notPlugin := filepath.Join(t.TempDir(), "dls-protocol-fake")
	if err := os.WriteFile(notPlugin, []byte("#!/bin/sh\necho hello\nsleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := start(t, fmt.Sprintf(`
protocol "test" "tampered" {
  sha256 = "%s"
}
protocol "fake" "impostor" {
  source = %q
  restart {
    max_failures = 5
  }
}
storage "test" "wrongkind" {
  source = "dls-protocol-test"
}
`, strings.Repeat("ab", 32), notPlugin))
	for name, want := range map[string]string{
		"tampered":  "does not match its sha256",
		"impostor":  "is not a DLS plugin",
		"wrongkind": `is a protocol "test" plugin, the config asks for storage "test"`,
	} {
		h.waitFor(30*time.Second, name+" failed", func() bool { st, _, _, _ := h.plugin(name); return st == "failed" })
		if _, _, restarts, e := h.plugin(name); !strings.Contains(e, want) || restarts != 0 {
			t.Errorf("%s: error %q does not say %q, or it was retried (%d restarts)", name, e, want, restarts)
		}
	}
}

func TestConfigErrorsNamePosition(t *testing.T) {
	h := start(t, `
protocol "test" "bad" {
  config {
    port = 70000
  }
}
`)
	h.waitFor(10*time.Second, "bad failed", func() bool { st, _, _, _ := h.plugin("bad"); return st == "failed" })
	_, _, _, e := h.plugin("bad")
	if !regexp.MustCompile(`dls\.hcl:10:12: .*port 70000 is out of range`).MatchString(e) {
		t.Errorf("error %q does not name dls.hcl:10:12 (the value)", e)
	}
}

func TestReloadTouchesOnlyChangedPlugin(t *testing.T) {
	h := start(t, twoPlugins)
	h.waitFor(10*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	_, alphaPid, _, _ := h.plugin("alpha")
	_, betaPid, _, _ := h.plugin("beta")
	b, _ := os.ReadFile(h.cfg)
	changed := strings.Replace(string(b), `tick = "10ms"`, `tick = "20ms"`, 1) + "\nprotocol \"test\" \"gamma\" {}\n"
	changed = strings.Replace(changed, `protocol "test" "beta" {}`, "", 1)
	if err := os.WriteFile(h.cfg, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	h.hup <- syscall.SIGHUP
	h.waitFor(10*time.Second, "gamma running", func() bool {
		_, r := h.readyz()
		for _, p := range r.Plugins {
			if p.Name == "gamma" && p.State == "running" {
				return true
			}
		}
		return false
	})
	_, r := h.readyz()
	for _, p := range r.Plugins {
		switch p.Name {
		case "alpha":
			if p.Pid != alphaPid || p.State != "running" {
				t.Errorf("alpha replaced (pid %d → %d, %s) instead of reconfigured", alphaPid, p.Pid, p.State)
			}
		case "beta":
			t.Errorf("beta still present after removal")
		}
	}
	if err := syscall.Kill(betaPid, 0); err == nil {
		h.waitFor(5*time.Second, "beta process gone", func() bool { return syscall.Kill(betaPid, 0) != nil })
	}
}

func TestServeOnPostgres(t *testing.T) {
	if os.Getenv("DLS_PG_DSN") == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("DLS_PG_DSN is not set (run .ci/postgres-setup.sh)")
		}
		t.Skip("DLS_PG_DSN is not set")
	}
	h := start(t, `
database "postgres" {
  dsn = env("DLS_PG_DSN")
}
protocol "test" "alpha" {}
`)
	h.waitFor(10*time.Second, "/readyz 200", func() bool { c, _ := h.readyz(); return c == 200 })
	_, body := h.get("/metrics")
	if v, ok := metric(body, "dls_database_queries_total"); !ok || v == 0 {
		t.Errorf("dls_database_queries_total = %v (present %v)", v, ok)
	}
}
