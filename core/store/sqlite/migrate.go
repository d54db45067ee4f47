package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
)

// migrationFiles holds migrations/NNNN_name.sql. A package-level variable
// only because go:embed requires one; it is never written.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema step.
type migration struct {
	version int
	name    string // file name, recorded in schema_migrations for humans
	sql     string
}

// loadMigrations reads every *.sql file of fsys, ordered by version. Versions
// must run 1, 2, 3, ... without gaps or duplicates: a gap usually means a
// file lost in a merge, and guessing past it would leave a schema no
// released binary ever had.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []migration
	for _, name := range names {
		prefix, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(prefix)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: version, name: name, sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (missing or duplicate file)", m.name, m.version, i+1)
		}
	}
	return ms, nil
}

// migrate applies the migrations of fsys the database has not seen yet,
// each in its own transaction together with its schema_migrations row, so a
// failed step leaves the schema at the previous version. BEGIN IMMEDIATE
// makes two processes opening one file at once apply each step once: the
// second waits for the lock, then sees the step recorded.
func (s *Store) migrate(ctx context.Context, fsys fs.FS) error {
	ms, err := loadMigrations(fsys)
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
			if v >= m.version {
				return nil // another process applied it while we waited
			}
			if _, err := s.exec(ctx, tx, m.sql); err != nil {
				return err
			}
			_, err = s.exec(ctx, tx,
				`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("apply migration %s: %w", m.name, err)
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
