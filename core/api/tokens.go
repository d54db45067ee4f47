package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Access tokens are JWTs (RFC 7519) with one fixed header, HS256: the
// signature covers header and claims, and a token with any other header is
// refused (no algorithm negotiation).
const jwtHeader = `{"alg":"HS256","typ":"JWT"}`

var encodedHeader = base64.RawURLEncoding.EncodeToString([]byte(jwtHeader))

// maxTokenLen bounds what the API parses from an Authorization header.
const maxTokenLen = 4096

// claims are an access token's contents.
type claims struct {
	User string `json:"sub"`
	Role string `json:"role"`
	Iat  int64  `json:"iat"`
	Exp  int64  `json:"exp"`
	JTI  string `json:"jti"`
}

// Reasons an access or refresh token is refused (the label of
// dls_auth_failures_total).
var (
	errBadToken     = errors.New("bad_token")
	errExpiredToken = errors.New("expired_token")
	errRevokedToken = errors.New("revoked_token")
	// errUserGone: a refresh for a user the auth plugin no longer knows,
	// or who no longer has a DLS role.
	errUserGone = errors.New("user_gone")
)

// tokenSigner signs and checks access tokens.
type tokenSigner struct {
	key []byte
}

func (s *tokenSigner) sign(c claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signing := encodedHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signing + "." + base64.RawURLEncoding.EncodeToString(s.mac(signing)), nil
}

func (s *tokenSigner) mac(signing string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(signing))
	return m.Sum(nil)
}

// verify returns the token's claims, errBadToken when it is malformed,
// wrongly signed or incomplete, errExpiredToken when now is past exp.
func (s *tokenSigner) verify(tok string, now time.Time) (claims, error) {
	var c claims
	if len(tok) > maxTokenLen {
		return c, errBadToken
	}
	header, rest, ok := strings.Cut(tok, ".")
	if !ok || header != encodedHeader {
		return c, errBadToken
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return c, errBadToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(header+"."+payload)) {
		return c, errBadToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(raw, &c) != nil {
		return c, errBadToken
	}
	if c.User == "" || c.JTI == "" || c.Exp == 0 {
		return c, errBadToken
	}
	if !now.Before(time.Unix(c.Exp, 0)) {
		return c, errExpiredToken
	}
	return c, nil
}

// loadOrCreateKey reads the hex key in path, or creates one: 32 random
// bytes, written to a temporary file and linked into place, so that two
// hosts starting at once on a shared data dir agree on one key.
func loadOrCreateKey(path string) ([]byte, error) {
	key, err := readKey(path)
	if !errors.Is(err, os.ErrNotExist) {
		return key, err
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("create token key: %w", err)
	}
	if err := writeNewKey(path, key); errors.Is(err, os.ErrExist) {
		return readKey(path)
	} else if err != nil {
		return nil, fmt.Errorf("create token key %s: %w", path, err)
	}
	return key, nil
}

// writeNewKey writes key to path unless path exists (os.ErrExist).
func writeNewKey(path string, key []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(hex.EncodeToString(key) + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Link(tmp.Name(), path)
}

func readKey(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("token key %s has mode %04o: others could forge tokens (chmod 600 it)", path, perm)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("token key %s: want at least 64 hex digits", path)
	}
	return key, nil
}

// newRefreshToken returns a new refresh token and its hash.
func newRefreshToken() (tok, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("create refresh token: %w", err)
	}
	tok = base64.RawURLEncoding.EncodeToString(b)
	return tok, hashToken(tok), nil
}

// hashToken is how a refresh token is kept: SHA-256, hex.
func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// newJTI returns a random token ID.
func newJTI() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("create token id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// denylist holds access tokens revoked before they expire: by ID (logout)
// and by user (every token issued up to a time: a replayed refresh token).
// It lives in memory; entries go once the tokens they deny have expired.
type denylist struct {
	mu    sync.Mutex
	jtis  map[string]time.Time // jti → token expiry
	users map[string]userDeny
}

type userDeny struct {
	before time.Time // tokens issued at or before this are denied
	until  time.Time // when the last of them expires
}

func newDenylist() *denylist {
	return &denylist{jtis: map[string]time.Time{}, users: map[string]userDeny{}}
}

func (d *denylist) denyToken(jti string, exp, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prune(now)
	d.jtis[jti] = exp
}

func (d *denylist) denyUser(user string, now time.Time, ttl time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prune(now)
	d.users[user] = userDeny{before: now, until: now.Add(ttl)}
}

func (d *denylist) denied(c claims) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.jtis[c.JTI]; ok {
		return true
	}
	u, ok := d.users[c.User]
	return ok && c.Iat <= u.before.Unix()
}

func (d *denylist) prune(now time.Time) {
	for k, exp := range d.jtis {
		if !now.Before(exp) {
			delete(d.jtis, k)
		}
	}
	for k, u := range d.users {
		if !now.Before(u.until) {
			delete(d.users, k)
		}
	}
}
