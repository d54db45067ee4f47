package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dls-project/dls/core/supervisor"
)

func TestLoginGivesWorkingTokens(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	if p.AccessToken == "" || p.RefreshToken == "" || p.ExpiresIn != 900 || p.TokenType != "Bearer" || p.Role != "admin" {
		t.Fatalf("pair = %+v", p)
	}
	e.want(e.do("GET", "/clients", p.AccessToken, nil), http.StatusOK, nil)
	if got := e.gauge("dls_active_sessions"); got != 1 {
		t.Errorf("dls_active_sessions = %v", got)
	}
	if got := testutil.ToFloat64(e.api.metrics.requests); got != 2 {
		t.Errorf("dls_auth_requests_total = %v, want 2 (login, bearer check)", got)
	}
	// The refresh token is stored hashed, never in clear.
	for h, tok := range e.st.tokens {
		if h == p.RefreshToken || h != hashToken(p.RefreshToken) || tok.User != "alice" || tok.Role != "admin" {
			t.Errorf("stored token %s = %+v", h, tok)
		}
	}
}

func TestRefreshRotatesAndOldTokenIsRefused(t *testing.T) {
	e := newEnv(t)
	p1 := e.login("oscar")
	e.clock.Add(time.Minute)
	var p2 tokenPair
	e.want(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p1.RefreshToken}), http.StatusOK, &p2)
	if p2.RefreshToken == p1.RefreshToken || p2.AccessToken == p1.AccessToken || p2.Role != "operator" {
		t.Fatalf("refresh gave %+v", p2)
	}
	e.want(e.do("GET", "/clients", p2.AccessToken, nil), http.StatusOK, nil)
	if got := testutil.ToFloat64(e.api.metrics.refreshes); got != 1 {
		t.Errorf("dls_token_refreshes_total = %v", got)
	}

	// The rotated token is refused...
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p1.RefreshToken}), http.StatusUnauthorized, "already used", "")
	// ...and its replay revoked everything of oscar's: the new refresh
	// token and the access tokens issued so far.
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p2.RefreshToken}), http.StatusUnauthorized, "revoked", "")
	e.wantError(e.do("GET", "/clients", p2.AccessToken, nil), http.StatusUnauthorized, "revoked", "")
	e.wantError(e.do("GET", "/clients", p1.AccessToken, nil), http.StatusUnauthorized, "revoked", "")
	if got := e.failures("revoked_token"); got != 4 {
		t.Errorf("revoked_token failures = %v, want 4", got)
	}
	if got := e.gauge("dls_active_sessions"); got != 0 {
		t.Errorf("dls_active_sessions = %v", got)
	}
	acts := e.st.auditActions()
	if acts[len(acts)-1] != "auth.token_replay" {
		t.Errorf("audit = %v", acts)
	}

	// Other users keep their sessions; oscar logs in again a second later.
	v := e.login("vera")
	e.want(e.do("GET", "/clients", v.AccessToken, nil), http.StatusOK, nil)
	e.clock.Add(time.Second)
	p3 := e.login("oscar")
	e.want(e.do("GET", "/clients", p3.AccessToken, nil), http.StatusOK, nil)
}

func TestConcurrentRefreshOneWins(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() {
			codes[i] = e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}).Code
		})
	}
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusUnauthorized:
		default:
			t.Errorf("status %d", c)
		}
	}
	if ok != 1 {
		t.Errorf("%d refreshes succeeded, want 1: %v", ok, codes)
	}
}

func TestRefreshExpiredAndUnknown(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": "nope"}), http.StatusUnauthorized, "invalid refresh token", "")
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{}), http.StatusBadRequest, "required", "refresh_token")
	e.clock.Add(7*24*time.Hour + time.Second)
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}), http.StatusUnauthorized, "expired", "")
	if e.failures("bad_token") != 1 || e.failures("expired_token") != 1 {
		t.Errorf("failures: bad %v expired %v", e.failures("bad_token"), e.failures("expired_token"))
	}
}

