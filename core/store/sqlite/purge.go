package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
)

// Purge implements store.Purger. Each batch is one statement (its own
// implicit transaction), so the write connection goes back to the DHCP
// lease commits between batches.
func (s *Store) Purge(ctx context.Context, p store.PurgeRequest) (store.PurgeResult, error) {
	var (
		res store.PurgeResult
		err error
	)
	if !p.SessionsBefore.IsZero() {
		res.Sessions, err = s.deleteBatches(ctx, `DELETE FROM sessions WHERE id IN (
			SELECT id FROM sessions WHERE state <> 'active' AND ended < ? LIMIT ?)`,
			p.SessionsBefore.UnixMilli())
		if err != nil {
			return res, fmt.Errorf("purge sessions ended before %s: %w", p.SessionsBefore.UTC().Format(time.RFC3339), err)
		}
	}
	if !p.TokensBefore.IsZero() {
		res.Tokens, err = s.deleteBatches(ctx, `DELETE FROM refresh_tokens WHERE hash IN (
			SELECT hash FROM refresh_tokens WHERE expires < ? LIMIT ?)`,
			p.TokensBefore.UnixMilli())
		if err != nil {
			return res, fmt.Errorf("purge refresh tokens expired before %s: %w", p.TokensBefore.UTC().Format(time.RFC3339), err)
		}
	}
	return res, nil
}

// deleteBatches runs query, a DELETE of at most store.PurgeBatch rows
// taking before and the batch size, until a batch deletes fewer, and
// returns how many rows it deleted in all.
func (s *Store) deleteBatches(ctx context.Context, query string, before int64) (int, error) {
	total := 0
	for {
		r, err := s.exec(ctx, s.write, query, before, store.PurgeBatch)
		if err != nil {
			return total, err
		}
		n, err := r.RowsAffected()
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < store.PurgeBatch {
			return total, nil
		}
	}
}
