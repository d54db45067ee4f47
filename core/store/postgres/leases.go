package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

// batchLeases bounds the leases sent in one pgx.Batch (two statements
// each), so that a huge CommitLeases does not queue an unbounded pipeline.
const batchLeases = 256

// CommitLeases implements store.Leases.
//
// The batch is written in address order (leases of one address keeping
// their order in the batch), so that two batches touching the same
// addresses lock them in the same order and never deadlock; a lease's
// answer depends only on the leases before it for the same address, so the
// answers are those of the caller's order, and go back in that order.
func (s *Store) CommitLeases(ctx context.Context, leases []store.Lease) ([]store.LeaseResult, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	batch, err := sqlstore.NormalizeLeases(leases)
	if err != nil {
		return nil, fmt.Errorf("commit leases: %w", err)
	}
	order := make([]int, len(batch))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return batch[a].Address.Compare(batch[b].Address) })

	results := make([]store.LeaseResult, len(batch))
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// Taken per attempt: a retried transaction decides at its own time.
		now := millis(time.Now())
		for chunk := range slices.Chunk(order, batchLeases) {
			if err := s.commitChunk(ctx, tx, batch, chunk, now, results); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commit leases: %w", err)
	}
	return results, nil
}

// commitChunk writes the leases batch[i] for i in chunk in one round trip:
// for each, the upsert and then the holder read.
func (s *Store) commitChunk(ctx context.Context, tx pgx.Tx, batch []store.Lease, chunk []int, now time.Time, results []store.LeaseResult) error {
	upsert := sqlstore.Bind(dialect{}, sqlstore.UpsertLease)
	holder := sqlstore.Bind(dialect{}, sqlstore.LeaseHolder)
	b := &pgx.Batch{}
	for _, i := range chunk {
		l := batch[i]
		b.Queue(upsert, sqlstore.LeaseArgs(dialect{}, l, now)...)
		b.Queue(holder, l.Address)
	}
	r := s.sendBatch(ctx, tx, b)
	for _, i := range chunk {
		l := batch[i]
		tag, err := r.exec()
		if err != nil {
			r.close()
			return fmt.Errorf("lease %s for %s: %w", l.Address, l.MAC, err)
		}
		var holder string
		if err := r.queryRow(&holder); err != nil {
			r.close()
			return fmt.Errorf("lease %s: read holder: %w", l.Address, err)
		}
		if tag.RowsAffected() == 1 {
			results[i] = store.LeaseResult{OK: true}
		} else {
			results[i] = store.LeaseResult{Holder: holder}
		}
	}
	return r.close()
}