func TestLogoutRevokesBothTokens(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	other := e.login("alice")
	e.want(e.do("POST", "/auth/logout", p.AccessToken, map[string]string{"refresh_token": p.RefreshToken}), http.StatusNoContent, nil)
	e.wantError(e.do("GET", "/clients", p.AccessToken, nil), http.StatusUnauthorized, "revoked", "")
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": p.RefreshToken}), http.StatusUnauthorized, "revoked", "")
	// The other session of the same user is untouched.
	e.want(e.do("GET", "/clients", other.AccessToken, nil), http.StatusOK, nil)
	// After the access token's expiry the denylist forgets it.
	e.clock.Add(16 * time.Minute)
	e.wantError(e.do("GET", "/clients", p.AccessToken, nil), http.StatusUnauthorized, "expired", "")
	e.api.deny.mu.Lock()
	n := len(e.api.deny.jtis)
	e.api.deny.mu.Unlock()
	e.api.deny.denyToken("x", e.clock.Now().Add(time.Minute), e.clock.Now())
	if n != 1 || len(e.api.deny.jtis) != 1 {
		t.Errorf("denylist kept %d, then %d entries", n, len(e.api.deny.jtis))
	}

	// Logout with only a bearer token, or only a refresh token.
	q := e.login("vera")
	e.want(e.do("POST", "/auth/logout", q.AccessToken, nil), http.StatusNoContent, nil)
	e.wantError(e.do("GET", "/clients", q.AccessToken, nil), http.StatusUnauthorized, "revoked", "")
	e.want(e.do("POST", "/auth/logout", "", map[string]string{"refresh_token": q.RefreshToken}), http.StatusNoContent, nil)
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": q.RefreshToken}), http.StatusUnauthorized, "revoked", "")
	// Nothing to log out; someone else's refresh token.
	e.wantError(e.do("POST", "/auth/logout", "", nil), http.StatusBadRequest, "nothing to log out", "refresh_token")
	r := e.login("oscar")
	s := e.login("vera")
	e.wantError(e.do("POST", "/auth/logout", s.AccessToken, map[string]string{"refresh_token": r.RefreshToken}), http.StatusForbidden, "another user", "")
	e.want(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": r.RefreshToken}), http.StatusOK, nil)
	if acts := strings.Join(e.st.auditActions(), " "); strings.Count(acts, "auth.logout") != 3 {
		t.Errorf("audit = %s", acts)
	}
}

func TestWrongPasswordIsCounted(t *testing.T) {
	e := newEnv(t)
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": "guess"}), http.StatusUnauthorized, "invalid username or password", "")
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "mallory", "password": "guess"}), http.StatusUnauthorized, "invalid username or password", "")
	if got := e.failures("bad_credentials"); got != 2 {
		t.Errorf("bad_credentials = %v", got)
	}
	if got := testutil.ToFloat64(e.api.metrics.requests); got != 2 {
		t.Errorf("requests = %v", got)
	}
	if len(e.st.tokens) != 0 {
		t.Errorf("tokens stored: %d", len(e.st.tokens))
	}
}

func TestNoTokenIs401(t *testing.T) {
	e := newEnv(t)
	w := e.do("GET", "/clients", "", nil)
	e.wantError(w, http.StatusUnauthorized, "missing bearer token", "")
	if got := w.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("WWW-Authenticate = %q", got)
	}
	e.wantError(e.do("GET", "/clients", "", nil, "Authorization", "Basic YWxpY2U6YWxpY2UtcHc="), http.StatusUnauthorized, "missing bearer token", "")
	e.wantError(e.do("POST", "/clients", "", map[string]string{"name": "pc1"}), http.StatusUnauthorized, "missing bearer token", "")
	if got := e.failures("missing_token"); got != 3 {
		t.Errorf("missing_token = %v", got)
	}
	if len(e.st.clients) != 0 {
		t.Error("client created without a token")
	}
}

