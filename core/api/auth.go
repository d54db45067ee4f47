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

// issue creates a refresh token (stored through put) and an access token.
func (a *API) issue(user string, r role, groups []string, put func(store.RefreshToken) error) (tokenPair, error) {
	now := a.clock.Now()
	refresh, hash, err := newRefreshToken()
	if err != nil {
		return tokenPair{}, err
	}
	err = put(store.RefreshToken{Hash: hash, User: user, Role: r.String(), Groups: groups, Issued: now, Expires: now.Add(a.opts.RefreshTTL)})
	if err != nil {
		return tokenPair{}, err
	}
	access, err := a.accessToken(user, r, now)
	if err != nil {
		return tokenPair{}, err
	}
	return tokenPair{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int(a.opts.AccessTTL / time.Second), Role: r.String()}, nil
}

func (a *API) accessToken(user string, r role, now time.Time) (string, error) {
	jti, err := newJTI()
	if err != nil {
		return "", err
	}
	return a.tokens.sign(claims{User: user, Role: r.String(), Iat: now.Unix(), Exp: now.Add(a.opts.AccessTTL).Unix(), JTI: jti})
}

// limitKey is one limiter and the key a login attempt counts under.
type limitKey struct {
	l   *limiter
	key string
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
	a.metrics.requests.Inc()
	src := remoteIP(r)
	userKey := strings.ToLower(req.Username)
	now := a.clock.Now()
	keys := []limitKey{{a.users, userKey + "\x00" + src}, {a.sources, src}}
	if !a.trusted.has(userKey, src, now) {
		keys = append(keys, limitKey{a.accounts, userKey})
	}
	var wait time.Duration
	var reserved []limitKey
	for _, k := range keys {
		if w, ok := k.l.reserve(k.key, now); ok {
			reserved = append(reserved, k)
		} else {
			wait = max(wait, w)
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
		return &apiError{status: http.StatusTooManyRequests,
			msg:    fmt.Sprintf("too many failed logins; retry in %s", time.Duration(secs)*time.Second),
			header: http.Header{"Retry-After": {strconv.Itoa(secs)}}}
	}

	id, err := a.verify(r.Context(), req.Username, req.Password)
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		// The reserved failures stand.
		a.metrics.failures.WithLabelValues("bad_credentials").Inc()
		a.logger.Info("login failed", "user", req.Username, "source", src)
		return errorf(http.StatusUnauthorized, "invalid username or password")
	case err != nil:
		release()
		a.metrics.failures.WithLabelValues("unavailable").Inc()
		a.logger.Error("login: no auth plugin could answer", "user", req.Username, "error", err)
		return errorf(http.StatusServiceUnavailable, "cannot check credentials now: %v", err)
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
		return errorf(http.StatusForbidden, "user %s has no DLS role (no group maps to admin, operator or viewer)", user)
	}
	pair, err := a.issue(user, rl, id.Groups, func(t store.RefreshToken) error {
		return a.deps.Store.PutRefreshToken(r.Context(), t)
	})
	if err != nil {
		return fmt.Errorf("log in %s: %w", user, err)
	}
	a.audit(r.Context(), user, "auth.login", "user/"+user, map[string]string{"role": rl.String()}, src)
	writeJSON(w, http.StatusOK, pair)
	return nil
}

// verify asks each authenticator in turn. The first to know the user wins;
// wrong credentials everywhere answer auth.ErrInvalidCredentials; when no
// authenticator knew the user and one failed otherwise (a directory down),
// that error, since the credentials may have been right.
func (a *API) verify(ctx context.Context, user, pass string) (auth.Identity, error) {
	var failed error
	authenticators := a.deps.Authenticators()
	for _, au := range authenticators {
		id, err := au.Verify(ctx, user, pass)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, auth.ErrInvalidCredentials) && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		return auth.Identity{}, failed
	}
	if len(authenticators) == 0 {
		return auth.Identity{}, errors.New("no auth plugin is running")
	}
	return auth.Identity{}, auth.ErrInvalidCredentials
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// refresh: POST auth/refresh rotates a refresh token. A token presented
// again after its rotation was stolen or leaked: every token of its user is
// revoked.
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
	rl := parseRole(old.Role)
	if rl == roleNone {
		return a.refused(errBadToken, "invalid refresh token")
	}
	pair, err := a.issue(old.User, rl, old.Groups, func(t store.RefreshToken) error {
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
