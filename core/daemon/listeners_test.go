package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// bootFiles makes a boot.files folder holding hello.txt.
func bootFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from boot files\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func status(t *testing.T, method, url string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestBootListenerServesOnlyBoot: with boot.listen, the boot listener
// answers /boot and 404 for the admin API, metrics and probes; the admin
// listener no longer answers /boot.
func TestBootListenerServesOnlyBoot(t *testing.T) {
	h := start(t, fmt.Sprintf("boot {\n  listen = \"127.0.0.1:0\"\n  files = %q\n}\n", bootFiles(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bootAddr := h.d.BootAddr(ctx)
	if bootAddr == "" || "http://"+bootAddr == h.url {
		t.Fatalf("boot listener %q, admin listener %s", bootAddr, h.url)
	}
	boot := "http://" + bootAddr
	if code := status(t, "GET", boot+"/boot/files/hello.txt"); code != 200 {
		t.Errorf("boot listener /boot/files/hello.txt = %d, want 200", code)
	}
	for _, rq := range []struct{ method, path string }{
		{"GET", "/api/v1/clients"}, {"POST", "/api/v1/auth/login"}, {"GET", "/api/v1/openapi.json"},
		{"GET", "/metrics"}, {"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/"}, {"GET", "/bootx"},
	} {
		if code := status(t, rq.method, boot+rq.path); code != 404 {
			t.Errorf("boot listener %s %s = %d, want 404", rq.method, rq.path, code)
		}
	}
	if code := status(t, "GET", h.url+"/boot/files/hello.txt"); code != 404 {
		t.Errorf("admin listener /boot/files/hello.txt = %d, want 404", code)
	}
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/api/v1/clients": 401, "/api/v1/openapi.json": 200} {
		if code := status(t, "GET", h.url+path); code != want {
			t.Errorf("admin listener %s = %d, want %d", path, code, want)
		}
	}
}

// TestNoBootListenerKeepsBootOnHTTP: without boot.listen, /boot stays on
// http.listen beside the API, as before.
func TestNoBootListenerKeepsBootOnHTTP(t *testing.T) {
	h := start(t, fmt.Sprintf("boot {\n  files = %q\n}\n", bootFiles(t)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if a := h.d.BootAddr(ctx); a != "" {
		t.Errorf("boot listener %q without boot.listen", a)
	}
	for path, want := range map[string]int{"/boot/files/hello.txt": 200, "/metrics": 200, "/api/v1/clients": 401} {
		if code := status(t, "GET", h.url+path); code != want {
			t.Errorf("%s = %d, want %d", path, code, want)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReloadLogsBootListenChange: a reload cannot move a listener; it says
// so and the boot listener keeps serving where it was.
func TestReloadLogsBootListenChange(t *testing.T) {
	files := bootFiles(t)
	var log syncBuffer
	h := startLogged(t, fmt.Sprintf("boot {\n  listen = \"127.0.0.1:0\"\n  files = %q\n}\n", files),
		hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Info}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bootAddr := h.d.BootAddr(ctx)
	src, err := os.ReadFile(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(src), `listen = "127.0.0.1:0"`+"\n  files", `listen = "127.0.0.1:1"`+"\n  files", 1)
	if next == string(src) {
		t.Fatal("config unchanged")
	}
	if err := os.WriteFile(h.cfg, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	h.d.Reload(ctx)
	want := `[WARN]  reload: boot.listen changed; restart dls to move /boot: serving=` + bootAddr + ` configured=127.0.0.1:1`
	if !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, log.String())
	}
	if code := status(t, "GET", "http://"+bootAddr+"/boot/files/hello.txt"); code != 200 {
		t.Errorf("boot listener after reload = %d, want 200", code)
	}
}

// TestServeLogsSharedListenerWarning: the validate warning is logged by
// the daemon too, which still starts.
func TestServeLogsSharedListenerWarning(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "dls.hcl")
	text := fmt.Sprintf("data_dir = %q\nhttp {\n  listen = \"0.0.0.0:0\"\n}\n", filepath.Join(dir, "var"))
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	d, err := New(context.Background(), cfg, hclog.New(&hclog.LoggerOptions{Output: &log, Level: hclog.Info}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.store.Close()
	want := "[WARN]  " + cfg + `:3:12: warning: Admin API on the boot network; http.listen "0.0.0.0:0" is not a loopback address`
	if !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, log.String())
	}
}