func TestRolesGateWrites(t *testing.T) {
	e := newEnv(t)
	viewer, operator := e.login("vera").AccessToken, e.login("oscar").AccessToken
	before := e.st.snapshot()
	e.wantError(e.do("POST", "/clients", viewer, map[string]any{"name": "pc1", "mac": "52:54:00:00:00:01", "image": "win11"}), http.StatusForbidden, "role viewer may not POST", "")
	e.wantError(e.do("POST", "/images/win11/versions", operator, map[string]string{"action": "snapshot"}), http.StatusForbidden, "needs admin", "")
	e.wantError(e.do("POST", "/images", operator, map[string]any{"name": "deb", "storage": "tank"}), http.StatusForbidden, "needs admin", "")
	if e.st.snapshot() != before || len(e.stor.storageCalls()) != 0 {
		t.Fatal("a refused write changed something")
	}
	// Viewers read everything; operators write clients.
	for _, path := range []string{"/clients", "/images", "/images/win11", "/images/win11/versions", "/sessions", "/plugins", "/audit"} {
		e.want(e.do("GET", path, viewer, nil), http.StatusOK, nil)
	}
	e.mustCreateClient(operator, "pc1", "52:54:00:00:00:01")
	e.want(e.do("POST", "/clients/pc1/wake", operator, nil), http.StatusAccepted, nil)
	e.want(e.do("POST", "/clients/pc1/volume", operator, map[string]any{"action": "reset"}), http.StatusOK, nil)
	e.want(e.do("DELETE", "/clients/pc1", operator, nil), http.StatusNoContent, nil)

	// Refusals are audited with who tried what.
	var denied []string
	for _, a := range e.st.audit {
		if a.Action == "authz.denied" {
			denied = append(denied, a.Actor+" "+a.Object)
		}
	}
	want := "vera POST /api/v1/clients|oscar POST /api/v1/images/{name}/versions|oscar POST /api/v1/images"
	if strings.Join(denied, "|") != want {
		t.Errorf("denied = %q, want %q", strings.Join(denied, "|"), want)
	}
}

func TestNoRoleRefusedAtLogin(t *testing.T) {
	e := newEnv(t)
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "nina", "password": "nina-pw"}), http.StatusForbidden, "no DLS role", "")
	if e.failures("no_role") != 1 || len(e.st.tokens) != 0 {
		t.Errorf("no_role = %v, tokens %d", e.failures("no_role"), len(e.st.tokens))
	}
}

func TestRoleGroupsMapping(t *testing.T) {
	e := newEnv(t, func(_ *Deps, o *Options) {
		o.RoleGroups = map[string]string{"staff": "viewer", "operator": "operator", "admin": "operator"}
	})
	if got := e.login("nina").Role; got != "viewer" {
		t.Errorf("nina: %s", got)
	}
	if got := e.login("alice").Role; got != "operator" { // staff+admin: highest wins
		t.Errorf("alice: %s", got)
	}
	_, err := New(t.Context(), Deps{Store: e.st, Authenticators: func() []NamedAuthenticator { return nil }, Storage: e.stor},
		Options{KeyFile: e.key, RoleGroups: map[string]string{"x": "root"}})
	if err == nil || !strings.Contains(err.Error(), `unknown role "root"`) {
		t.Errorf("New with role root: %v", err)
	}
}

