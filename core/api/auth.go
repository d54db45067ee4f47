package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/auth"
)

// role is what a user may do; higher includes lower.
type role int

const (
	roleNone role = iota
	roleViewer
	roleOperator
	roleAdmin
)

func (r role) String() string {
	switch r {
	case roleViewer:
		return "viewer"
	case roleOperator:
		return "operator"
	case roleAdmin:
		return "admin"
	}
	return "none"
}

func parseRole(s string) role {
	switch s {
	case "viewer":
		return roleViewer
	case "operator":
		return roleOperator
	case "admin":
		return roleAdmin
	}
	return roleNone
}

// roleMap checks Options.RoleGroups, or returns the default mapping.
func roleMap(groups map[string]string) (map[string]role, error) {
	if groups == nil {
		groups = map[string]string{"admin": "admin", "operator": "operator", "viewer": "viewer"}
	}
	out := make(map[string]role, len(groups))
	for g, r := range groups {
		rr := parseRole(r)
		if rr == roleNone {
			return nil, fmt.Errorf("api: group %q maps to unknown role %q (want admin, operator or viewer)", g, r)
		}
		out[g] = rr
	}
	return out, nil
}

// roleOf is the highest role of groups.
func (a *API) roleOf(groups []string) role {
	best := roleNone
	for _, g := range groups {
		best = max(best, a.roles[g])
	}
	return best
}

// principal is the authenticated caller of a request.
type principal struct {
	user string
	role role
	jti  string
	exp  time.Time
	// browser is the session token of a request authenticated by the
	// console's cookie; "" for a bearer token.
	browser string
}

type principalKey struct{}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(principalKey{}).(principal)
	return p
}

// authenticate checks the request's bearer token.
func (a *API) authenticate(r *http.Request) (principal, error) {
	a.metrics.requests.Inc()
	h := r.Header.Get("Authorization")
	if h == "" {
		if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
			return a.cookieSession(r, c)
		}
	}
	scheme, tok, _ := strings.Cut(h, " ")
	if h == "" || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		a.metrics.failures.WithLabelValues("missing_token").Inc()
		return principal{}, &apiError{status: http.StatusUnauthorized, msg: "missing bearer token (log in at " + Prefix + "/auth/login)",
			header: http.Header{"Www-Authenticate": {`Bearer realm="dls"`}}}
	}
	c, err := a.checkAccess(strings.TrimSpace(tok))
	if err != nil {
		a.metrics.failures.WithLabelValues(err.Error()).Inc()
		msg := map[error]string{
			errBadToken:     "invalid bearer token",
			errExpiredToken: "bearer token expired (refresh it at " + Prefix + "/auth/refresh)",
			errRevokedToken: "bearer token revoked",
		}[err]
		return principal{}, &apiError{status: http.StatusUnauthorized, msg: msg,
			header: http.Header{"Www-Authenticate": {`Bearer realm="dls", error="invalid_token"`}}}
	}
	return principal{user: c.User, role: parseRole(c.Role), jti: c.JTI, exp: time.Unix(c.Exp, 0)}, nil
}

// checkAccess verifies an access token: signature, expiry, role, denylist.
func (a *API) checkAccess(tok string) (claims, error) {
	c, err := a.tokens.verify(tok, a.clock.Now())
	if err != nil {
		return c, err
	}
	if parseRole(c.Role) == roleNone {
		return c, errBadToken
	}
	if a.deny.denied(c) {
		return c, errRevokedToken
	}
	return c, nil
}

// tokenPair is what login and refresh answer.
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Role         string `json:"role"`
}

// session is what a token pair is issued for: a user, their role and
// groups, the auth plugin instance that vouches for them, and when the
// login that started the chain of refreshes happened.
type session struct {
	user    string
	role    role
	groups  []string
	backend string
	start   time.Time
}

