package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
)

const selectSession = `SELECT id, client, mac, address, stages, expect, state, failed_stage,
	token_hash, token_used, started, ended FROM sessions`

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) (store.Session, error) {
	return s.createSession(ctx, s.write, sess)
}

// UpdateSession implements store.Sessions.
func (s *Store) UpdateSession(ctx context.Context, sess store.Session) error {
	_, err := s.updateSession(ctx, s.write, sess)
	return err
}

// WriteSessions implements store.SessionBatcher: one transaction for the
// whole batch.
func (s *Store) WriteSessions(ctx context.Context, ss []store.Session) ([]store.Session, error) {
	out := make([]store.Session, len(ss))
	err := s.inTx(ctx, s.write, func(tx *sql.Tx) error {
		for i, sess := range ss {
			var err error
			if sess.ID == 0 {
				out[i], err = s.createSession(ctx, tx, sess)
			} else {
				out[i], err = s.updateSession(ctx, tx, sess)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *Store) createSession(ctx context.Context, q querier, sess store.Session) (store.Session, error) {
	sess, err := sess.Normalize()
	if err != nil {
		return store.Session{}, fmt.Errorf("create session for %s: %w", sess.Client, err)
	}
	if sess.Started.IsZero() {
		sess.Started = time.Now()
	}
	r, err := newSessionRow(sess)
	if err != nil {
		return store.Session{}, fmt.Errorf("create session for %s: %w", sess.Client, err)
	}
	err = s.queryRow(ctx, q, `INSERT INTO sessions
		(client, mac, address, stages, expect, state, failed_stage, token_hash, token_used, started, ended)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		r.args(), &r.s.ID)
	if err != nil {
		return store.Session{}, fmt.Errorf("create session for %s: %w", sess.Client, conflict(err))
	}
	// Return it as a read would: millisecond times in UTC.
	return r.session()
}

// updateSession replaces a session and returns it as a read would.
func (s *Store) updateSession(ctx context.Context, q querier, sess store.Session) (store.Session, error) {
	sess, err := sess.Normalize()
	if err != nil {
		return store.Session{}, fmt.Errorf("update session: %w", err)
	}
	r, err := newSessionRow(sess)
	if err != nil {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, err)
	}
	res, err := s.exec(ctx, q, `UPDATE sessions SET
		client = ?, mac = ?, address = ?, stages = ?, expect = ?, state = ?, failed_stage = ?,
		token_hash = ?, token_used = ?, started = ?, ended = ?
		WHERE id = ?`, append(r.args(), sess.ID)...)
	if err != nil {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, conflict(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, err)
	} else if n == 0 {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, store.ErrNotFound)
	}
	return r.session()
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id int64) (store.Session, error) {
	sess, err := s.oneSession(ctx, `id = ?`, id)
	if err != nil {
		return sess, fmt.Errorf("get session %d: %w", id, err)
	}
	return sess, nil
}

// SessionByToken implements store.Sessions.
func (s *Store) SessionByToken(ctx context.Context, tokenHash string) (store.Session, error) {
	if tokenHash == "" {
		return store.Session{}, fmt.Errorf("session by token: empty token hash: %w", store.ErrNotFound)
	}
	sess, err := s.oneSession(ctx, `token_hash = ?`, tokenHash)
	if err != nil {
		return sess, fmt.Errorf("session by token: %w", err)
	}
	return sess, nil
}

func (s *Store) oneSession(ctx context.Context, where string, arg any) (store.Session, error) {
	var r sessionRow
	err := s.queryRow(ctx, s.read, selectSession+` WHERE `+where, []any{arg}, r.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Session{}, store.ErrNotFound
	}
	if err != nil {
		return store.Session{}, err
	}
	return r.session()
}

// ListSessions implements store.Sessions.
func (s *Store) ListSessions(ctx context.Context, f store.SessionFilter) ([]store.Session, error) {
	f = f.Normalize()
	var (
		where []string
		args  []any
	)
	if f.Client != "" {
		where = append(where, "client = ?")
		args = append(args, f.Client)
	}
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, f.State)
	}
	query := selectSession
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY started DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)

	var ss []store.Session
	err := s.query(ctx, s.read, query, args, func(rows *sql.Rows) error {
		var r sessionRow
		if err := rows.Scan(r.dest()...); err != nil {
			return err
		}
		sess, err := r.session()
		if err != nil {
			return err
		}
		ss = append(ss, sess)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list sessions (client %q, state %q): %w", f.Client, f.State, err)
	}
	return ss, nil
}

// sessionRow is a session as the sessions table holds it.
type sessionRow struct {
	s         store.Session // ID, Client, MAC, Address, Expect, State, FailedStage, TokenUsed
	stages    string        // {"stage": unix ms}
	tokenHash sql.NullString
	started   int64
	ended     sql.NullInt64
}

func newSessionRow(s store.Session) (sessionRow, error) {
	r := sessionRow{s: s, started: s.Started.UnixMilli()}
	stages := make(map[string]int64, len(s.Stages))
	for stage, at := range s.Stages {
		stages[stage] = at.UnixMilli()
	}
	b, err := json.Marshal(stages)
	if err != nil {
		return r, fmt.Errorf("stages: %w", err)
	}
	r.stages = string(b)
	if s.TokenHash != "" {
		r.tokenHash = sql.NullString{String: s.TokenHash, Valid: true}
	}
	if !s.Ended.IsZero() {
		r.ended = sql.NullInt64{Int64: s.Ended.UnixMilli(), Valid: true}
	}
	return r, nil
}

// args are the values of the columns after id, in selectSession's order.
func (r *sessionRow) args() []any {
	return []any{r.s.Client, r.s.MAC, r.s.Address, r.stages, r.s.Expect, r.s.State, r.s.FailedStage,
		r.tokenHash, r.s.TokenUsed, r.started, r.ended}
}

func (r *sessionRow) dest() []any {
	return []any{&r.s.ID, &r.s.Client, &r.s.MAC, &r.s.Address, &r.stages, &r.s.Expect, &r.s.State,
		&r.s.FailedStage, &r.tokenHash, &r.s.TokenUsed, &r.started, &r.ended}
}

func (r *sessionRow) session() (store.Session, error) {
	s := r.s
	var stages map[string]int64
	if err := json.Unmarshal([]byte(r.stages), &stages); err != nil {
		return s, fmt.Errorf("session %d: stored stages: %w", s.ID, err)
	}
	s.Stages = nil
	if len(stages) > 0 {
		s.Stages = make(map[string]time.Time, len(stages))
		for stage, ms := range stages {
			s.Stages[stage] = time.UnixMilli(ms).UTC()
		}
	}
	s.TokenHash = r.tokenHash.String
	s.Started = time.UnixMilli(r.started).UTC()
	s.Ended = time.Time{}
	if r.ended.Valid {
		s.Ended = time.UnixMilli(r.ended.Int64).UTC()
	}
	return s, nil
}
