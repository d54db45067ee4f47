package api

import (
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// refresh presents tok and answers the response.
func (e *env) refreshWith(tok string) (int, tokenPair) {
	e.t.Helper()
	var p tokenPair
	w := e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": tok})
	if w.Code == http.StatusOK {
		e.want(w, http.StatusOK, &p)
	}
	return w.Code, p
}

// storedToken returns the stored refresh token tok.
func (e *env) storedToken(tok string) store.RefreshToken {
	e.t.Helper()
	t, err := e.st.GetRefreshToken(e.t.Context(), hashToken(tok))
	if err != nil {
		e.t.Fatalf("stored token: %v", err)
	}
	return t
}

// TestRefreshDeletedUser: a user the auth plugin no longer knows gets 401
// at refresh, and loses every token: the refresh token is revoked, the
// access token denied, other sessions of theirs revoked too.
func TestRefreshDeletedUser(t *testing.T) {
	e := newEnv(t)
	p := e.login("oscar")
	other := e.login("oscar")
	e.auth.remove("oscar")
	e.clock.Add(time.Minute)
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}), http.StatusUnauthorized, "no longer exists", "")
	if e.failures("user_gone") != 1 {
		t.Errorf("user_gone failures = %v, want 1", e.failures("user_gone"))
	}
	for _, tok := range []string{p.RefreshToken, other.RefreshToken} {
		if st := e.storedToken(tok); !st.Revoked {
			t.Errorf("refresh token of the deleted user not revoked: %+v", st)
		}
		e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": tok}), http.StatusUnauthorized, "revoked", "")
	}
	e.wantError(e.do("GET", "/clients", p.AccessToken, nil), http.StatusUnauthorized, "revoked", "")
	if acts := e.st.auditActions(); !slices.Contains(acts, "auth.user_gone") {
		t.Errorf("audit = %v, want auth.user_gone", acts)
	}
	// Other users are untouched.
	v := e.login("vera")
	if code, _ := e.refreshWith(v.RefreshToken); code != http.StatusOK {
		t.Errorf("vera's refresh: %d", code)
	}
}

// TestRefreshDisabledUser: a user who exists but may not log in (the
// plugin answers ErrUserNotFound to Lookup) is refused the same way.
func TestRefreshDisabledUser(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	e.auth.set("alice", func(u *fakeUser) { u.disabled = true })
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}), http.StatusUnauthorized, "disabled", "")
	if st := e.storedToken(p.RefreshToken); !st.Revoked {
		t.Errorf("token of the disabled user: %+v, want revoked", st)
	}
	// Enabled again: the revoked token stays revoked; a new login works.
	e.auth.set("alice", func(u *fakeUser) { u.disabled = false })
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}), http.StatusUnauthorized, "revoked", "")
	e.clock.Add(time.Second) // past the in-memory denial of her tokens
	e.login("alice")
}

// TestRefreshDemotedUser: groups are read again at refresh; the role of
// the new tokens is what they map to now.
func TestRefreshDemotedUser(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	e.want(e.do("POST", "/clients", p.AccessToken, map[string]any{"name": "pc-01", "mac": "52:54:00:00:00:01", "image": "win11"}), http.StatusCreated, nil)
	e.auth.set("alice", func(u *fakeUser) { u.groups = []string{"staff", "viewer"} })
	e.clock.Add(time.Minute)
	code, p2 := e.refreshWith(p.RefreshToken)
	if code != http.StatusOK || p2.Role != "viewer" {
		t.Fatalf("refresh after demotion: %d %+v, want 200 with role viewer", code, p2)
	}
	if st := e.storedToken(p2.RefreshToken); st.Role != "viewer" || !slices.Equal(st.Groups, []string{"staff", "viewer"}) {
		t.Errorf("stored token after demotion: %+v", st)
	}
	e.want(e.do("GET", "/clients", p2.AccessToken, nil), http.StatusOK, nil)
	e.wantError(e.do("POST", "/clients", p2.AccessToken, map[string]any{"name": "pc-02", "mac": "52:54:00:00:00:02", "image": "win11"}), http.StatusForbidden, "role viewer", "")
	if acts := e.st.auditActions(); !slices.Contains(acts, "auth.role_changed") {
		t.Errorf("audit = %v, want auth.role_changed", acts)
	}

	// Promoted back: the next refresh gives admin again.
	e.auth.set("alice", func(u *fakeUser) { u.groups = []string{"admin"} })
	if code, p3 := e.refreshWith(p2.RefreshToken); code != http.StatusOK || p3.Role != "admin" {
		t.Errorf("refresh after promotion: %d %+v", code, p3)
	}
}

