package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// refreshStatus presents a refresh token to the host and answers the
// status.
func (h *testHost) refreshStatus(tok string) int {
	h.t.Helper()
	resp, err := http.Post(h.url+"/api/v1/auth/refresh", "application/json", strings.NewReader(fmt.Sprintf(`{"refresh_token":%q}`, tok)))
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestUserChangesRevokeAndAudit: `dls user passwd` and `dls user delete`,
// run as their own processes with the real local auth plugin and without
// the API, revoke the user's refresh tokens in the state store the host
// uses, so the next refresh is refused: the host's auth backend here is a
// fake that still knows the user, so the revocation alone refuses it. Each
// change is in the audit log with the OS user as actor and source "cli".
func TestUserChangesRevokeAndAudit(t *testing.T) {
	h := newTestHost(t)
	dir := filepath.Dir(h.env["XDG_CONFIG_HOME"]) // holds the host's dls.db
	path := filepath.Join(dir, "dls.hcl")
	cfg := fmt.Sprintf(`data_dir = %q
plugin_dir = %q
auth "local" "admins" {
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
`, dir, filepath.Join(binDir, "plugins"))
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	user := func(stdin string, args ...string) {
		t.Helper()
		if out, e, code := dlsIn(t, stdin, append(append([]string{"user"}, args...), "--config", path)...); code != 0 {
			t.Fatalf("dls user %s: exit %d: %s%s", strings.Join(args, " "), code, out, e)
		}
	}
	user("correct horse battery\n", "add", "alice", "--password-stdin", "--role", "admin")

	h.login("alice")
	first := h.creds().RefreshToken
	h.login("vera")
	vera := h.creds().RefreshToken
	h.login("alice")
	second := h.creds().RefreshToken

	user("second horse battery\n", "passwd", "alice", "--password-stdin")
	for _, tok := range []string{first, second} {
		if code := h.refreshStatus(tok); code != http.StatusUnauthorized {
			t.Errorf("refresh after dls user passwd: %d, want 401", code)
		}
	}
	if code := h.refreshStatus(vera); code != http.StatusOK {
		t.Errorf("another user's refresh after dls user passwd: %d, want 200", code)
	}

	h.clock.Add(2 * time.Second) // past the host's in-memory denial of alice's tokens
	h.login("alice")
	third := h.creds().RefreshToken
	user("", "delete", "alice")
	if code := h.refreshStatus(third); code != http.StatusUnauthorized {
		t.Errorf("refresh after dls user delete: %d, want 401", code)
	}

	entries, err := h.store.ListAudit(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"user.add": `"role":"admin"`, "user.passwd": "refresh tokens revoked", "user.delete": "refresh tokens revoked"}
	for _, e := range entries {
		if frag, ok := want[e.Action]; ok {
			if e.Actor != osUser() || e.Source != "cli" || e.Object != "user/alice" || !strings.Contains(e.Detail, frag) || !strings.Contains(e.Detail, `"auth":"admins"`) {
				t.Errorf("audit entry %+v: want actor %s, source cli, user/alice, detail with %s", e, osUser(), frag)
			}
			if strings.Contains(e.Detail, "horse") {
				t.Errorf("a password is in the audit log: %+v", e)
			}
			delete(want, e.Action)
		}
	}
	if len(want) != 0 {
		t.Errorf("audit entries missing: %v", want)
	}
}

// TestUserChangeNeedsTheStore: a state store that cannot be opened stops
// a change before anything is changed.
func TestUserChangeNeedsTheStore(t *testing.T) {
	path := writeConfig(t, `
database "sqlite" {
  path = "/nonexistent-dir-dls/dls.db"
}
auth "local" "admins" {
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
`)
	_, e, code := dlsIn(t, "correct horse battery\n", "user", "add", "alice", "--password-stdin", "--role", "admin", "--config", path)
	if code != 1 || !strings.Contains(e, "state store") || !strings.Contains(e, "nothing changed") {
		t.Fatalf("user add with no store: exit %d: %s", code, e)
	}
	out, e, code := dlsIn(t, "", "user", "list", "--config", path)
	if code != 0 || strings.Contains(out, "alice") {
		t.Errorf("user list after the refused add: exit %d: %s%s", code, out, e)
	}
}
