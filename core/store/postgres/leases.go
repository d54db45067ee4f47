package postgres

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dls-project/dls/core/store"
)

// upsertLease writes a lease unless another MAC holds the address. The
// decision is one statement, made by PostgreSQL on the row the primary key
// locks, not by Go code reading then writing: the DO UPDATE only runs for
// the same MAC or a holder that released or expired.
//
// Why this holds between hosts at READ COMMITTED: when the address's row
// is being written by another transaction, the upsert waits for it to end,
// then locks the row and evaluates the WHERE on its latest committed
// version, not on the statement's snapshot (and an insert racing an insert
// of the same address waits the same way, then takes the update path). So
// every writer of an address decides against the lease the writer before
// it left. When the WHERE is false nothing changes, the statement reports
// 0 rows, and the row stays locked until our transaction ends, so the
// holder read that follows sees the lease that refused us. updated_at
// doubles as "now" for the expiry test.
const upsertLease = `INSERT INTO leases (address, pool, mac, expires, state, hostname, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (address) DO UPDATE SET
	pool = excluded.pool, mac = excluded.mac, expires = excluded.expires,
	state = excluded.state, hostname = excluded.hostname, updated_at = excluded.updated_at
WHERE leases.mac = excluded.mac OR leases.state = 'released' OR leases.expires <= excluded.updated_at`

// leaseHolder reads the address's MAC after upsertLease: ours when it was
// committed, the holder's when it was refused. A statement of its own so
// that, at READ COMMITTED, it sees the row version the upsert decided on.
const leaseHolder = `SELECT mac FROM leases WHERE address = $1`

// batchLeases bounds the leases sent in one pgx.Batch (two statements
// each), so that a huge CommitLeases does not queue an unbounded pipeline.
const batchLeases = 256

// LoadLeases implements store.Leases.
func (s *Store) LoadLeases(ctx context.Context, pool string) ([]store.Lease, error) {
	query := `SELECT pool, address, mac, expires, state, hostname FROM leases`
	var args []any
	if pool != "" {
		query += ` WHERE pool = $1`
		args = append(args, pool)
	}
	query += ` ORDER BY address` // inet order: 10.0.0.9 before 10.0.0.10
	var leases []store.Lease
	err := s.query(ctx, s.pool, query, args, func(rows pgx.Rows) error {
		var (
			l       store.Lease
			address netip.Addr
			state   string
		)
		if err := rows.Scan(&l.Pool, &address, &l.MAC, &l.Expires, &state, &l.Hostname); err != nil {
			return err
		}
		l.Address = address
		l.Expires = l.Expires.UTC()
		l.State = store.LeaseState(state)
		leases = append(leases, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load leases of pool %q: %w", pool, err)
	}
	return leases, nil
}

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
	// Validate the whole batch first: an invalid lease is a bug in the
	// caller and fails the batch before anything is written.
	batch := make([]store.Lease, len(leases))
	for i, l := range leases {
		n, err := l.Normalize()
		if err != nil {
			return nil, fmt.Errorf("commit leases: lease %d: %w", i, err)
		}
		n.Expires = millis(n.Expires)
		batch[i] = n
	}
	order := make([]int, len(batch))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return batch[a].Address.Compare(batch[b].Address) })

	results := make([]store.LeaseResult, len(batch))
	err := s.inTx(ctx, func(tx pgx.Tx) error {
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
	b := &pgx.Batch{}
	for _, i := range chunk {
		l := batch[i]
		b.Queue(upsertLease, l.Address, l.Pool, l.MAC, l.Expires, string(l.State), l.Hostname, now)
		b.Queue(leaseHolder, l.Address)
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
