package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
)

// AppendAudit implements store.AuditLog.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if strings.TrimSpace(e.Action) == "" {
		return fmt.Errorf("append audit: empty action: %w", store.ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	_, err := s.exec(ctx, s.write,
		`INSERT INTO audit (time, actor, action, object, detail, source) VALUES (?, ?, ?, ?, ?, ?)`,
		e.Time.UnixMilli(), e.Actor, e.Action, e.Object, e.Detail, e.Source)
	if err != nil {
		return fmt.Errorf("append audit %s %s: %w", e.Action, e.Object, err)
	}
	return nil
}

// ListAudit implements store.AuditLog.
func (s *Store) ListAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	if limit <= 0 {
		limit = -1 // SQLite: no limit
	}
	var es []store.AuditEntry
	err := s.query(ctx, s.read,
		`SELECT id, time, actor, action, object, detail, source FROM audit ORDER BY id DESC LIMIT ?`,
		[]any{limit}, func(rows *sql.Rows) error {
			var (
				e  store.AuditEntry
				ms int64
			)
			if err := rows.Scan(&e.ID, &ms, &e.Actor, &e.Action, &e.Object, &e.Detail, &e.Source); err != nil {
				return err
			}
			e.Time = time.UnixMilli(ms).UTC()
			es = append(es, e)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return es, nil
}
