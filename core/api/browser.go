package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/auth"
)

// Browser sessions: the console signs in with POST auth/session (a form
// with the fields username and password, or the same as JSON), under the
// same failed-login limits as auth/login. The answer sets a cookie holding
// a random session token: HttpOnly (scripts never see it), SameSite=Strict
// (no other site's page sends it), Secure when the request came over TLS.
// The session is a row of the refresh token table, kept by the token's
// hash in its own domain (a session token is no refresh token and the
// other way round), so DELETE auth/session (logout), `dls user delete` and
// `dls user passwd` revoke it like any refresh token, and it ends
// SessionLifetime after the login. Its role is re-read from the auth
// plugin that verified the sign-in (Lookup) once it is AccessTTL old, as a
// refresh does for bearer tokens: a demoted user gets their new role, and
// a user the plugin no longer knows (or who has no DLS role any more) loses
// every session and token; when the plugin cannot answer, the request gets
// 503 and the session stays. The last check of each session is kept in
// memory only: after a restart the first request checks again.
//
// Every request that authenticates with the cookie and may change state
// (any method but GET, HEAD and OPTIONS) must carry the session's CSRF
// token in the X-CSRF-Token header: an HMAC of the session token under the
// API's key, which the page reads from the sign-in answer or GET
// auth/session. A request without it, or with a wrong one, answers 403.
// Requests with a bearer token are unchanged: the cookie is ignored when an
// Authorization header is present.

// SessionCookie is the name of the console's session cookie.
const SessionCookie = "dls_session"

// CSRFHeader is the header a cookie-authenticated write carries its CSRF
// token in.
const CSRFHeader = "X-CSRF-Token"

// errCSRF is the dls_auth_failures_total reason of a cookie write without
// the right CSRF token.
var errCSRF = errors.New("csrf")

// browserHash is how a browser session token is kept in the token table:
// its own hash domain, so that it never matches a refresh token's hash.
func browserHash(tok string) string { return hashToken("browser\x00" + tok) }