// issue creates a refresh token (stored through put) and an access token.
// Neither lives past the session's start plus SessionLifetime.
func (a *API) issue(s session, put func(store.RefreshToken) error) (tokenPair, error) {
	now := a.clock.Now()
	end := s.start.Add(a.opts.SessionLifetime)
	refresh, hash, err := newRefreshToken()
	if err != nil {
		return tokenPair{}, err
	}
	err = put(store.RefreshToken{Hash: hash, User: s.user, Role: s.role.String(), Groups: s.groups, Issued: now,
		Expires: minTime(now.Add(a.opts.RefreshTTL), end), Backend: s.backend, SessionStart: s.start})
	if err != nil {
		return tokenPair{}, err
	}
	exp := minTime(now.Add(a.opts.AccessTTL), end)
	access, err := a.accessToken(s.user, s.role, now, exp)
	if err != nil {
		return tokenPair{}, err
	}
	return tokenPair{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int(exp.Sub(now) / time.Second), Role: s.role.String()}, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func (a *API) accessToken(user string, r role, now, exp time.Time) (string, error) {
	jti, err := newJTI()
	if err != nil {
		return "", err
	}
	return a.tokens.sign(claims{User: user, Role: r.String(), Iat: now.Unix(), Exp: exp.Unix(), JTI: jti})
}

// limitKey is one limiter and the key a login attempt counts under; name
// says which limit it is in the audit log.
type limitKey struct {
	l    *limiter
	key  string
	name string
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// login: POST auth/login. Failed logins are limited before any
// authenticator runs: per username and source, per source, and per
// username over every source but those the user logged in from before
// (see Options.AccountFailures). No limit is keyed on the username alone
// for every source, so an attacker guessing a user's password cannot lock
// that user out of a workstation they have used.
func (a *API) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Username == "" || len(req.Username) > 256 {
		return fieldError("username", "username: want 1-256 characters")
	}
	if req.Password == "" || len(req.Password) > 1024 {
		return fieldError("password", "password: want 1-1024 characters")
	}
	s, err := a.checkLogin(r, req)
	if err != nil {
		return err
	}
	pair, err := a.issue(s, func(t store.RefreshToken) error {
		return a.deps.Store.PutRefreshToken(r.Context(), t)
	})
	if err != nil {
		return fmt.Errorf("log in %s: %w", s.user, err)
	}
	a.audit(r.Context(), s.user, "auth.login", "user/"+s.user, map[string]string{"role": s.role.String()}, remoteIP(r))
	writeJSON(w, http.StatusOK, pair)
	return nil
}

// checkLogin checks a login's username and password under the failed
// login limits and answers the session it opens: the API's token login
// and the console's browser login share it, limits included. Failures are
// audited here; the caller audits the success.
func (a *API) checkLogin(r *http.Request, req loginRequest) (session, error) {
	a.metrics.requests.Inc()
	src := remoteIP(r)
	userKey := strings.ToLower(req.Username)
	now := a.clock.Now()
	a.auditRefusals(r.Context(), a.refusals.sweep(now))
	keys := []limitKey{{a.users, userKey + "\x00" + src, "user_source"}, {a.sources, src, "source"}}
	if !a.trusted.has(userKey, src, now) {
		keys = append(keys, limitKey{a.accounts, userKey, "account"})
	}
	var wait time.Duration
	var reserved []limitKey
	var refusedBy *limitKey
	for i, k := range keys {
		if w, ok := k.l.reserve(k.key, now); ok {
			reserved = append(reserved, k)
		} else {
			wait = max(wait, w)
			if refusedBy == nil {
				refusedBy = &keys[i]
			}
		}
	}
	release := func() {
		for _, k := range reserved {
			k.l.release(k.key, now)
		}
	}
	if len(reserved) < len(keys) {
		release()
		a.metrics.failures.WithLabelValues("rate_limited").Inc()
		secs := int(math.Ceil(wait.Seconds()))
		a.logger.Warn("login refused: too many failures", "user", req.Username, "source", src)
		first, closed := a.refusals.note(refusedBy.name+"\x00"+refusedBy.key, refusedBy.name, req.Username, src, now)
		if first {
			a.audit(r.Context(), req.Username, "auth.login_rate_limited", "user/"+req.Username, map[string]string{
				"limit": refusedBy.name, "refused": "1",
				"note": fmt.Sprintf("further refusals under this limit are counted and written once, %s after this one", a.refusals.window),
			}, src)
		}
		a.auditRefusals(r.Context(), closed)
		return session{}, &apiError{status: http.StatusTooManyRequests,
			msg:    fmt.Sprintf("too many failed logins; retry in %s", time.Duration(secs)*time.Second),
			header: http.Header{"Retry-After": {strconv.Itoa(secs)}}}
	}

	id, backend, err := a.verify(r.Context(), req.Username, req.Password)
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		// The reserved failures stand.
		a.metrics.failures.WithLabelValues("bad_credentials").Inc()
		a.logger.Info("login failed", "user", req.Username, "source", src)
		// Bounded by the limits above: each entry costs the attacker a
		// reserved failure.
		a.audit(r.Context(), req.Username, "auth.login_failed", "user/"+req.Username, map[string]string{"reason": "bad_credentials"}, src)
		return session{}, errorf(http.StatusUnauthorized, "invalid username or password")
	case err != nil:
		release()
		a.metrics.failures.WithLabelValues("unavailable").Inc()
		a.logger.Error("login: no auth plugin could answer", "user", req.Username, "error", err)
		return session{}, errorf(http.StatusServiceUnavailable, "cannot check credentials now: %v", err)
	}
	// The account's failures from elsewhere stand: they are someone
	// else's guesses, not this user's typos.
	a.users.reset(keys[0].key)
	release()
	a.trusted.add(userKey, src, now)
	user := id.Username
	if user == "" {
		user = req.Username
	}
	rl := a.roleOf(id.Groups)
	if rl == roleNone {
		a.metrics.failures.WithLabelValues("no_role").Inc()
		a.logger.Info("login refused: no DLS role", "user", user, "groups", id.Groups, "source", src)
		a.audit(r.Context(), user, "auth.login_failed", "user/"+user, map[string]string{"reason": "no_role"}, src)
		return session{}, errorf(http.StatusForbidden, "user %s has no DLS role (no group maps to admin, operator or viewer)", user)
	}
	return session{user: user, role: rl, groups: id.Groups, backend: backend, start: now}, nil
}