func TestBruteForceIsLimitedBeforeVerify(t *testing.T) {
	e := newEnv(t)
	var limited *httptest.ResponseRecorder
	for i := range 20 {
		w := e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": "guess"})
		want := http.StatusUnauthorized
		if i >= 10 {
			want = http.StatusTooManyRequests
			limited = w
		}
		if w.Code != want {
			t.Fatalf("attempt %d: %d, want %d: %s", i+1, w.Code, want, w.Body)
		}
	}
	e.wantError(limited, http.StatusTooManyRequests, "too many failed logins", "")
	if got := limited.Header().Get("Retry-After"); got != "900" {
		t.Errorf("Retry-After = %q", got)
	}
	if got := e.auth.calls.Load(); got != 10 {
		t.Errorf("authenticator called %d times, want 10", got)
	}
	if e.failures("rate_limited") != 10 || e.failures("bad_credentials") != 10 {
		t.Errorf("rate_limited %v, bad_credentials %v", e.failures("rate_limited"), e.failures("bad_credentials"))
	}
	// Even the right password waits; case does not dodge the limit.
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": "alice-pw"}), http.StatusTooManyRequests, "too many", "")
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "ALICE", "password": "x"}), http.StatusTooManyRequests, "too many", "")
	// The window slides: 10 minutes on, still limited, with less to wait.
	e.clock.Add(10 * time.Minute)
	w := e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": "alice-pw"})
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "300" {
		t.Errorf("after 10m: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	e.clock.Add(5 * time.Minute)
	e.login("alice")
}

func TestSuccessResetsUserCounter(t *testing.T) {
	e := newEnv(t)
	for round := range 3 {
		e.source = fmt.Sprintf("192.0.2.%d:40000", 20+round) // each round under the source's own limit
		for range 9 {
			e.want(e.do("POST", "/auth/login", "", map[string]string{"username": "oscar", "password": "guess"}), http.StatusUnauthorized, nil)
		}
		e.login("oscar")
	}
}

func TestSourceLimit(t *testing.T) {
	e := newEnv(t)
	for i := range 20 {
		e.want(e.do("POST", "/auth/login", "", map[string]string{"username": "user" + string(rune('a'+i)), "password": "guess"}), http.StatusUnauthorized, nil)
	}
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": "alice-pw"}), http.StatusTooManyRequests, "too many", "")
	e.source = "198.51.100.7:1234"
	e.login("alice")
}

func TestAuthenticatorsInOrder(t *testing.T) {
	down := &fakeAuth{err: errors.New("ldap: connection refused")}
	none := &fakeAuth{users: map[string]fakeUser{}}
	list := []NamedAuthenticator{{"ldap", down}, {"empty", none}, {"local", &fakeAuth{users: testUsers}}}
	e := newEnv(t, func(d *Deps, _ *Options) {
		d.Authenticators = func() []NamedAuthenticator { return list }
	})
	e.login("alice") // the third knows her
	// Unknown everywhere but one backend down: cannot tell, 503, not a
	// bad-credentials failure.
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "mallory", "password": "x"}), http.StatusServiceUnavailable, "connection refused", "")
	if e.failures("bad_credentials") != 0 || e.failures("unavailable") != 1 {
		t.Errorf("bad %v unavailable %v", e.failures("bad_credentials"), e.failures("unavailable"))
	}
	list = []NamedAuthenticator{{"empty", none}}
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "mallory", "password": "x"}), http.StatusUnauthorized, "invalid", "")
	list = nil
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "alice", "password": "alice-pw"}), http.StatusServiceUnavailable, "no auth plugin", "")
}

