package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the dls binary and plugins built once for these tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dls-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	builds := map[string]string{
		"dls":                       "github.com/dls-project/dls/core/cmd/dls",
		"plugins/dls-protocol-test": "github.com/dls-project/dls/core/internal/testplugin",
		"plugins/dls-storage-file":  "github.com/dls-project/dls/examples/storage-file",
	}
	// Every first-party plugin, as `make build` names them.
	mains, _ := filepath.Glob("../../../plugins/*/*/main.go")
	for _, m := range mains {
		typ := filepath.Dir(m)
		kind := filepath.Dir(typ)
		name := "dls-" + filepath.Base(kind) + "-" + filepath.Base(typ)
		builds["plugins/"+name] = "github.com/dls-project/dls/plugins/" + filepath.Base(kind) + "/" + filepath.Base(typ)
	}
	for out, pkg := range builds {
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

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "dls.hcl")
	header := fmt.Sprintf("data_dir = %q\nplugin_dir = %q\n", filepath.Join(dir, "var"), filepath.Join(binDir, "plugins"))
	if err := os.WriteFile(path, []byte(header+body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func dls(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "dls"), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

func TestValidateAcceptsRepoConfig(t *testing.T) {
	// The repository's dls.hcl names plugins in bin/plugins; point it at
	// the ones built here.
	repo, err := os.ReadFile("../../../dls.hcl")
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(repo), `plugin_dir = "bin/plugins"`, fmt.Sprintf("plugin_dir = %q", filepath.Join(binDir, "plugins")), 1)
	path := filepath.Join(t.TempDir(), "dls.hcl")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := dls(t, "validate", "--config", path)
	if code != 0 {
		t.Fatalf("validate exit %d: %s%s", code, out, errOut)
	}
}

func TestValidateNamesUnknownPluginAttribute(t *testing.T) {
	path := writeConfig(t, `
protocol "test" "t1" {
  config {
    tick  = "1s"
    tikc  = "2s"
  }
}
`)
	_, errOut, code := dls(t, "validate", "--config", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr: %s", code, errOut)
	}
	want := path + ":7:5: "
	if !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "tikc") {
		t.Fatalf("stderr %q does not start with %q naming tikc", errOut, want)
	}
}

func TestValidateNamesBadFormatAndHostErrors(t *testing.T) {
	path := writeConfig(t, `
protocol "test" "t1" {
  config {
    listen = "localhost:99999"
  }
}
storage "file" "t1" {}
`)
	_, errOut, code := dls(t, "validate", "--config", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut, path+":9:16: ") {
		t.Errorf("duplicate instance name not reported at 9:16: %s", errOut)
	}
}

