package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

// CommitLeases implements store.Leases.
func (s *Store) CommitLeases(ctx context.Context, leases []store.Lease) ([]store.LeaseResult, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	batch, err := sqlstore.NormalizeLeases(leases)
	if err != nil {
		return nil, fmt.Errorf("commit leases: %w", err)
	}

	results := make([]store.LeaseResult, len(batch))
	now := time.Now()
	err = s.inTx(ctx, s.write, func(tx *sql.Tx) error {
		upsert, err := s.prepare(ctx, tx, sqlstore.UpsertLease)
		if err != nil {
			return fmt.Errorf("prepare lease upsert: %w", err)
		}
		defer upsert.Close()
		for i, l := range batch {
			address := l.Address.String()
			res, err := s.execStmt(ctx, upsert, sqlstore.LeaseArgs(dialect{}, l, now)...)
			if err != nil {
				return fmt.Errorf("lease %s for %s: %w", address, l.MAC, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("lease %s for %s: %w", address, l.MAC, err)
			}
			if n == 1 {
				results[i] = store.LeaseResult{OK: true}
				continue
			}
			// Refused: same transaction, so the holder read is the one
			// that refused us.
			var holder string
			if err := s.queryRow(ctx, tx, sqlstore.LeaseHolder, []any{address}, &holder); err != nil {
				return fmt.Errorf("lease %s: read holder: %w", address, err)
			}
			results[i] = store.LeaseResult{Holder: holder}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commit leases: %w", err)
	}
	return results, nil
}
