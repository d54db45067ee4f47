//go:build linux

package netnstest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// HTTPAddr is where the host's configs in these tests listen for HTTP
// (/readyz, /metrics), inside the host's namespace.
const HTTPAddr = "127.0.0.1:9180"

// Paths are what a host's config names: its data directory, its plugin
// directory and a 1 MiB image file.
type Paths struct {
	DataDir, PluginDir, Image string
}

// Host is bin/dls serve running in a namespace.
type Host struct {
	t      *testing.T
	ns     string
	dir    string
	config string
	cmd    *exec.Cmd
	log    *os.File
	bin    string
}

// StartHost writes the config config returns and runs the host in ns,
// until it is ready (or fails t) and until the test ends.
func (l *Lab) StartHost(t *testing.T, ns string, config func(Paths) string) *Host {
	t.Helper()
	bin := l.Binaries(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "lab.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "dls.hcl")
	text := config(Paths{DataDir: filepath.Join(dir, "var"), PluginDir: filepath.Join(bin, "plugins"), Image: img})
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	h := &Host{t: t, ns: ns, dir: dir, config: cfg, bin: bin}
	h.Start()
	t.Cleanup(h.Stop)
	return h
}

// DataDir is the host's data directory (its store is dls.db in it).
func (h *Host) DataDir() string { return filepath.Join(h.dir, "var") }

// Start runs the host (again, after Kill9 or Stop) and waits until it is
// ready.
func (h *Host) Start() {
	h.t.Helper()
	log, err := os.OpenFile(filepath.Join(h.dir, "host.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	args := InNS(h.ns, filepath.Join(h.bin, "dls"), "serve", "--config", h.config)
	h.cmd = exec.Command(args[0], args[1:]...)
	h.cmd.Stdout, h.cmd.Stderr, h.log = log, log, log
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	h.WaitReady()
}

// WaitReady waits for /readyz in the namespace: every plugin serving.
func (h *Host) WaitReady() {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if code, _ := h.Get("/readyz"); code == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.t.Fatalf("host not ready within 60s; log:\n%s", h.LogText())
}

// Get fetches path from the host's HTTP listener inside its namespace
// (code 0: no answer).
func (h *Host) Get(path string) (int, string) {
	var code int
	var body string
	_ = EnterNS(h.ns, func() error {
		c, err := net.DialTimeout("tcp", HTTPAddr, time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: dls\r\n\r\n", path)
		r := bufio.NewReader(c)
		status, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		f := strings.Fields(status)
		if len(f) >= 2 {
			code, _ = strconv.Atoi(f[1])
		}
		var sb strings.Builder
		inBody := false
		for {
			line, err := r.ReadString('\n')
			if inBody {
				sb.WriteString(line)
			} else if line == "\r\n" {
				inBody = true
			}
			if err != nil {
				break
			}
		}
		body = sb.String()
		return nil
	})
	return code, body
}

// LogText is what the host logged.
func (h *Host) LogText() string {
	b, _ := os.ReadFile(filepath.Join(h.dir, "host.log"))
	return string(b)
}

// PluginPid is the pid of the host's child whose command name contains
// name (0: none).
func (h *Host) PluginPid(name string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], name) {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[1] == strconv.Itoa(h.hostPid()) {
			return pid
		}
	}
	return 0
}

// hostPid is the dls process itself (ip netns exec execs it).
func (h *Host) hostPid() int {
	if h.cmd == nil || h.cmd.Process == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// Kill9 kills the host with SIGKILL: nothing it holds is saved.
func (h *Host) Kill9() {
	_ = h.cmd.Process.Signal(syscall.SIGKILL)
	_ = h.cmd.Wait()
	h.cmd = nil
	h.closeLog()
}

// Stop ends the host with SIGTERM (its plugins store what they hold),
// killed after 15 s; it logs the host's log when the test failed.
func (h *Host) Stop() {
	if h.cmd != nil {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = h.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = h.cmd.Process.Kill()
			<-done
		}
		h.cmd = nil
		h.closeLog()
	}
	if h.t.Failed() {
		h.t.Logf("host log:\n%s", h.LogText())
	}
}

func (h *Host) closeLog() {
	if h.log != nil {
		_ = h.log.Close()
		h.log = nil
	}
}

// Metric reads one sample from the host's /metrics (-1: absent).
func (h *Host) Metric(series string) float64 {
	_, body := h.Get("/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
			return v
		}
	}
	return -1
}