func TestPluginsListsSchema(t *testing.T) {
	path := writeConfig(t, `protocol "test" "t1" {}`+"\n")
	out, errOut, code := dls(t, "plugins", "--config", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"t1", "protocol", "test", "1.2.3", "tick = string", "duration", "pool {", "TCP address to listen on"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestHostKillLeavesNoPlugins kills the host with SIGKILL: its plugins must
// not outlive it (parent-death signal, SDK watchdog).
func TestHostKillLeavesNoPlugins(t *testing.T) {
	path := writeConfig(t, `
http {
  listen = "127.0.0.1:0"
}
protocol "test" "a" {}
protocol "test" "b" {}
storage "file" "f" {}
`)
	cmd := exec.Command(filepath.Join(binDir, "dls"), "serve", "--config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if i := strings.Index(sc.Text(), "http="); i >= 0 && strings.Contains(sc.Text(), "dls serving") {
				addr <- strings.Fields(sc.Text()[i+5:])[0]
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("host did not start serving")
	}
	var pids []int
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		pids = pluginPids(t, base)
		if len(pids) == 3 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(pids) != 3 {
		t.Fatalf("plugin pids %v, want 3", pids)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed := time.Now()
	for time.Since(killed) < 5*time.Second {
		alive := 0
		for _, p := range pids {
			if processAlive(p) {
				alive++
			}
		}
		if alive == 0 {
			t.Logf("all %d plugins gone %s after the host was killed", len(pids), time.Since(killed))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("plugins still running 5s after the host was killed: %v", pids)
}

func pluginPids(t *testing.T, base string) []int {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var r struct {
		Plugins []struct {
			Pid int `json:"pid"`
		} `json:"plugins"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range r.Plugins {
		if p.Pid > 0 {
			pids = append(pids, p.Pid)
		}
	}
	return pids
}

// processAlive is false for gone and zombie processes.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func dlsIn(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "dls"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), 0
}

// TestUserAdminWithoutHost manages local users with no host running.
func TestUserAdminWithoutHost(t *testing.T) {
	path := writeConfig(t, `
auth "local" "admins" {
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
`)
	if _, e, code := dlsIn(t, "correct horse battery\n", "user", "add", "alice", "--password-stdin", "--role", "admin", "--config", path); code != 0 {
		t.Fatalf("user add: exit %d: %s", code, e)
	}
	if _, e, code := dlsIn(t, "correct horse battery\n", "user", "add", "alice", "--password-stdin", "--role", "admin", "--config", path); code != 1 || !strings.Contains(e, "exists") {
		t.Errorf("second add: exit %d: %s", code, e)
	}
	if _, e, code := dlsIn(t, "short\n", "user", "add", "bob", "--password-stdin", "--role", "viewer", "--config", path); code != 1 {
		t.Errorf("short password accepted: exit %d: %s", code, e)
	}
	if _, e, code := dlsIn(t, "x\n", "user", "add", "carol", "--password-stdin", "--role", "root", "--config", path); code != 2 || !strings.Contains(e, "--role") {
		t.Errorf("bad role: exit %d: %s", code, e)
	}
	out, e, code := dlsIn(t, "", "user", "list", "--config", path)
	if code != 0 || !strings.Contains(out, "alice") || !strings.Contains(out, "admin") || strings.Contains(out, "bob") {
		t.Fatalf("user list: exit %d: %s%s", code, out, e)
	}
}

// TestRepoConfigServes runs the repository's dls.hcl (what `make run`
// serves) with every plugin it names, moved to free ports and a temp data
// dir: every plugin must come up and /readyz answer 200.
func TestRepoConfigServes(t *testing.T) {
	repo, err := os.ReadFile("../../../dls.hcl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	body := string(repo)
	for old, new := range map[string]string{
		`plugin_dir = "bin/plugins"`: fmt.Sprintf("plugin_dir = %q", filepath.Join(binDir, "plugins")),
		`data_dir   = "var"`:         fmt.Sprintf("data_dir = %q", filepath.Join(dir, "var")),
		`"127.0.0.1:9180"`:           `"127.0.0.1:0"`,
		`"127.0.0.1:6970"`:           `"127.0.0.1:0"`,
	} {
		if !strings.Contains(body, old) {
			t.Fatalf("dls.hcl no longer contains %s: update this test", old)
		}
		body = strings.Replace(body, old, new, 1)
	}
	path := filepath.Join(dir, "dls.hcl")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "dls"), "serve", "--config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	addr := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if i := strings.Index(sc.Text(), "http="); i >= 0 && strings.Contains(sc.Text(), "dls serving") {
				addr <- strings.Fields(sc.Text()[i+5:])[0]
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-time.After(60 * time.Second):
		t.Fatal("host did not start serving")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz = %d: %s", resp.StatusCode, b)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestValidateWarnsSharedListener: an http.listen that is not loopback,
// without boot.listen, is a warning at the attribute, not a failure.
func TestValidateWarnsSharedListener(t *testing.T) {
	path := writeConfig(t, "http {\n  listen = \"0.0.0.0:9180\"\n}\n")
	out, errOut, code := dls(t, "validate", "--config", path)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and ok", code, out, errOut)
	}
	want := path + `:4:12: warning: Admin API on the boot network; http.listen "0.0.0.0:9180" is not a loopback address and boot.listen is not set, so /api/v1 and /metrics are served wherever machines fetch /boot; set boot { listen = "<boot network address>:9184" } and keep http.listen on loopback or a management address.` + "\n"
	if errOut != want {
		t.Errorf("stderr\n%s\nwant\n%s", errOut, want)
	}
	path = writeConfig(t, "http {\n  listen = \"0.0.0.0:9180\"\n}\nboot {\n  listen = \"192.168.77.1:9184\"\n}\n")
	if out, errOut, code := dls(t, "validate", "--config", path); code != 0 || errOut != "" {
		t.Errorf("with boot.listen: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
