package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
)

// Purge implements store.Purger. Each batch is one statement (its own
// implicit transaction). FOR UPDATE SKIP LOCKED lets hosts sharing the
// database purge at the same time without waiting on, or deadlocking
// with, each other: each deletes rows the other has not locked, and what
// one skips goes at a later purge.
func (s *Store) Purge(ctx context.Context, p store.PurgeRequest) (store.PurgeResult, error) {
	var (
		res store.PurgeResult
		err error
	)
	if !p.SessionsBefore.IsZero() {
		res.Sessions, err = s.deleteBatches(ctx, `DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions WHERE state <> 'active' AND ended < $1
			LIMIT $2 FOR UPDATE SKIP LOCKED)`, p.SessionsBefore)
		if err != nil {
			return res, fmt.Errorf("purge sessions ended before %s: %w", p.SessionsBefore.UTC().Format(time.RFC3339), err)
		}
	}
	if !p.TokensBefore.IsZero() {
		res.Tokens, err = s.deleteBatches(ctx, `DELETE FROM refresh_tokens WHERE hash IN (
			SELECT hash FROM refresh_tokens WHERE expires < $1
			LIMIT $2 FOR UPDATE SKIP LOCKED)`, p.TokensBefore)
		if err != nil {
			return res, fmt.Errorf("purge refresh tokens expired before %s: %w", p.TokensBefore.UTC().Format(time.RFC3339), err)
		}
	}
	return res, nil
}

// deleteBatches runs query, a DELETE of at most store.PurgeBatch rows
// taking before and the batch size, until a batch deletes fewer, and
// returns how many rows it deleted in all.
func (s *Store) deleteBatches(ctx context.Context, query string, before time.Time) (int, error) {
	total := 0
	for {
		tag, err := s.exec(ctx, s.pool, query, millis(before), store.PurgeBatch)
		if err != nil {
			return total, err
		}
		n := int(tag.RowsAffected())
		total += n
		if n < store.PurgeBatch {
			return total, nil
		}
	}
}
