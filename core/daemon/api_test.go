package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/internal/pluginrpc/authrpc"
)

func (h *harness) do(method, path, token, body string) (int, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminAPIThroughRealAuthPlugin logs in against the local auth plugin
// running as a subprocess, writes through the API and finds the write in
// the audit log.
func TestAdminAPIThroughRealAuthPlugin(t *testing.T) {
	h := start(t, `
auth "local" "admins" {
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
storage "file" "files" {}
`)
	h.waitFor(10*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	h.d.mu.Lock()
	p := h.d.instances["admins"].sup.Process()
	h.d.mu.Unlock()
	if err := createUser(p, "alice", "correct horse battery", "admin"); err != nil {
		t.Fatal(err)
	}
	if code, _ := h.do("POST", "/api/v1/auth/login", "", `{"username":"alice","password":"wrong password!"}`); code != 401 {
		t.Fatalf("wrong password: %d", code)
	}
	code, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"alice","password":"correct horse battery"}`)
	if code != 200 {
		t.Fatalf("login: %d %s", code, body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("login answer %s: %v", body, err)
	}
	if code, body := h.do("POST", "/api/v1/images", tok.AccessToken, `{"name":"lab","storage":"files"}`); code/100 != 2 {
		t.Fatalf("create image: %d %s", code, body)
	}
	if code, body := h.do("POST", "/api/v1/clients", tok.AccessToken, `{"name":"pc1","mac":"52:54:00:00:00:01","image":"lab"}`); code/100 != 2 {
		t.Fatalf("create client: %d %s", code, body)
	}
	if code, _ := h.do("GET", "/api/v1/clients", "", ""); code != 401 {
		t.Errorf("no token: %d", code)
	}
	code, body = h.do("GET", "/api/v1/audit", tok.AccessToken, "")
	if code != 200 || !strings.Contains(body, "client/pc1") || !strings.Contains(body, "alice") {
		t.Errorf("audit: %d %s", code, body)
	}
	_, metrics := h.get("/metrics")
	if v, ok := metric(metrics, `dls_auth_failures_total{reason="bad_credentials"}`); !ok || v != 1 {
		t.Errorf("bad_credentials failures = %v (%v)", v, ok)
	}
}

func createUser(p *supervisor.Process, name, password, role string) error {
	return p.Client.(*authrpc.Client).CreateUser(context.Background(), name, password, []string{role})
}
