package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dls-project/dls/core/store"
)

// upsertLease writes a lease unless another MAC holds the address. The
// decision is one statement, made by the database on the row the primary
// key locks, not by Go code reading then writing: the DO UPDATE only runs
// for the same MAC or a holder that released or expired, so however many
// writers race (goroutines, processes, hosts on a shared database) an
// address never ends up leased to two MACs. updated_at doubles as "now"
// for the expiry test. When the WHERE is false nothing changes and the
// statement reports 0 rows.
const upsertLease = `INSERT INTO leases (address, pool, mac, expires, state, hostname, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (address) DO UPDATE SET
	pool = excluded.pool, mac = excluded.mac, expires = excluded.expires,
	state = excluded.state, hostname = excluded.hostname, updated_at = excluded.updated_at
WHERE leases.mac = excluded.mac OR leases.state = 'released' OR leases.expires <= excluded.updated_at`

// LoadLeases implements store.Leases.
func (s *Store) LoadLeases(ctx context.Context, pool string) ([]store.Lease, error) {
	query := `SELECT pool, address, mac, expires, state, hostname FROM leases`
	var args []any
	if pool != "" {
		query += ` WHERE pool = ?`
		args = append(args, pool)
	}
	var leases []store.Lease
	err := s.query(ctx, s.read, query, args, func(rows *sql.Rows) error {
		var (
			l       store.Lease
			address string
			expires int64
		)
		if err := rows.Scan(&l.Pool, &address, &l.MAC, &expires, &l.State, &l.Hostname); err != nil {
			return err
		}
		a, err := netip.ParseAddr(address)
		if err != nil {
			return fmt.Errorf("stored address %q: %w", address, err)
		}
		l.Address = a
		l.Expires = time.UnixMilli(expires).UTC()
		leases = append(leases, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load leases of pool %q: %w", pool, err)
	}
	// Text order puts 10.0.0.10 before 10.0.0.9; sort as addresses.
	slices.SortFunc(leases, func(a, b store.Lease) int { return a.Address.Compare(b.Address) })
	return leases, nil
}

// CommitLeases implements store.Leases.
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
		batch[i] = n
	}

	results := make([]store.LeaseResult, len(batch))
	now := time.Now().UnixMilli()
	err := s.inTx(ctx, s.write, func(tx *sql.Tx) error {
		upsert, err := s.prepare(ctx, tx, upsertLease)
		if err != nil {
			return fmt.Errorf("prepare lease upsert: %w", err)
		}
		defer upsert.Close()
		for i, l := range batch {
			address := l.Address.String()
			res, err := s.execStmt(ctx, upsert,
				address, l.Pool, l.MAC, l.Expires.UnixMilli(), string(l.State), l.Hostname, now)
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
			if err := s.queryRow(ctx, tx, `SELECT mac FROM leases WHERE address = ?`, []any{address}, &holder); err != nil {
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