func TestTokenTamperingAndExpiry(t *testing.T) {
	e := newEnv(t)
	tok := e.login("vera").AccessToken
	parts := strings.Split(tok, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	forged := strings.Replace(string(payload), `"role":"viewer"`, `"role":"admin"`, 1)
	cases := map[string]string{
		"role changed":  parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(forged)) + "." + parts[2],
		"alg none":      base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".",
		"no signature":  parts[0] + "." + parts[1],
		"bad signature": parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")),
		"garbage":       "not-a-token",
		"huge":          strings.Repeat("a", 5000),
	}
	other := &tokenSigner{key: []byte("another key of thirty-two bytes!")}
	cases["other key"], _ = other.sign(claims{User: "vera", Role: "admin", Iat: e.clock.Now().Unix(), Exp: e.clock.Now().Add(time.Hour).Unix(), JTI: "x"})
	for name, bad := range cases {
		w := e.do("POST", "/clients", bad, map[string]any{"name": "pc1", "mac": "52:54:00:00:00:01", "image": "win11"})
		if w.Code != http.StatusUnauthorized || !strings.Contains(w.Body.String(), "invalid bearer token") {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	if got := e.failures("bad_token"); got != float64(len(cases)) {
		t.Errorf("bad_token = %v, want %d", got, len(cases))
	}
	if len(e.st.clients) != 0 {
		t.Fatal("a forged token created a client")
	}
	e.want(e.do("GET", "/clients", tok, nil), http.StatusOK, nil)
	e.clock.Add(15 * time.Minute)
	e.wantError(e.do("GET", "/clients", tok, nil), http.StatusUnauthorized, "expired", "")
	if e.failures("expired_token") != 1 {
		t.Errorf("expired_token = %v", e.failures("expired_token"))
	}
}

func TestKeyFileSurvivesRestart(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice").AccessToken
	fi, err := os.Stat(e.key)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	// A second API on the same key file (a restart) accepts the token.
	a2, err := New(t.Context(), Deps{Store: e.st, Authenticators: func() []NamedAuthenticator { return nil }, Storage: e.stor, Clock: e.clock}, Options{KeyFile: e.key})
	if err != nil {
		t.Fatal(err)
	}
	e.h = a2.Handler()
	e.want(e.do("GET", "/clients", tok, nil), http.StatusOK, nil)

	if err := os.Chmod(e.key, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), Deps{Store: e.st, Authenticators: func() []NamedAuthenticator { return nil }, Storage: e.stor}, Options{KeyFile: e.key}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	if err := os.WriteFile(e.key, []byte("abcd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.key, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), Deps{Store: e.st, Authenticators: func() []NamedAuthenticator { return nil }, Storage: e.stor}, Options{KeyFile: e.key}); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Errorf("short key: %v", err)
	}
}

func TestMetricsRegistered(t *testing.T) {
	e := newEnv(t)
	e.login("alice")
	n, err := testutil.GatherAndCount(e.reg, "dls_auth_requests_total", "dls_auth_failures_total", "dls_active_sessions", "dls_token_refreshes_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3+len(failureReasons) {
		t.Errorf("%d series", n)
	}
	// A second API on the same registry is refused, not panicking.
	_, err = New(t.Context(), Deps{Store: e.st, Authenticators: func() []NamedAuthenticator { return nil }, Storage: e.stor}, Options{KeyFile: e.key, Registerer: e.reg})
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second registration: %v", err)
	}
}

func TestEndToEndOverTLS(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewTLSServer(e.h)
	defer srv.Close()
	c := srv.Client()
	res, err := c.Post(srv.URL+Prefix+"/auth/login", "application/json", strings.NewReader(`{"username":"alice","password":"alice-pw"}`))
	if err != nil {
		t.Fatal(err)
	}
	var p tokenPair
	decodeBody(t, res, http.StatusOK, &p)
	req, _ := http.NewRequestWithContext(context.Background(), "GET", srv.URL+Prefix+"/plugins", nil)
	req.Header.Set("Authorization", "Bearer "+p.AccessToken)
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ps []supervisor.Status
	decodeBody(t, res, http.StatusOK, &ps)
	if len(ps) != 2 || ps[0].Name != "local" || ps[1].Name != "tank" {
		t.Errorf("plugins = %+v", ps)
	}
	// The audit's source is the TLS peer's address.
	if src := e.st.audit[0].Source; src != "127.0.0.1" {
		t.Errorf("source %q", src)
	}
}

func decodeBody(t *testing.T, res *http.Response, status int, out any) {
	t.Helper()
	defer res.Body.Close()
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d", res.StatusCode, status)
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}
