package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// signIn posts the console's sign-in form and answers the session cookie
// and the CSRF token.
func (e *env) signIn(user string) (*http.Cookie, string) {
	e.t.Helper()
	form := url.Values{"username": {user}, "password": {testUsers[user].password}}.Encode()
	w := e.do("POST", "/auth/session", "", form, "Content-Type", "application/x-www-form-urlencoded")
	var s browserSessionJSON
	e.want(w, http.StatusOK, &s)
	var c *http.Cookie
	for _, k := range w.Result().Cookies() {
		if k.Name == SessionCookie {
			c = k
		}
	}
	if c == nil {
		e.t.Fatalf("sign-in set no %s cookie: %v", SessionCookie, w.Header())
	}
	if s.User != user || s.CSRFToken == "" || s.Via != "cookie" {
		e.t.Fatalf("sign-in answered %+v", s)
	}
	return c, s.CSRFToken
}

// doCookie sends a request with the session cookie c and, when csrf is
// not "", the CSRF header.
func (e *env) doCookie(method, path string, c *http.Cookie, csrf string, body any) *httptest.ResponseRecorder {
	e.t.Helper()
	hdr := []string{"Cookie", c.Name + "=" + c.Value}
	if csrf != "" {
		hdr = append(hdr, CSRFHeader, csrf)
	}
	return e.do(method, path, "", body, hdr...)
}

// TestBrowserSessionCookie: the sign-in form sets an HttpOnly,
// SameSite=Strict cookie that authenticates reads; writes need the CSRF
// token, and forged ones (none, or another session's) answer 403 without
// acting.
func TestBrowserSessionCookie(t *testing.T) {
	e := newEnv(t)
	c, csrf := e.signIn("oscar")
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
	}
	if c.Secure {
		t.Errorf("cookie over plain HTTP marked Secure: the browser would never send it back")
	}
	e.want(e.doCookie("GET", "/clients", c, "", nil), http.StatusOK, nil)

	body := map[string]any{"name": "pc-01", "mac": "52:54:00:00:00:01", "image": "win11"}
	e.wantError(e.doCookie("POST", "/clients", c, "", body), http.StatusForbidden, "CSRF", "")
	e.wantError(e.doCookie("POST", "/clients", c, "forged", body), http.StatusForbidden, "CSRF", "")
	_, otherCSRF := e.signIn("alice")
	e.wantError(e.doCookie("POST", "/clients", c, otherCSRF, body), http.StatusForbidden, "CSRF", "")
	if _, err := e.st.GetClient(t.Context(), "pc-01"); err == nil {
		t.Fatal("a forged POST created the client")
	}
	if got := e.failures("csrf"); got != 3 {
		t.Errorf("csrf failures = %v, want 3", got)
	}
	e.want(e.doCookie("POST", "/clients", c, csrf, body), http.StatusCreated, nil)

	var s browserSessionJSON
	e.want(e.doCookie("GET", "/auth/session", c, "", nil), http.StatusOK, &s)
	if s.User != "oscar" || s.Role != "operator" || s.CSRFToken != csrf {
		t.Errorf("GET auth/session = %+v", s)
	}
	// A bearer request ignores cookies and needs no CSRF token: the CLI.
	p := e.login("oscar")
	e.want(e.do("POST", "/clients", p.AccessToken, map[string]any{"name": "pc-02", "mac": "52:54:00:00:00:02", "image": "win11"}), http.StatusCreated, nil)
}

// TestBrowserSessionSecureOverTLS: over TLS the cookie is Secure.
func TestBrowserSessionSecureOverTLS(t *testing.T) {
	e := newEnv(t)
	form := url.Values{"username": {"vera"}, "password": {"vera-pw"}}.Encode()
	r := httptest.NewRequest("POST", "https://dls.example"+Prefix+"/auth/session", strings.NewReader(form))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = e.source
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.want(w, http.StatusOK, nil)
	cs := w.Result().Cookies()
	if len(cs) != 1 || !cs[0].Secure {
		t.Errorf("cookies over TLS %+v: want one, Secure", cs)
	}
}

// TestBrowserViewerCannotAct: a viewer's cookie, with its right CSRF
// token, still gets 403 on writes.
func TestBrowserViewerCannotAct(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	e.mustCreateClient(p.AccessToken, "pc-01", "52:54:00:00:00:01")
	c, csrf := e.signIn("vera")
	e.want(e.doCookie("GET", "/clients/pc-01", c, "", nil), http.StatusOK, nil)
	e.wantError(e.doCookie("POST", "/clients/pc-01/wake", c, csrf, nil), http.StatusForbidden, "role viewer", "")
	e.wantError(e.doCookie("DELETE", "/clients/pc-01", c, csrf, nil), http.StatusForbidden, "role viewer", "")
	if len(e.waker.woken) != 0 {
		t.Errorf("a viewer woke %v", e.waker.woken)
	}
	if _, err := e.st.GetClient(t.Context(), "pc-01"); err != nil {
		t.Errorf("a viewer deleted pc-01: %v", err)
	}
}

