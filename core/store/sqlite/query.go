package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/dls-project/dls/core/store"
)

// Every statement goes through exec, execStmt, queryRow, query, prepare or
// inTx, so that each one (BEGIN and COMMIT included: COMMIT is where the
// fsync happens) is counted and timed into the dls_database_* metrics.

// querier is what statements run on: the pools or a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// prepare prepares query in tx, for a statement a batch runs many times:
// parsing the lease upsert once per batch instead of once per lease halves
// the cost of a large batch.
func (s *Store) prepare(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	start := time.Now()
	st, err := tx.PrepareContext(ctx, query)
	s.m.ObserveQuery(start, err)
	return st, err
}

// execStmt is exec for a prepared statement.
func (s *Store) execStmt(ctx context.Context, st *sql.Stmt, args ...any) (sql.Result, error) {
	start := time.Now()
	res, err := st.ExecContext(ctx, args...)
	s.m.ObserveQuery(start, err)
	return res, err
}

func (s *Store) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	start := time.Now()
	res, err := q.ExecContext(ctx, query, args...)
	s.m.ObserveQuery(start, err)
	return res, err
}

// queryRow runs a one-row query and scans it into dest. sql.ErrNoRows is
// returned as is but not counted as a database error.
func (s *Store) queryRow(ctx context.Context, q querier, query string, args []any, dest ...any) error {
	start := time.Now()
	err := q.QueryRowContext(ctx, query, args...).Scan(dest...)
	if errors.Is(err, sql.ErrNoRows) {
		s.m.ObserveQuery(start, nil)
	} else {
		s.m.ObserveQuery(start, err)
	}
	return err
}

// query runs a query and calls each for every row; the time includes
// reading the rows, which is where SQLite does most of the work.
func (s *Store) query(ctx context.Context, q querier, query string, args []any, each func(*sql.Rows) error) error {
	start := time.Now()
	err := eachRow(ctx, q, query, args, each)
	s.m.ObserveQuery(start, err)
	return err
}

func eachRow(ctx context.Context, q querier, query string, args []any, each func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

// inTx runs fn in a transaction on db, committing when fn returns nil. On
// the write pool BEGIN is BEGIN IMMEDIATE (see Open).
func (s *Store) inTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	start := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	s.m.ObserveQuery(start, err)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		start = time.Now()
		rerr := tx.Rollback()
		// ErrTxDone: database/sql already rolled back because ctx ended;
		// no statement ran, so there is nothing to count.
		if !errors.Is(rerr, sql.ErrTxDone) {
			s.m.ObserveQuery(start, rerr)
		}
		return err
	}
	start = time.Now()
	err = tx.Commit()
	s.m.ObserveQuery(start, err)
	if err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// isConstraint reports whether err is SQLite refusing a write because of a
// UNIQUE or PRIMARY KEY constraint. The Go code checks those rules first to
// name the holder in its error; this is the backstop should another writer
// (another process on the same file) win a race.
func isConstraint(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	}
	return false
}

// conflict wraps a constraint error as store.ErrConflict, others as is.
func conflict(err error) error {
	if isConstraint(err) {
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	}
	return err
}
