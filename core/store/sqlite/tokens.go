package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
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
func (s *Store) PutRefreshToken(ctx context.Context, t store.RefreshToken) error {
	args, err := tokenArgs(t)
	if err != nil {
		return fmt.Errorf("put refresh token: %w", err)
	}
	if _, err := s.exec(ctx, s.write, insertToken, args...); err != nil {
		return fmt.Errorf("put refresh token of %s: %w", t.User, conflict(err))
	}
	return nil
}

// RotateRefreshToken implements store.Tokens. The conditional UPDATE is
// what makes rotation safe: it marks the old token used only if nobody
// has, and the write transaction (BEGIN IMMEDIATE, one writer) serializes
// it with every other rotation, through this store or another process on
// the same file.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash string, next store.RefreshToken) error {
	args, err := tokenArgs(next)
	if err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	now := time.Now().UnixMilli()
	err = s.inTx(ctx, s.write, func(tx *sql.Tx) error {
		var user string
		err := s.queryRow(ctx, tx, `UPDATE refresh_tokens SET used = 1
			WHERE hash = ? AND NOT used AND NOT revoked AND expires > ?
			RETURNING username`, []any{oldHash, now}, &user)
		if errors.Is(err, sql.ErrNoRows) {
			return s.notRotatable(ctx, tx, oldHash, now)
		}
		if err != nil {
			return err
		}
		if user != next.User {
			return fmt.Errorf("token of %s rotated into one of %s: %w", user, next.User, store.ErrInvalid)
		}
		_, err = s.exec(ctx, tx, insertToken, args...)
		return conflict(err)
	})
	if err != nil {
		return fmt.Errorf("rotate refresh token of %s: %w", next.User, err)
	}
	return nil
}

// notRotatable says why the rotation's UPDATE matched no row.
func (s *Store) notRotatable(ctx context.Context, q querier, hash string, now int64) error {
	var (
		used, revoked bool
		expires       int64
	)
	err := s.queryRow(ctx, q, `SELECT used, revoked, expires FROM refresh_tokens WHERE hash = ?`,
		[]any{hash}, &used, &revoked, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("old token: %w", store.ErrNotFound)
	case err != nil:
		return err
	case revoked:
		return fmt.Errorf("old token is revoked: %w", store.ErrConflict)
	case used:
		return fmt.Errorf("old token was already used: %w", store.ErrConflict)
	case expires <= now:
		return fmt.Errorf("old token expired at %s: %w", time.UnixMilli(expires).UTC().Format(time.RFC3339), store.ErrConflict)
	}
	return fmt.Errorf("old token changed during rotation: %w", store.ErrConflict)
}

// GetRefreshToken implements store.Tokens.
func (s *Store) GetRefreshToken(ctx context.Context, hash string) (store.RefreshToken, error) {
	var (
		t               store.RefreshToken
		groups          string
		issued, expires int64
		start           int64
	)
	err := s.queryRow(ctx, s.read, selectToken+` WHERE hash = ?`, []any{hash},
		&t.Hash, &t.User, &t.Role, &groups, &issued, &expires, &t.Used, &t.Revoked, &t.Backend, &start)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.RefreshToken{}, fmt.Errorf("get refresh token: %w", err)
	}
	if err := json.Unmarshal([]byte(groups), &t.Groups); err != nil {
		return store.RefreshToken{}, fmt.Errorf("get refresh token of %s: stored groups: %w", t.User, err)
	}
	if len(t.Groups) == 0 {
		t.Groups = nil
	}
	t.Issued = time.UnixMilli(issued).UTC()
	t.Expires = time.UnixMilli(expires).UTC()
	t.SessionStart = time.UnixMilli(start).UTC()
	return t, nil
}

// RevokeRefreshToken implements store.Tokens.
func (s *Store) RevokeRefreshToken(ctx context.Context, hash string) error {
	res, err := s.exec(ctx, s.write, `UPDATE refresh_tokens SET revoked = 1 WHERE hash = ?`, hash)
	if err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("revoke refresh token: %w", err)
	} else if n == 0 {
		return fmt.Errorf("revoke refresh token: %w", store.ErrNotFound)
	}
	return nil
}

// RevokeUserTokens implements store.Tokens.
func (s *Store) RevokeUserTokens(ctx context.Context, user string) error {
	if _, err := s.exec(ctx, s.write,
		`UPDATE refresh_tokens SET revoked = 1 WHERE username = ? AND NOT revoked`, user); err != nil {
		return fmt.Errorf("revoke refresh tokens of %s: %w", user, err)
	}
	return nil
}

// CountActiveTokens implements store.Tokens.
func (s *Store) CountActiveTokens(ctx context.Context, now time.Time) (int, error) {
	var n int
	if err := s.queryRow(ctx, s.read,
		`SELECT COUNT(*) FROM refresh_tokens WHERE NOT used AND NOT revoked AND expires > ?`,
		[]any{now.UnixMilli()}, &n); err != nil {
		return 0, fmt.Errorf("count active refresh tokens: %w", err)
	}
	return n, nil
}

// tokenArgs validates t and returns insertToken's arguments; a zero Issued
// becomes now.
func tokenArgs(t store.RefreshToken) ([]any, error) {
	t, err := t.Normalize()
	if err != nil {
		return nil, err
	}
	if t.Issued.IsZero() {
		t.Issued = time.Now()
	}
	groups := []byte("[]")
	if t.Groups != nil {
		if groups, err = json.Marshal(t.Groups); err != nil {
			return nil, fmt.Errorf("token of %s: groups: %w", t.User, err)
		}
	}
	if t.SessionStart.IsZero() {
		t.SessionStart = t.Issued
	}
	return []any{t.Hash, t.User, t.Role, string(groups), t.Issued.UnixMilli(), t.Expires.UnixMilli(),
		t.Used, t.Revoked, t.Backend, t.SessionStart.UnixMilli()}, nil
}