// TestBrowserLogoutRevokes: DELETE auth/session (with the CSRF token)
// revokes the session in the store, so the same cookie answers 401 after;
// without the token the logout itself is refused.
func TestBrowserLogoutRevokes(t *testing.T) {
	e := newEnv(t)
	c, csrf := e.signIn("oscar")
	e.wantError(e.doCookie("DELETE", "/auth/session", c, "", nil), http.StatusForbidden, "CSRF", "")
	e.want(e.doCookie("GET", "/clients", c, "", nil), http.StatusOK, nil)
	w := e.doCookie("DELETE", "/auth/session", c, csrf, nil)
	e.want(w, http.StatusNoContent, nil)
	if cs := w.Result().Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Errorf("logout cookies %+v: want the cookie cleared", cs)
	}
	e.wantError(e.doCookie("GET", "/clients", c, "", nil), http.StatusUnauthorized, "signed out", "")
	if st, err := e.st.GetRefreshToken(t.Context(), browserHash(c.Value)); err != nil || !st.Revoked {
		t.Errorf("stored session %+v, %v: want revoked", st, err)
	}
	acts := e.st.auditActions()
	if !slices.Contains(acts, "auth.login") || !slices.Contains(acts, "auth.logout") {
		t.Errorf("audit %v: want auth.login and auth.logout", acts)
	}
}

// TestBrowserSessionEnds: a session ends SessionLifetime after sign-in,
// and `dls user delete`'s revocation (RevokeUserTokens) ends it too.
func TestBrowserSessionEnds(t *testing.T) {
	e := newEnv(t)
	c, _ := e.signIn("oscar")
	e.clock.Add(23 * time.Hour)
	e.want(e.doCookie("GET", "/clients", c, "", nil), http.StatusOK, nil)
	e.clock.Add(time.Hour)
	e.wantError(e.doCookie("GET", "/clients", c, "", nil), http.StatusUnauthorized, "expired", "")

	c, _ = e.signIn("oscar")
	if err := e.st.RevokeUserTokens(t.Context(), "oscar"); err != nil {
		t.Fatal(err)
	}
	e.wantError(e.doCookie("GET", "/clients", c, "", nil), http.StatusUnauthorized, "revoked", "")
	// The cookie is no refresh token.
	e.wantError(e.do("POST", "/auth/refresh", "", map[string]string{"refresh_token": c.Value}), http.StatusUnauthorized, "invalid", "")
}

// TestBrowserSignInLimits: the sign-in form counts failures under the
// same limits as auth/login, and refuses a form posted from another site.
func TestBrowserSignInLimits(t *testing.T) {
	e := newEnv(t, func(_ *Deps, o *Options) { o.UserFailures = Limit{Max: 2, Window: time.Minute} })
	bad := url.Values{"username": {"oscar"}, "password": {"wrong"}}.Encode()
	ct := []string{"Content-Type", "application/x-www-form-urlencoded"}
	e.wantError(e.do("POST", "/auth/session", "", bad, ct...), http.StatusUnauthorized, "invalid username", "")
	// One failure through the API's login, one through the form: the
	// limit is shared.
	e.wantError(e.do("POST", "/auth/login", "", map[string]string{"username": "oscar", "password": "wrong"}), http.StatusUnauthorized, "invalid", "")
	e.wantError(e.do("POST", "/auth/session", "", bad, ct...), http.StatusTooManyRequests, "too many", "")

	good := url.Values{"username": {"vera"}, "password": {"vera-pw"}}.Encode()
	e.wantError(e.do("POST", "/auth/session", "", good, "Content-Type", "application/x-www-form-urlencoded", "Origin", "https://evil.example"),
		http.StatusForbidden, "another origin", "")
	e.wantError(e.do("POST", "/auth/session", "", url.Values{"username": {"vera"}}.Encode(), ct...), http.StatusBadRequest, "password", "password")
}

// TestBrowserRoleFollowsTheAuthPlugin: once AccessTTL old, a browser
// session's role is read again from its auth plugin: a demoted operator
// can no longer act, a plugin that cannot answer gets 503 with the
// session kept, and a deleted user loses the session.
func TestBrowserRoleFollowsTheAuthPlugin(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	e.mustCreateClient(p.AccessToken, "pc-01", "52:54:00:00:00:01")
	c, csrf := e.signIn("oscar")
	e.auth.set("oscar", func(u *fakeUser) { u.groups = []string{"viewer"} })
	// Within AccessTTL: the role of the sign-in, no lookup.
	before := e.auth.lookupCount()
	e.want(e.doCookie("POST", "/clients/pc-01/wake", c, csrf, nil), http.StatusAccepted, nil)
	if n := e.auth.lookupCount() - before; n != 0 {
		t.Errorf("%d lookups within AccessTTL of the sign-in", n)
	}
	e.clock.Add(16 * time.Minute)
	e.wantError(e.doCookie("POST", "/clients/pc-01/wake", c, csrf, nil), http.StatusForbidden, "role viewer", "")
	if acts := e.st.auditActions(); !slices.Contains(acts, "auth.role_changed") {
		t.Errorf("audit %v: want auth.role_changed", acts)
	}
	var s browserSessionJSON
	e.want(e.doCookie("GET", "/auth/session", c, "", nil), http.StatusOK, &s)
	if s.Role != "viewer" {
		t.Errorf("GET auth/session role %q, want viewer", s.Role)
	}

	e.clock.Add(16 * time.Minute)
	e.auth.failLookups(errors.New("directory down"))
	e.wantError(e.doCookie("GET", "/clients", c, "", nil), http.StatusServiceUnavailable, "cannot check user oscar", "")
	e.auth.failLookups(nil)
	e.want(e.doCookie("GET", "/clients", c, "", nil), http.StatusOK, nil)

	e.clock.Add(16 * time.Minute)
	e.auth.remove("oscar")
	e.wantError(e.doCookie("GET", "/clients", c, "", nil), http.StatusUnauthorized, "no longer exists", "")
	if st, err := e.st.GetRefreshToken(t.Context(), browserHash(c.Value)); err != nil || !st.Revoked {
		t.Errorf("stored session %+v, %v: want revoked", st, err)
	}
}
