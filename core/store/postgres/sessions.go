package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dls-project/dls/core/store"
)

const selectSession = `SELECT id, client, mac, address, stages, expect, state, failed_stage,
	token_hash, token_used, started, ended FROM sessions`

// CreateSession implements store.Sessions.
func (s *Store) CreateSession(ctx context.Context, sess store.Session) (store.Session, error) {
	return s.createSession(ctx, s.pool, sess)
}

// UpdateSession implements store.Sessions.
func (s *Store) UpdateSession(ctx context.Context, sess store.Session) error {
	_, err := s.updateSession(ctx, s.pool, sess)
	return err
}

// WriteSessions implements store.SessionBatcher: one transaction for the
// whole batch.
func (s *Store) WriteSessions(ctx context.Context, ss []store.Session) ([]store.Session, error) {
	out := make([]store.Session, len(ss))
	err := s.inTx(ctx, func(tx pgx.Tx) error {
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
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id`,
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
	tag, err := s.exec(ctx, q, `UPDATE sessions SET
		client = $1, mac = $2, address = $3, stages = $4, expect = $5, state = $6, failed_stage = $7,
		token_hash = $8, token_used = $9, started = $10, ended = $11
		WHERE id = $12`, append(r.args(), sess.ID)...)
	if err != nil {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, conflict(err))
	}
	if tag.RowsAffected() == 0 {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, store.ErrNotFound)
	}
	return r.session()
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id int64) (store.Session, error) {
	sess, err := s.oneSession(ctx, `id = $1`, id)
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
	sess, err := s.oneSession(ctx, `token_hash = $1`, tokenHash)
	if err != nil {
		return sess, fmt.Errorf("session by token: %w", err)
	}
	return sess, nil
}

func (s *Store) oneSession(ctx context.Context, where string, arg any) (store.Session, error) {
	var r sessionRow
	err := s.queryRow(ctx, s.pool, selectSession+` WHERE `+where, []any{arg}, r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
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
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Client != "" {
		where = append(where, "client = "+arg(f.Client))
	}
	if f.State != "" {
		where = append(where, "state = "+arg(f.State))
	}
	query := selectSession
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY started DESC, id DESC LIMIT ` + arg(f.Limit)

	var ss []store.Session
	err := s.query(ctx, s.pool, query, args, func(rows pgx.Rows) error {
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
	stages    []byte        // {"stage": unix ms}
	tokenHash *string
	started   time.Time
	ended     *time.Time
}

func newSessionRow(s store.Session) (sessionRow, error) {
	r := sessionRow{s: s, started: millis(s.Started)}
	stages := make(map[string]int64, len(s.Stages))
	for stage, at := range s.Stages {
		stages[stage] = at.UnixMilli()
	}
	b, err := json.Marshal(stages)
	if err != nil {
		return r, fmt.Errorf("stages: %w", err)
	}
	r.stages = b
	if s.TokenHash != "" {
		r.tokenHash = &s.TokenHash
	}
	if !s.Ended.IsZero() {
		ended := millis(s.Ended)
		r.ended = &ended
	}
	return r, nil
}

// args are the values of the columns after id, in selectSession's order.
func (r *sessionRow) args() []any {
	return []any{r.s.Client, r.s.MAC, r.s.Address, string(r.stages), r.s.Expect, r.s.State, r.s.FailedStage,
		r.tokenHash, r.s.TokenUsed, r.started, r.ended}
}

func (r *sessionRow) dest() []any {
	return []any{&r.s.ID, &r.s.Client, &r.s.MAC, &r.s.Address, &r.stages, &r.s.Expect, &r.s.State,
		&r.s.FailedStage, &r.tokenHash, &r.s.TokenUsed, &r.started, &r.ended}
}

func (r *sessionRow) session() (store.Session, error) {
	s := r.s
	var stages map[string]int64
	if err := json.Unmarshal(r.stages, &stages); err != nil {
		return s, fmt.Errorf("session %d: stored stages: %w", s.ID, err)
	}
	s.Stages = nil
	if len(stages) > 0 {
		s.Stages = make(map[string]time.Time, len(stages))
		for stage, ms := range stages {
			s.Stages[stage] = time.UnixMilli(ms).UTC()
		}
	}
	s.TokenHash = ""
	if r.tokenHash != nil {
		s.TokenHash = *r.tokenHash
	}
	s.Started = r.started.UTC()
	s.Ended = time.Time{}
	if r.ended != nil {
		s.Ended = r.ended.UTC()
	}
	return s, nil
}