// csrfToken is the CSRF token of the browser session whose token is tok.
func (a *API) csrfToken(tok string) string {
	m := hmac.New(sha256.New, a.tokens.key)
	m.Write([]byte("csrf\x00" + tok))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// browserSessionJSON is what auth/session answers.
type browserSessionJSON struct {
	User string `json:"user"`
	Role string `json:"role"`
	// Via is how the request authenticated: cookie or bearer.
	Via string `json:"via"`
	// CSRFToken is the header value cookie writes need; "" for bearer.
	CSRFToken string    `json:"csrf_token,omitempty"`
	Expires   time.Time `json:"expires,omitzero"`
}

// createBrowserSession: POST auth/session signs a browser in.
func (a *API) createBrowserSession(w http.ResponseWriter, r *http.Request) error {
	if !sameOrigin(r) {
		// A login form posted from another site would sign the victim's
		// browser in as the attacker (login CSRF).
		return errorf(http.StatusForbidden, "sign-in from another origin (%s) refused", r.Header.Get("Origin"))
	}
	req, err := decodeLogin(w, r)
	if err != nil {
		return err
	}
	s, err := a.checkLogin(r, req)
	if err != nil {
		return err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("create browser session: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b)
	exp := s.start.Add(a.opts.SessionLifetime)
	err = a.deps.Store.PutRefreshToken(r.Context(), store.RefreshToken{Hash: browserHash(tok), User: s.user, Role: s.role.String(),
		Groups: s.groups, Issued: s.start, Expires: exp, Backend: s.backend, SessionStart: s.start})
	if err != nil {
		return fmt.Errorf("sign in %s: %w", s.user, err)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: tok, Path: "/", Expires: exp,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	a.audit(r.Context(), s.user, "auth.login", "user/"+s.user, map[string]string{"role": s.role.String(), "via": "browser"}, remoteIP(r))
	writeJSON(w, http.StatusOK, browserSessionJSON{User: s.user, Role: s.role.String(), Via: "cookie", CSRFToken: a.csrfToken(tok), Expires: exp})
	return nil
}

// getBrowserSession: GET auth/session tells the page who it is signed in
// as, and its CSRF token.
func (a *API) getBrowserSession(w http.ResponseWriter, r *http.Request) error {
	p := principalOf(r)
	out := browserSessionJSON{User: p.user, Role: p.role.String(), Via: "bearer", Expires: p.exp}
	if p.browser != "" {
		out.Via, out.CSRFToken = "cookie", a.csrfToken(p.browser)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// deleteBrowserSession: DELETE auth/session signs the browser out: the
// session is revoked in the store and the cookie cleared.
func (a *API) deleteBrowserSession(w http.ResponseWriter, r *http.Request) error {
	p := principalOf(r)
	if p.browser == "" {
		return errorf(http.StatusBadRequest, "no browser session on this request (bearer tokens log out at %s/auth/logout)", Prefix)
	}
	if err := a.deps.Store.RevokeRefreshToken(r.Context(), browserHash(p.browser)); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("sign out %s: %w", p.user, err)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	a.audit(r.Context(), p.user, "auth.logout", "user/"+p.user, map[string]string{"via": "browser"}, remoteIP(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cookieSession authenticates a request by its session cookie and, for a
// method that may change state, checks its CSRF token.
func (a *API) cookieSession(r *http.Request, c *http.Cookie) (principal, error) {
	unauthorized := func(reason error, msg string) (principal, error) {
		a.metrics.failures.WithLabelValues(reason.Error()).Inc()
		return principal{}, errorf(http.StatusUnauthorized, "%s (sign in again)", msg)
	}
	if len(c.Value) > maxTokenLen {
		return unauthorized(errBadToken, "invalid session cookie")
	}
	t, err := a.deps.Store.GetRefreshToken(r.Context(), browserHash(c.Value))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return unauthorized(errBadToken, "invalid session cookie")
	case err != nil:
		return principal{}, fmt.Errorf("browser session: %w", err)
	case t.Revoked || t.Used:
		return unauthorized(errRevokedToken, "session signed out or revoked")
	case !a.clock.Now().Before(t.Expires):
		return unauthorized(errExpiredToken, "session expired")
	}
	if parseRole(t.Role) == roleNone {
		return unauthorized(errBadToken, "invalid session cookie")
	}
	rl, err := a.browserRole(r, c.Value, t)
	if err != nil {
		return principal{}, err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		got := r.Header.Get(CSRFHeader)
		if got == "" || !hmac.Equal([]byte(got), []byte(a.csrfToken(c.Value))) {
			a.metrics.failures.WithLabelValues(errCSRF.Error()).Inc()
			a.logger.Warn("cookie request without the right CSRF token refused", "user", t.User, "method", r.Method, "path", r.URL.Path, "source", remoteIP(r))
			return principal{}, errorf(http.StatusForbidden, "missing or wrong CSRF token (%s header); reload the page", CSRFHeader)
		}
	}
	return principal{user: t.User, role: rl, exp: t.Expires, browser: c.Value}, nil
}

// sameOrigin reports whether a request's Origin header, when it has one,
// names the host it was sent to.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return r.Header.Get("Sec-Fetch-Site") != "cross-site"
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// decodeLogin reads a sign-in's username and password from a form or a
// JSON body.
func decodeLogin(w http.ResponseWriter, r *http.Request) (loginRequest, error) {
	var req loginRequest
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" {
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		if err := r.ParseForm(); err != nil {
			return req, errorf(http.StatusBadRequest, "read sign-in form: %v", err)
		}
		req = loginRequest{Username: r.PostForm.Get("username"), Password: r.PostForm.Get("password")}
	} else if err := decode(w, r, &req, false); err != nil {
		return req, err
	}
	if req.Username == "" || len(req.Username) > 256 {
		return req, fieldError("username", "username: want 1-256 characters")
	}
	if req.Password == "" || len(req.Password) > 1024 {
		return req, fieldError("password", "password: want 1-1024 characters")
	}
	return req, nil
}

// browserChecks remembers when each browser session's role was last read
// from its auth plugin, and the role read.
type browserChecks struct {
	mu      sync.Mutex
	checked map[string]browserCheck // by session token hash
}

type browserCheck struct {
	at   time.Time
	role role
}

// browserRole answers the session's role: the one read at its last check
// when that is younger than AccessTTL, else the auth plugin's answer now.
func (a *API) browserRole(r *http.Request, tok string, t store.RefreshToken) (role, error) {
	hash := browserHash(tok)
	now := a.clock.Now()
	a.browser.mu.Lock()
	chk, ok := a.browser.checked[hash]
	a.browser.mu.Unlock()
	if !ok && now.Sub(t.Issued) < a.opts.AccessTTL {
		chk, ok = browserCheck{at: t.Issued, role: parseRole(t.Role)}, true // the sign-in was the check
	}
	if ok && now.Sub(chk.at) < a.opts.AccessTTL {
		return chk.role, nil
	}
	id, backend, err := a.lookup(r.Context(), t.Backend, t.User)
	switch {
	case errors.Is(err, auth.ErrUserNotFound):
		return roleNone, a.userGone(r, t.User, t.Backend)
	case err != nil:
		a.metrics.failures.WithLabelValues("unavailable").Inc()
		a.logger.Error("browser session: the auth plugin could not answer; the session stays", "user", t.User, "plugin", t.Backend, "error", err)
		return roleNone, errorf(http.StatusServiceUnavailable, "cannot check user %s with the auth plugin now (retry): %v", t.User, err)
	}
	rl := a.roleOf(id.Groups)
	if rl == roleNone {
		return roleNone, a.userGone(r, t.User, backend)
	}
	prev := parseRole(t.Role)
	if ok {
		prev = chk.role
	}
	if rl != prev {
		a.logger.Info("role changed since the sign-in", "user", t.User, "from", prev.String(), "to", rl.String(), "groups", id.Groups)
		a.audit(r.Context(), t.User, "auth.role_changed", "user/"+t.User, map[string]string{"from": prev.String(), "to": rl.String(), "via": "browser"}, remoteIP(r))
	}
	a.browser.mu.Lock()
	defer a.browser.mu.Unlock()
	if len(a.browser.checked) >= a.opts.LimiterEntries {
		// Bounded: forget the checks too old to be used again.
		for k, c := range a.browser.checked {
			if now.Sub(c.at) >= a.opts.AccessTTL {
				delete(a.browser.checked, k)
			}
		}
	}
	if len(a.browser.checked) < a.opts.LimiterEntries {
		a.browser.checked[hash] = browserCheck{at: now, role: rl}
	}
	return rl, nil
}
