//go:build linux

package daemon

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/slapdtest"
)

// TestAdminAPILoginThroughLDAP logs in through the API against a real
// slapd, with the ldap auth plugin running as a subprocess of the host:
// the directory's groups become DLS roles (operator, admin), wrong
// passwords are 401, a user in no role group is 403, and a directory that
// is down is 503, not a failed login. Skipped without slapd, except in CI.
func TestAdminAPILoginThroughLDAP(t *testing.T) {
	s := slapdtest.Start(t,
		slapdtest.WithUser("carol", "carol-password", "operator"), // groupOfNames
		slapdtest.WithUser("dave", "dave-password", "staff"),      // no group that maps to a role
		slapdtest.WithUser("erin", "erin-password"),
		slapdtest.WithPosixGroup("admin", "erin"), // memberUid
	)
	h := start(t, fmt.Sprintf(`
auth "ldap" "dir" {
  config {
    url           = %q
    ca_file       = %q
    bind_dn       = %q
    bind_password = %q
    user_base     = %q
    group_base    = %q
  }
}
storage "file" "files" {}
`, s.LDAPSURL, s.CAFile, s.ServiceDN, s.ServicePassword, s.PeopleDN, s.GroupsDN))
	h.waitFor(10*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })

	type tokens struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		Role         string `json:"role"`
	}
	login := func(user, password string, wantRole string) tokens {
		t.Helper()
		code, body := h.do("POST", "/api/v1/auth/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password))
		if code != 200 {
			t.Fatalf("login as %s: %d %s", user, code, body)
		}
		var tok tokens
		if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.AccessToken == "" || tok.RefreshToken == "" {
			t.Fatalf("login as %s: answer %s: %v", user, body, err)
		}
		if tok.Role != wantRole {
			t.Errorf("login as %s: role %q, want %q", user, tok.Role, wantRole)
		}
		return tok
	}

	carol := login("carol", "carol-password", "operator")
	for _, c := range []struct{ user, password string }{
		{"carol", "wrong-password"},
		{"mallory", "carol-password"},
	} {
		if code, body := h.do("POST", "/api/v1/auth/login", "", fmt.Sprintf(`{"username":%q,"password":%q}`, c.user, c.password)); code != 401 {
			t.Errorf("login as %s with a wrong password: %d %s", c.user, code, body)
		}
	}
	if code, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"dave","password":"dave-password"}`); code != 403 || !strings.Contains(body, "no DLS role") {
		t.Errorf("login as dave (no role group): %d %s", code, body)
	}

	// An operator reads clients but does not create images.
	if code, body := h.do("GET", "/api/v1/clients", carol.AccessToken, ""); code != 200 {
		t.Errorf("operator GET clients: %d %s", code, body)
	}
	if code, body := h.do("POST", "/api/v1/images", carol.AccessToken, `{"name":"lab","storage":"files"}`); code != 403 {
		t.Errorf("operator POST images: %d %s, want 403", code, body)
	}
	// An admin (through a posixGroup) does.
	erin := login("erin", "erin-password", "admin")
	if code, body := h.do("POST", "/api/v1/images", erin.AccessToken, `{"name":"lab","storage":"files"}`); code/100 != 2 {
		t.Errorf("admin POST images: %d %s", code, body)
	}
	code, body := h.do("GET", "/api/v1/audit", erin.AccessToken, "")
	if code != 200 || !strings.Contains(body, "user/carol") || !strings.Contains(body, "image/lab") {
		t.Errorf("audit: %d %s", code, body)
	}

	// The directory down: the host cannot tell, which is not a failed login.
	s.Stop()
	if code, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"carol","password":"carol-password"}`); code != 503 {
		t.Errorf("login with slapd down: %d %s, want 503", code, body)
	}

	_, metrics := h.get("/metrics")
	for series, want := range map[string]float64{
		`dls_auth_failures_total{reason="bad_credentials"}`:                  2,
		`dls_auth_failures_total{reason="no_role"}`:                          1,
		`dls_auth_failures_total{reason="unavailable"}`:                      1,
		`dls_auth_plugin_verifications_total{plugin="dir",result="ok"}`:      3,
		`dls_auth_plugin_verifications_total{plugin="dir",result="invalid"}`: 2,
		`dls_auth_plugin_verifications_total{plugin="dir",result="error"}`:   1,
	} {
		if v, ok := metric(metrics, series); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
}