// auditRefusals writes the totals of rate-limit windows that closed.
func (a *API) auditRefusals(ctx context.Context, closed []refusalWindow) {
	for _, w := range closed {
		a.audit(ctx, w.user, "auth.login_rate_limited", "user/"+w.user, map[string]string{
			"limit": w.limit, "refused": strconv.Itoa(w.count),
			"window_start": w.start.UTC().Format(time.RFC3339), "window": a.refusals.window.String(),
		}, w.source)
	}
}

// verify asks each authenticator in turn and answers the identity and the
// name of the instance that vouched for it. The first to know the user
// wins; wrong credentials everywhere answer auth.ErrInvalidCredentials;
// when no authenticator knew the user and one failed otherwise (a
// directory down), that error, since the credentials may have been right.
func (a *API) verify(ctx context.Context, user, pass string) (auth.Identity, string, error) {
	var failed error
	authenticators := a.deps.Authenticators()
	for _, au := range authenticators {
		id, err := au.Verify(ctx, user, pass)
		if err == nil {
			return id, au.Name, nil
		}
		if !errors.Is(err, auth.ErrInvalidCredentials) && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		return auth.Identity{}, "", failed
	}
	if len(authenticators) == 0 {
		return auth.Identity{}, "", errors.New("no auth plugin is running")
	}
	return auth.Identity{}, "", auth.ErrInvalidCredentials
}

