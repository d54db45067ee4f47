package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
)

// AppendAudit implements store.AuditLog.
func (t *Tables) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	return t.appendAudit(ctx, t.db.Write(), e)
}

// appendAudit is AppendAudit through q (a transaction's, or the writer).
func (t *Tables) appendAudit(ctx context.Context, q Conn, e store.AuditEntry) error {
	if strings.TrimSpace(e.Action) == "" {
		return fmt.Errorf("append audit: empty action: %w", store.ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	_, err := q.Exec(ctx,
		Bind(t.d, `INSERT INTO audit (time, actor, action, object, detail, source) VALUES (?, ?, ?, ?, ?, ?)`),
		t.d.Time(e.Time), e.Actor, e.Action, e.Object, e.Detail, e.Source)
	if err != nil {
		return fmt.Errorf("append audit %s %s: %w", e.Action, e.Object, err)
	}
	return nil
}

// ListAudit implements store.AuditLog.
func (t *Tables) ListAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	query := `SELECT id, time, actor, action, object, detail, source FROM audit ORDER BY id DESC`
	var args []any
	if limit > 0 { // otherwise no limit
		query += Bind(t.d, ` LIMIT ?`)
		args = append(args, limit)
	}
	var es []store.AuditEntry
	err := t.db.Read().Query(ctx, query, args, func(row Row) error {
		var (
			e  store.AuditEntry
			at any
		)
		if err := row.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.Object, &e.Detail, &e.Source); err != nil {
			return err
		}
		var err error
		if e.Time, err = t.d.ScanTime(at); err != nil {
			return fmt.Errorf("audit entry %d: stored time: %w", e.ID, err)
		}
		es = append(es, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return es, nil
}