// TestRefreshNoRoleLeft: groups that map to no role end the session like a
// deleted user.
func TestRefreshNoRoleLeft(t *testing.T) {
	e := newEnv(t)
	p := e.login("oscar")
	e.auth.set("oscar", func(u *fakeUser) { u.groups = []string{"staff"} })
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}), http.StatusUnauthorized, "no DLS role", "")
	if st := e.storedToken(p.RefreshToken); !st.Revoked {
		t.Errorf("token: %+v, want revoked", st)
	}
}

// TestRefreshBackendDown: when the auth plugin cannot answer, refresh
// answers 503 and the token is not consumed: presented again once the
// plugin is back, it works.
func TestRefreshBackendDown(t *testing.T) {
	e := newEnv(t)
	p := e.login("oscar")
	e.auth.failLookups(errors.New("ldap: connection refused"))
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}), http.StatusServiceUnavailable, "connection refused", "")
	if st := e.storedToken(p.RefreshToken); st.Used || st.Revoked {
		t.Fatalf("token after a 503: %+v, want neither used nor revoked", st)
	}
	if e.failures("unavailable") != 1 || e.failures("user_gone") != 0 {
		t.Errorf("failures: unavailable %v user_gone %v", e.failures("unavailable"), e.failures("user_gone"))
	}
	e.want(e.do("GET", "/clients", p.AccessToken, nil), http.StatusOK, nil)
	e.auth.failLookups(nil)
	if code, p2 := e.refreshWith(p.RefreshToken); code != http.StatusOK || p2.Role != "operator" {
		t.Errorf("refresh once the plugin is back: %d %+v", code, p2)
	}
}

// TestRefreshAsksTheLoginsBackend: only the auth plugin that verified the
// login answers for the user at refresh; another plugin's user of the
// same name is someone else. A plugin that is not running: 503.
func TestRefreshAsksTheLoginsBackend(t *testing.T) {
	corp := &fakeAuth{users: map[string]fakeUser{"vera": {password: "corp-pw", groups: []string{"viewer"}}}}
	local := &fakeAuth{users: map[string]fakeUser{"alice": {password: "alice-pw", groups: []string{"admin"}}}}
	list := []NamedAuthenticator{{"corp", corp}, {"local", local}}
	e := newEnv(t, func(d *Deps, _ *Options) {
		d.Authenticators = func() []NamedAuthenticator { return list }
	})
	p := e.login("alice")
	if st := e.storedToken(p.RefreshToken); st.Backend != "local" || !st.SessionStart.Equal(e.clock.Now()) {
		t.Fatalf("stored token: backend %q start %s, want local and the login's time", st.Backend, st.SessionStart)
	}
	// corp gets an alice of its own, with admin: it does not count.
	corp.set("alice", func(u *fakeUser) { u.groups = []string{"admin"} })
	local.set("alice", func(u *fakeUser) { u.groups = []string{"viewer"} })
	code, p2 := e.refreshWith(p.RefreshToken)
	if code != http.StatusOK || p2.Role != "viewer" {
		t.Fatalf("refresh: %d %+v, want viewer (local's answer)", code, p2)
	}
	if corp.lookupCount() != 0 {
		t.Errorf("corp was asked %d times", corp.lookupCount())
	}
	// local deleted her: corp's alice does not keep the session alive.
	local.remove("alice")
	if code, _ := e.refreshWith(p2.RefreshToken); code != http.StatusUnauthorized {
		t.Errorf("refresh after local deleted alice: %d, want 401", code)
	}

	// local not running: 503, the token stays.
	local.set("oscar", func(u *fakeUser) { u.password, u.groups = "oscar-pw", []string{"operator"} })
	o := e.login("oscar")
	list = []NamedAuthenticator{{"corp", corp}}
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": o.RefreshToken}), http.StatusServiceUnavailable, "auth plugin local", "")
	list = []NamedAuthenticator{{"corp", corp}, {"local", local}}
	if code, _ := e.refreshWith(o.RefreshToken); code != http.StatusOK {
		t.Errorf("refresh once local runs again: %d", code)
	}
}

