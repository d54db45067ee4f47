package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

// migrationFiles holds migrations/NNNN_name.sql. A package-level variable
// only because go:embed requires one; it is never written.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrate applies the migrations of fsys the database has not seen yet,
// each in its own transaction together with its schema_migrations row, so a
// failed step leaves the schema at the previous version. BEGIN IMMEDIATE
// makes two processes opening one file at once apply each step once: the
// second waits for the lock, then sees the step recorded.
func (s *Store) migrate(ctx context.Context, fsys fs.FS) error {
	ms, err := sqlstore.LoadMigrations(fsys)
	if err != nil {
		return err
	}
	if _, err := s.exec(ctx, s.write, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	latest := len(ms)
	// Check before anything else, even when there is nothing to apply.
	current, err := s.schemaVersion(ctx, s.write)
	if err != nil {
		return err
	}
	if current > latest {
		return fmt.Errorf("%w: database is at version %d, this dls knows up to %d: run a newer dls or restore a backup",
			store.ErrSchemaTooNew, current, latest)
	}
	for _, m := range ms[current:] {
		err := s.inTx(ctx, s.write, func(tx *sql.Tx) error {
			v, err := s.schemaVersion(ctx, tx)
			if err != nil {
				return err
			}
			if v >= m.Version {
				return nil // another process applied it while we waited
			}
			if _, err := s.exec(ctx, tx, m.SQL); err != nil {
				return err
			}
			_, err = s.exec(ctx, tx,
				`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// schemaVersion is the highest migration applied, 0 for a new database.
func (s *Store) schemaVersion(ctx context.Context, q querier) (int, error) {
	var v int
	if err := s.queryRow(ctx, q, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`, nil, &v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}
