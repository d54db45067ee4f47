package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
)

// Errors name the token's user, never its hash: the hash is what a
// presented token is looked up by, and has no place in logs.

const selectToken = `SELECT hash, username, role, groups, issued, expires, used, revoked, backend, COALESCE(session_start, issued) FROM refresh_tokens`

// insertToken stores a token; the primary key refuses a hash twice.
const insertToken = `INSERT INTO refresh_tokens (hash, username, role, groups, issued, expires, used, revoked, backend, session_start)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// PutRefreshToken implements store.Tokens.
func (t *Tables) PutRefreshToken(ctx context.Context, tok store.RefreshToken) error {
	args, err := tokenArgs(t.d, tok)
	if err != nil {
		return fmt.Errorf("put refresh token: %w", err)
	}
	if _, err := t.db.Write().Exec(ctx, Bind(t.d, insertToken), args...); err != nil {
		return fmt.Errorf("put refresh token of %s: %w", tok.User, t.db.Conflict(err))
	}
	return nil
}

// RotateRefreshToken implements store.Tokens. The conditional UPDATE is
// what makes rotation safe: it marks the old token used only if nobody
// has. On SQLite the write transaction (BEGIN IMMEDIATE, one writer)
// serializes it with every other rotation, through this store or another
// process on the same file. On PostgreSQL a second rotation of the token
// waits for the first's row lock, then (READ COMMITTED) re-checks the
// condition on the row the first left, finds it used and matches nothing.
func (t *Tables) RotateRefreshToken(ctx context.Context, oldHash string, next store.RefreshToken) error {
	args, err := tokenArgs(t.d, next)
	if err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	err = t.db.InTx(ctx, func(tx Conn) error {
		// Taken per attempt: a retried transaction decides at its own time.
		now := time.Now()
		var user string
		found, err := tx.QueryRow(ctx, Bind(t.d, `UPDATE refresh_tokens SET used = true
			WHERE hash = ? AND NOT used AND NOT revoked AND expires > ?
			RETURNING username`), []any{oldHash, t.d.Time(now)}, &user)
		if err != nil {
			return err
		}
		if !found {
			return t.notRotatable(ctx, tx, oldHash, now)
		}
		if user != next.User {
			return fmt.Errorf("token of %s rotated into one of %s: %w", user, next.User, store.ErrInvalid)
		}
		_, err = tx.Exec(ctx, Bind(t.d, insertToken), args...)
		return t.db.Conflict(err)
	})
	if err != nil {
		return fmt.Errorf("rotate refresh token of %s: %w", next.User, err)
	}
	return nil
}

// notRotatable says why the rotation's UPDATE matched no row. It runs
// after the UPDATE waited out any other writer of the row, so it reads
// the version that UPDATE decided on.
func (t *Tables) notRotatable(ctx context.Context, q Conn, hash string, now time.Time) error {
	var (
		used, revoked bool
		stored        any
	)
	found, err := q.QueryRow(ctx, Bind(t.d, `SELECT used, revoked, expires FROM refresh_tokens WHERE hash = ?`),
		[]any{hash}, &used, &revoked, &stored)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("old token: %w", store.ErrNotFound)
	}
	expires, err := t.d.ScanTime(stored)
	switch {
	case err != nil:
		return fmt.Errorf("old token: stored expiry: %w", err)
	case revoked:
		return fmt.Errorf("old token is revoked: %w", store.ErrConflict)
	case used:
		return fmt.Errorf("old token was already used: %w", store.ErrConflict)
	case !expires.After(now.Truncate(time.Millisecond)):
		return fmt.Errorf("old token expired at %s: %w", expires.Format(time.RFC3339), store.ErrConflict)
	}
	return fmt.Errorf("old token changed during rotation: %w", store.ErrConflict)
}

// GetRefreshToken implements store.Tokens.
func (t *Tables) GetRefreshToken(ctx context.Context, hash string) (store.RefreshToken, error) {
	var (
		tok                    store.RefreshToken
		groups                 []byte
		issued, expires, start any
	)
	found, err := t.db.Read().QueryRow(ctx, Bind(t.d, selectToken+` WHERE hash = ?`), []any{hash},
		&tok.Hash, &tok.User, &tok.Role, &groups, &issued, &expires, &tok.Used, &tok.Revoked, &tok.Backend, &start)
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.RefreshToken{}, fmt.Errorf("get refresh token: %w", err)
	}
	if err := json.Unmarshal(groups, &tok.Groups); err != nil {
		return store.RefreshToken{}, fmt.Errorf("get refresh token of %s: stored groups: %w", tok.User, err)
	}
	if len(tok.Groups) == 0 {
		tok.Groups = nil
	}
	for _, c := range []struct {
		dst *time.Time
		v   any
	}{{&tok.Issued, issued}, {&tok.Expires, expires}, {&tok.SessionStart, start}} {
		if *c.dst, err = t.d.ScanTime(c.v); err != nil {
			return store.RefreshToken{}, fmt.Errorf("get refresh token of %s: stored time: %w", tok.User, err)
		}
	}
	return tok, nil
}

// RevokeRefreshToken implements store.Tokens.
func (t *Tables) RevokeRefreshToken(ctx context.Context, hash string) error {
	n, err := t.db.Write().Exec(ctx, Bind(t.d, `UPDATE refresh_tokens SET revoked = true WHERE hash = ?`), hash)
	if err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("revoke refresh token: %w", store.ErrNotFound)
	}
	return nil
}

// RevokeUserTokens implements store.Tokens.
func (t *Tables) RevokeUserTokens(ctx context.Context, user string) error {
	if _, err := t.db.Write().Exec(ctx,
		Bind(t.d, `UPDATE refresh_tokens SET revoked = true WHERE username = ? AND NOT revoked`), user); err != nil {
		return fmt.Errorf("revoke refresh tokens of %s: %w", user, err)
	}
	return nil
}

// CountActiveTokens implements store.Tokens.
func (t *Tables) CountActiveTokens(ctx context.Context, now time.Time) (int, error) {
	var n int
	if _, err := t.db.Read().QueryRow(ctx,
		Bind(t.d, `SELECT COUNT(*) FROM refresh_tokens WHERE NOT used AND NOT revoked AND expires > ?`),
		[]any{t.d.Time(now)}, &n); err != nil {
		return 0, fmt.Errorf("count active refresh tokens: %w", err)
	}
	return n, nil
}

// tokenArgs validates tok and returns insertToken's arguments; a zero
// Issued becomes now.
func tokenArgs(d Dialect, tok store.RefreshToken) ([]any, error) {
	tok, err := tok.Normalize()
	if err != nil {
		return nil, err
	}
	if tok.Issued.IsZero() {
		tok.Issued = time.Now()
	}
	groups := []byte("[]")
	if tok.Groups != nil {
		if groups, err = json.Marshal(tok.Groups); err != nil {
			return nil, fmt.Errorf("token of %s: groups: %w", tok.User, err)
		}
	}
	if tok.SessionStart.IsZero() {
		tok.SessionStart = tok.Issued
	}
	return []any{tok.Hash, tok.User, tok.Role, string(groups), d.Time(tok.Issued), d.Time(tok.Expires),
		tok.Used, tok.Revoked, tok.Backend, d.Time(tok.SessionStart)}, nil
}