// TestRefreshTokenWithoutBackend: a token stored before DLS recorded the
// backend asks every plugin, and the one that knows the user is recorded.
func TestRefreshTokenWithoutBackend(t *testing.T) {
	e := newEnv(t)
	tok, hash, err := newRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if err := e.st.PutRefreshToken(t.Context(), store.RefreshToken{Hash: hash, User: "vera", Role: "viewer", Issued: now, Expires: now.Add(time.Hour), SessionStart: now}); err != nil {
		t.Fatal(err)
	}
	code, p := e.refreshWith(tok)
	if code != http.StatusOK || p.Role != "viewer" {
		t.Fatalf("refresh of a token without backend: %d %+v", code, p)
	}
	if st := e.storedToken(p.RefreshToken); st.Backend != "local" {
		t.Errorf("backend of the rotated token = %q, want local", st.Backend)
	}
}

// TestSessionLifetime: however often it is refreshed, a session ends at
// its login's time plus SessionLifetime; tokens issued near the end
// expire with it.
func TestSessionLifetime(t *testing.T) {
	e := newEnv(t, func(_ *Deps, o *Options) { o.SessionLifetime = time.Hour })
	login := e.clock.Now()
	p := e.login("oscar")
	for range 2 {
		e.clock.Add(20 * time.Minute)
		var code int
		if code, p = e.refreshWith(p.RefreshToken); code != http.StatusOK {
			t.Fatalf("refresh at %s: %d", e.clock.Now().Sub(login), code)
		}
		if st := e.storedToken(p.RefreshToken); !st.SessionStart.Equal(login) || st.Expires.After(login.Add(time.Hour)) {
			t.Fatalf("token of the chain: start %s expires %s; want start %s, expiry by %s", st.SessionStart, st.Expires, login, login.Add(time.Hour))
		}
	}
	// At 50 minutes the access token lives 10, not 15.
	e.clock.Add(10 * time.Minute)
	code, last := e.refreshWith(p.RefreshToken)
	if code != http.StatusOK || last.ExpiresIn != 600 {
		t.Fatalf("refresh at 50m: %d, expires_in %d; want 600", code, last.ExpiresIn)
	}
	e.clock.Add(10 * time.Minute)
	e.wantError(e.do("GET", "/clients", last.AccessToken, nil), http.StatusUnauthorized, "expired", "")
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": last.RefreshToken}), http.StatusUnauthorized, "expired", "")

	// The lifetime is checked on its own too: a token stored with a longer
	// expiry (an older host's, a longer lifetime before a restart) still
	// ends with its session.
	tok, hash, err := newRefreshToken()
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if err := e.st.PutRefreshToken(t.Context(), store.RefreshToken{Hash: hash, User: "oscar", Role: "operator", Backend: "local",
		Issued: now, Expires: now.Add(7 * 24 * time.Hour), SessionStart: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": tok}), http.StatusUnauthorized, "lifetime of 1h0m0s", "")
	// A new login starts a new session.
	e.login("oscar")
}
