package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
)

const selectSession = `SELECT id, client, mac, address, stages, expect, state, failed_stage,
	token_hash, token_used, started, ended FROM sessions`

// CreateSession implements store.Sessions.
func (t *Tables) CreateSession(ctx context.Context, sess store.Session) (store.Session, error) {
	return t.createSession(ctx, t.db.Write(), sess)
}

// UpdateSession implements store.Sessions.
func (t *Tables) UpdateSession(ctx context.Context, sess store.Session) error {
	_, err := t.updateSession(ctx, t.db.Write(), sess)
	return err
}

// WriteSessions implements store.SessionBatcher: one transaction for the
// whole batch.
func (t *Tables) WriteSessions(ctx context.Context, ss []store.Session) ([]store.Session, error) {
	out := make([]store.Session, len(ss))
	err := t.db.InTx(ctx, func(tx Conn) error {
		for i, sess := range ss {
			var err error
			if sess.ID == 0 {
				out[i], err = t.createSession(ctx, tx, sess)
			} else {
				out[i], err = t.updateSession(ctx, tx, sess)
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

func (t *Tables) createSession(ctx context.Context, q Conn, sess store.Session) (store.Session, error) {
	sess, err := sess.Normalize()
	if err != nil {
		return store.Session{}, fmt.Errorf("create session for %s: %w", sess.Client, err)
	}
	if sess.Started.IsZero() {
		sess.Started = time.Now()
	}
	r, err := newSessionRow(t.d, sess)
	if err != nil {
		return store.Session{}, fmt.Errorf("create session for %s: %w", sess.Client, err)
	}
	_, err = q.QueryRow(ctx, Bind(t.d, `INSERT INTO sessions
		(client, mac, address, stages, expect, state, failed_stage, token_hash, token_used, started, ended)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		r.args(), &r.s.ID)
	if err != nil {
		return store.Session{}, fmt.Errorf("create session for %s: %w", sess.Client, t.db.Conflict(err))
	}
	// Return it as a read would: millisecond times in UTC.
	return r.session(t.d)
}

// updateSession replaces a session and returns it as a read would.
func (t *Tables) updateSession(ctx context.Context, q Conn, sess store.Session) (store.Session, error) {
	sess, err := sess.Normalize()
	if err != nil {
		return store.Session{}, fmt.Errorf("update session: %w", err)
	}
	r, err := newSessionRow(t.d, sess)
	if err != nil {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, err)
	}
	n, err := q.Exec(ctx, Bind(t.d, `UPDATE sessions SET
		client = ?, mac = ?, address = ?, stages = ?, expect = ?, state = ?, failed_stage = ?,
		token_hash = ?, token_used = ?, started = ?, ended = ?
		WHERE id = ?`), append(r.args(), sess.ID)...)
	if err != nil {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, t.db.Conflict(err))
	}
	if n == 0 {
		return store.Session{}, fmt.Errorf("update session %d: %w", sess.ID, store.ErrNotFound)
	}
	return r.session(t.d)
}

// GetSession implements store.Sessions.
func (t *Tables) GetSession(ctx context.Context, id int64) (store.Session, error) {
	sess, err := t.oneSession(ctx, `id = ?`, id)
	if err != nil {
		return sess, fmt.Errorf("get session %d: %w", id, err)
	}
	return sess, nil
}

// SessionByToken implements store.Sessions.
func (t *Tables) SessionByToken(ctx context.Context, tokenHash string) (store.Session, error) {
	if tokenHash == "" {
		return store.Session{}, fmt.Errorf("session by token: empty token hash: %w", store.ErrNotFound)
	}
	sess, err := t.oneSession(ctx, `token_hash = ?`, tokenHash)
	if err != nil {
		return sess, fmt.Errorf("session by token: %w", err)
	}
	return sess, nil
}

func (t *Tables) oneSession(ctx context.Context, where string, arg any) (store.Session, error) {
	var r sessionRow
	found, err := t.db.Read().QueryRow(ctx, Bind(t.d, selectSession+` WHERE `+where), []any{arg}, r.dest()...)
	if err != nil {
		return store.Session{}, err
	}
	if !found {
		return store.Session{}, store.ErrNotFound
	}
	return r.session(t.d)
}

// ListSessions implements store.Sessions.
func (t *Tables) ListSessions(ctx context.Context, f store.SessionFilter) ([]store.Session, error) {
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
	if !f.Since.IsZero() {
		where = append(where, "started >= ?")
		args = append(args, t.d.Time(f.Since))
	}
	if !f.Before.IsZero() {
		where = append(where, "started < ?")
		args = append(args, t.d.Time(f.Before))
	}
	if f.Latest {
		where = append(where, "client <> ''")
	}
	query := selectSession
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	if f.Latest {
		// Both SQLite (3.25+) and PostgreSQL have window functions; the
		// sessions_client index (client, started) serves the partition.
		query = `SELECT id, client, mac, address, stages, expect, state, failed_stage,
	token_hash, token_used, started, ended FROM (SELECT *, ROW_NUMBER() OVER
	(PARTITION BY client ORDER BY started DESC, id DESC) AS newest FROM (` + query + `) AS kept) AS ranked
	WHERE newest = 1`
	}
	query += ` ORDER BY started DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)

	var ss []store.Session
	err := t.db.Read().Query(ctx, Bind(t.d, query), args, func(row Row) error {
		var r sessionRow
		if err := row.Scan(r.dest()...); err != nil {
			return err
		}
		sess, err := r.session(t.d)
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
	s              store.Session // ID, Client, MAC, Address, Expect, State, FailedStage, TokenUsed
	stages         []byte        // JSON {"stage": unix ms}
	tokenHash      *string       // nil for NULL
	started, ended any           // Dialect.Time; ended nil (NULL) while active
}

func newSessionRow(d Dialect, s store.Session) (sessionRow, error) {
	r := sessionRow{s: s, started: d.Time(s.Started)}
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
		r.ended = d.Time(s.Ended)
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

func (r *sessionRow) session(d Dialect) (store.Session, error) {
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
	var err error
	if s.Started, err = d.ScanTime(r.started); err != nil {
		return s, fmt.Errorf("session %d: stored start: %w", s.ID, err)
	}
	if s.Ended, err = d.ScanTime(r.ended); err != nil {
		return s, fmt.Errorf("session %d: stored end: %w", s.ID, err)
	}
	return s, nil
}
