package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

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
	_, err := s.exec(ctx, s.pool,
		`INSERT INTO audit (time, actor, action, object, detail, source) VALUES ($1, $2, $3, $4, $5, $6)`,
		millis(e.Time), e.Actor, e.Action, e.Object, e.Detail, e.Source)
	if err != nil {
		return fmt.Errorf("append audit %s %s: %w", e.Action, e.Object, err)
	}
	return nil
}

// ListAudit implements store.AuditLog.
func (s *Store) ListAudit(ctx context.Context, limit int) ([]store.AuditEntry, error) {
	var lim any // NULL: LIMIT NULL is no limit
	if limit > 0 {
		lim = limit
	}
	var es []store.AuditEntry
	err := s.query(ctx, s.pool,
		`SELECT id, time, actor, action, object, detail, source FROM audit ORDER BY id DESC LIMIT $1`,
		[]any{lim}, func(rows pgx.Rows) error {
			var e store.AuditEntry
			if err := rows.Scan(&e.ID, &e.Time, &e.Actor, &e.Action, &e.Object, &e.Detail, &e.Source); err != nil {
				return err
			}
			e.Time = e.Time.UTC()
			es = append(es, e)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return es, nil
}
