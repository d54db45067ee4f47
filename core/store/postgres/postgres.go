// Package postgres is the state store for hosts that share state: PostgreSQL
// through pgx, a connection pool per host, every host running the same
// migrations against the same database.
//
//	database "postgres" { dsn = env("DLS_PG_DSN") }
//
// The DSN is anything pgx accepts (postgres://user:pass@host:5432/db or
// "host=... user=..."), including pgxpool's pool_max_conns and a
// search_path to keep DLS in its own schema.
//
// Lease safety does not depend on the hosts talking to each other: the
// address is the leases table's primary key and a lease is written by one
// conditional upsert that PostgreSQL decides on the latest version of the
// row while holding its lock (see sqlstore.UpsertLease), so two hosts can
// never ACK one address to two MACs.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

// Compile-time check that Store is a store.Store.
var _ store.Store = (*Store)(nil)

// Store is the PostgreSQL state store. Build it with Open.
type Store struct {
	// Tables holds the statements shared with the SQLite store.
	*sqlstore.Tables

	pool *pgxpool.Pool
	m    *store.Metrics
	// where names the database in errors, without the password.
	where string

	// retries counts transactions run again after a deadlock or
	// serialization failure (tests report it).
	retries atomic.Int64

	untrack   func()
	closeOnce sync.Once
}

// Open connects to the database at dsn, applies pending migrations and
// returns the store. m may be nil.
func Open(ctx context.Context, dsn string, m *store.Metrics) (*Store, error) {
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open state store: migrations: %w", err)
	}
	return open(ctx, dsn, m, migrations)
}

// open is Open with the migrations as a parameter, so tests can migrate
// with their own sets.
func open(ctx context.Context, dsn string, m *store.Metrics, migrations fs.FS) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx redacts passwords from parse errors only on a best-effort
		// basis, and this error ends up in logs: say less.
		return nil, errors.New("open state store: dsn is not a valid PostgreSQL connection string (details withheld: it may hold a password)")
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "dls"
	}
	where := fmt.Sprintf("postgres %s@%s:%d/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host,
		cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", where, err)
	}
	s := &Store{pool: pool, m: m, where: where}
	s.Tables = sqlstore.New(tablesDB{s}, dialect{})
	s.untrack = m.TrackConnections(func() int { return int(pool.Stat().TotalConns()) })
	// The pool connects lazily: try now, so that a wrong DSN or a database
	// that is down says so plainly.
	var one int
	if err := s.queryRow(ctx, pool, "SELECT 1", nil, &one); err != nil {
		s.Close()
		return nil, fmt.Errorf("open state store %s: connect: %w", where, err)
	}
	if err := s.migrate(ctx, migrations); err != nil {
		s.Close()
		return nil, fmt.Errorf("open state store %s: %w", where, err)
	}
	return s, nil
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.queryRow(ctx, s.pool, "SELECT 1", nil, &one); err != nil {
		return fmt.Errorf("ping state store %s: %w", s.where, err)
	}
	return nil
}

// Close implements store.Store. It waits for queries in flight to finish.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.untrack()
		s.pool.Close()
	})
	return nil
}
