package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/dls-project/dls/core/store"
)

// UpsertLease writes a lease unless another MAC holds the address; its
// arguments are LeaseArgs. The decision is one statement, made by the
// database on the row the primary key locks, not by Go code reading then
// writing: the DO UPDATE only runs for the same MAC or a holder that
// released or expired, so however many writers race (goroutines,
// processes, hosts on a shared database) an address never ends up leased
// to two MACs. updated_at doubles as "now" for the expiry test. When the
// WHERE is false nothing changes and the statement reports 0 rows.
//
// Why this holds between hosts on PostgreSQL at READ COMMITTED: when the
// address's row is being written by another transaction, the upsert waits
// for it to end, then locks the row and evaluates the WHERE on its latest
// committed version, not on the statement's snapshot (and an insert racing
// an insert of the same address waits the same way, then takes the update
// path). So every writer of an address decides against the lease the
// writer before it left. A refused upsert leaves the row locked until the
// transaction ends, so the LeaseHolder read that follows sees the lease
// that refused it.
const UpsertLease = `INSERT INTO leases (address, pool, mac, expires, state, hostname, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (address) DO UPDATE SET
	pool = excluded.pool, mac = excluded.mac, expires = excluded.expires,
	state = excluded.state, hostname = excluded.hostname, updated_at = excluded.updated_at
WHERE leases.mac = excluded.mac OR leases.state = 'released' OR leases.expires <= excluded.updated_at`

// LeaseHolder reads the address's MAC after UpsertLease, in the same
// transaction: ours when it was committed, the holder's when it was
// refused. Its argument is the address, as Dialect.Addr has it.
const LeaseHolder = `SELECT mac FROM leases WHERE address = ?`

// LeaseArgs are UpsertLease's arguments for l, written at now.
func LeaseArgs(d Dialect, l store.Lease, now time.Time) []any {
	return []any{d.Addr(l.Address), l.Pool, l.MAC, d.Time(l.Expires), string(l.State), l.Hostname, d.Time(now)}
}

// NormalizeLeases validates a CommitLeases batch as a whole, before
// anything is written: an invalid lease is a bug in the caller and fails
// the batch.
func NormalizeLeases(leases []store.Lease) ([]store.Lease, error) {
	batch := make([]store.Lease, len(leases))
	for i, l := range leases {
		n, err := l.Normalize()
		if err != nil {
			return nil, fmt.Errorf("lease %d: %w", i, err)
		}
		batch[i] = n
	}
	return batch, nil
}

// LoadLeases implements store.Leases.
func (t *Tables) LoadLeases(ctx context.Context, pool string) ([]store.Lease, error) {
	query := `SELECT pool, address, mac, expires, state, hostname FROM leases`
	var args []any
	if pool != "" {
		query += Bind(t.d, ` WHERE pool = ?`)
		args = append(args, pool)
	}
	var leases []store.Lease
	err := t.db.Read().Query(ctx, query, args, func(row Row) error {
		var (
			l                store.Lease
			address, expires any
			state            string
		)
		if err := row.Scan(&l.Pool, &address, &l.MAC, &expires, &state, &l.Hostname); err != nil {
			return err
		}
		a, err := t.d.ScanAddr(address)
		if err != nil {
			return fmt.Errorf("stored address %v: %w", address, err)
		}
		l.Address = a
		if l.Expires, err = t.d.ScanTime(expires); err != nil {
			return fmt.Errorf("lease %s: stored expiry: %w", a, err)
		}
		l.State = store.LeaseState(state)
		leases = append(leases, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load leases of pool %q: %w", pool, err)
	}
	// Sorted here, not by the database: SQLite's text order puts 10.0.0.10
	// before 10.0.0.9.
	slices.SortFunc(leases, func(a, b store.Lease) int { return a.Address.Compare(b.Address) })
	return leases, nil
}