// lookup asks the auth plugin instance backend for user's identity now,
// and answers it and the instance that answered. Only that instance may
// answer: another backend's user of the same name is another person. A
// token from before DLS recorded backends ("") asks every instance in
// turn, as a login does: the first that knows the user wins.
// auth.ErrUserNotFound means no instance knows the user (any more); any
// other error, that the answer is unknown now.
func (a *API) lookup(ctx context.Context, backend, user string) (auth.Identity, string, error) {
	authenticators := a.deps.Authenticators()
	if backend != "" {
		for _, au := range authenticators {
			if au.Name == backend {
				id, err := au.Lookup(ctx, user)
				return id, backend, err
			}
		}
		return auth.Identity{}, "", fmt.Errorf("auth plugin %s, which verified the login of %s, is not running", backend, user)
	}
	var failed error
	for _, au := range authenticators {
		id, err := au.Lookup(ctx, user)
		if err == nil {
			return id, au.Name, nil
		}
		if !errors.Is(err, auth.ErrUserNotFound) && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		return auth.Identity{}, "", failed
	}
	if len(authenticators) == 0 {
		return auth.Identity{}, "", errors.New("no auth plugin is running")
	}
	return auth.Identity{}, "", fmt.Errorf("look up user %s: %w", user, auth.ErrUserNotFound)
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// refresh: POST auth/refresh rotates a refresh token. A token presented
// again after its rotation was stolen or leaked: every token of its user is
// revoked. The auth plugin that verified the login is asked again
// (Lookup) before anything is written: a user it no longer knows loses
// every token, one whose groups changed gets the role they map to now,
// and when it cannot answer the token is left as it was (503) to be
// presented again. No refresh goes past the session's lifetime.
func (a *API) refresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.RefreshToken == "" {
		return fieldError("refresh_token", "refresh_token is required")
	}
	a.metrics.requests.Inc()
	ctx := r.Context()
	now := a.clock.Now()
	hash := hashToken(req.RefreshToken)
	old, err := a.deps.Store.GetRefreshToken(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return a.refused(errBadToken, "invalid refresh token")
	case err != nil:
		return fmt.Errorf("refresh token: %w", err)
	case old.Used:
		return a.replayed(r, old.User)
	case old.Revoked:
		return a.refused(errRevokedToken, "refresh token revoked")
	case !now.Before(old.Expires):
		return a.refused(errExpiredToken, "refresh token expired; log in again")
	}
	start := old.SessionStart
	if start.IsZero() {
		start = old.Issued
	}
	if end := start.Add(a.opts.SessionLifetime); !now.Before(end) {
		return a.refused(errExpiredToken, fmt.Sprintf("session started at %s reached its lifetime of %s; log in again",
			start.UTC().Format(time.RFC3339), a.opts.SessionLifetime))
	}
	if parseRole(old.Role) == roleNone {
		return a.refused(errBadToken, "invalid refresh token")
	}
	id, backend, err := a.lookup(ctx, old.Backend, old.User)
	switch {
	case errors.Is(err, auth.ErrUserNotFound):
		return a.userGone(r, old.User, old.Backend)
	case err != nil:
		a.metrics.failures.WithLabelValues("unavailable").Inc()
		a.logger.Error("refresh: the auth plugin could not answer; the token stays valid", "user", old.User, "plugin", old.Backend, "error", err)
		return errorf(http.StatusServiceUnavailable, "cannot check user %s with the auth plugin now (the refresh token stays valid; retry): %v", old.User, err)
	}
	rl := a.roleOf(id.Groups)
	if rl == roleNone {
		return a.userGone(r, old.User, backend)
	}
	if rl.String() != old.Role {
		a.logger.Info("role changed since the login", "user", old.User, "from", old.Role, "to", rl.String(), "groups", id.Groups)
		a.audit(ctx, old.User, "auth.role_changed", "user/"+old.User, map[string]string{"from": old.Role, "to": rl.String()}, remoteIP(r))
	}
	s := session{user: old.User, role: rl, groups: id.Groups, backend: backend, start: start}
	pair, err := a.issue(s, func(t store.RefreshToken) error {
		return a.deps.Store.RotateRefreshToken(ctx, hash, t)
	})
	if errors.Is(err, store.ErrConflict) {
		// Rotated by a concurrent request between the read and now.
		return a.replayed(r, old.User)
	}
	if err != nil {
		return fmt.Errorf("refresh token of %s: %w", old.User, err)
	}
	a.metrics.refreshes.Inc()
	writeJSON(w, http.StatusOK, pair)
	return nil
}

