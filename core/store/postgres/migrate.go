package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

// migrationFiles holds migrations/NNNN_name.sql. A package-level variable
// only because go:embed requires one; it is never written.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the advisory lock key every migration transaction takes
// first, so that hosts starting at once against one database apply each
// step once: the others wait, then see the step recorded. The lock is
// database-wide; deployments in other schemas of the same database only
// wait for each other's migrations, which is harmless.
const migrationLock int64 = 0x646c_735f_6d69_6772 // "dls_migr"

// migrate applies the migrations of fsys the database has not seen yet,
// each in its own transaction together with its schema_migrations row, so a
// failed step leaves the schema at the previous version (PostgreSQL's DDL
// is transactional). Every transaction takes migrationLock before it looks
// at the schema, so that hosts starting at once do not both apply a step
// or both create schema_migrations.
func (s *Store) migrate(ctx context.Context, fsys fs.FS) error {
	ms, err := sqlstore.LoadMigrations(fsys)
	if err != nil {
		return err
	}
	latest := len(ms)
	var current int
	err = s.migrationTx(ctx, func(tx pgx.Tx) error {
		if _, err := s.exec(ctx, tx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer     PRIMARY KEY,
			name       text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		current, err = s.schemaVersion(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	// Check before anything else, even when there is nothing to apply.
	if current > latest {
		return fmt.Errorf("%w: database is at version %d, this dls knows up to %d: run a newer dls or restore a backup",
			store.ErrSchemaTooNew, current, latest)
	}
	for _, m := range ms[current:] {
		err := s.migrationTx(ctx, func(tx pgx.Tx) error {
			v, err := s.schemaVersion(ctx, tx)
			if err != nil {
				return err
			}
			if v >= m.Version {
				return nil // another host applied it while we waited
			}
			// No arguments: pgx sends it with the simple protocol, which
			// runs a file of several statements.
			if _, err := s.exec(ctx, tx, m.SQL); err != nil {
				return err
			}
			_, err = s.exec(ctx, tx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// migrationTx runs fn in a transaction holding migrationLock.
func (s *Store) migrationTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := s.exec(ctx, tx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		return fn(tx)
	})
}

// schemaVersion is the highest migration applied, 0 for a new database.
func (s *Store) schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := s.queryRow(ctx, q, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`, nil, &v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
