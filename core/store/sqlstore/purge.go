package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
)

// Purge implements store.Purger. Each batch is one statement (its own
// implicit transaction), so SQLite's write connection goes back to the
// DHCP lease commits between batches. On PostgreSQL, FOR UPDATE SKIP
// LOCKED (Dialect.SkipLocked) lets hosts sharing the database purge at the
// same time without waiting on, or deadlocking with, each other: each
// deletes rows the other has not locked, and what one skips goes at a
// later purge.
func (t *Tables) Purge(ctx context.Context, p store.PurgeRequest) (store.PurgeResult, error) {
	var (
		res store.PurgeResult
		err error
	)
	if !p.SessionsBefore.IsZero() {
		res.Sessions, err = t.deleteBatches(ctx, `DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions WHERE state <> 'active' AND ended < ?
			LIMIT ?`+t.d.SkipLocked()+`)`, p.SessionsBefore)
		if err != nil {
			return res, fmt.Errorf("purge sessions ended before %s: %w", p.SessionsBefore.UTC().Format(time.RFC3339), err)
		}
	}
	if !p.TokensBefore.IsZero() {
		res.Tokens, err = t.deleteBatches(ctx, `DELETE FROM refresh_tokens WHERE hash IN (
			SELECT hash FROM refresh_tokens WHERE expires < ?
			LIMIT ?`+t.d.SkipLocked()+`)`, p.TokensBefore)
		if err != nil {
			return res, fmt.Errorf("purge refresh tokens expired before %s: %w", p.TokensBefore.UTC().Format(time.RFC3339), err)
		}
	}
	return res, nil
}

// deleteBatches runs query, a DELETE of at most store.PurgeBatch rows
// taking before and the batch size, until a batch deletes fewer, and
// returns how many rows it deleted in all.
func (t *Tables) deleteBatches(ctx context.Context, query string, before time.Time) (int, error) {
	query = Bind(t.d, query)
	total := 0
	for {
		n, err := t.db.Write().Exec(ctx, query, t.d.Time(before), store.PurgeBatch)
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < store.PurgeBatch {
			return total, nil
		}
	}
}