// userGone ends every session of a user the auth plugin no longer knows,
// or who no longer has a DLS role: their refresh tokens are revoked and
// their access tokens denied.
func (a *API) userGone(r *http.Request, user, backend string) error {
	now := a.clock.Now()
	a.deny.denyUser(user, now, a.opts.AccessTTL)
	if err := a.deps.Store.RevokeUserTokens(r.Context(), user); err != nil {
		a.logger.Error("user gone; revoking the user's tokens failed", "user", user, "error", err)
	}
	a.logger.Warn("refresh refused: the auth plugin no longer knows the user, or they have no DLS role; every token of the user revoked",
		"user", user, "plugin", backend, "source", remoteIP(r))
	a.audit(r.Context(), user, "auth.user_gone", "user/"+user,
		map[string]string{"plugin": backend, "effect": "all tokens revoked"}, remoteIP(r))
	return a.refused(errUserGone, "user "+user+" no longer exists, is disabled or has no DLS role; log in again")
}

// replayed revokes every token of user after a rotated refresh token came
// back.
func (a *API) replayed(r *http.Request, user string) error {
	now := a.clock.Now()
	a.deny.denyUser(user, now, a.opts.AccessTTL)
	if err := a.deps.Store.RevokeUserTokens(r.Context(), user); err != nil {
		a.logger.Error("refresh token replayed; revoking the user's tokens failed", "user", user, "error", err)
	} else {
		a.logger.Warn("refresh token replayed: every token of the user revoked", "user", user, "source", remoteIP(r))
	}
	a.audit(r.Context(), user, "auth.token_replay", "user/"+user, map[string]string{"effect": "all tokens revoked"}, remoteIP(r))
	return a.refused(errRevokedToken, "refresh token already used; every token of this user is revoked, log in again")
}

func (a *API) refused(reason error, msg string) error {
	a.metrics.failures.WithLabelValues(reason.Error()).Inc()
	return errorf(http.StatusUnauthorized, "%s", msg)
}

// logout: POST auth/logout revokes the refresh token in the body and, when
// the request carries one, denies the access token until it expires.
func (a *API) logout(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decode(w, r, &req, true); err != nil {
		return err
	}
	var p principal
	hasBearer := r.Header.Get("Authorization") != ""
	if hasBearer {
		var err error
		if p, err = a.authenticate(r); err != nil {
			return err
		}
	}
	if req.RefreshToken == "" && !hasBearer {
		return fieldError("refresh_token", "nothing to log out: give refresh_token, a bearer token or both")
	}
	user := p.user
	if req.RefreshToken != "" {
		hash := hashToken(req.RefreshToken)
		t, err := a.deps.Store.GetRefreshToken(r.Context(), hash)
		if errors.Is(err, store.ErrNotFound) {
			return a.refused(errBadToken, "invalid refresh token")
		}
		if err != nil {
			return fmt.Errorf("log out: %w", err)
		}
		if hasBearer && t.User != p.user {
			return errorf(http.StatusForbidden, "the refresh token belongs to another user")
		}
		if err := a.deps.Store.RevokeRefreshToken(r.Context(), hash); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("log out %s: %w", t.User, err)
		}
		user = t.User
	}
	if hasBearer {
		a.deny.denyToken(p.jti, p.exp, a.clock.Now())
	}
	a.audit(r.Context(), user, "auth.logout", "user/"+user, nil, remoteIP(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}
