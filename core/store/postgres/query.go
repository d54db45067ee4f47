package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/dls-project/dls/core/store"
)

// Every statement goes through exec, queryRow, query, a batchReader or
// inTx, so that each one (BEGIN, COMMIT and ROLLBACK included) is counted
// and timed into the dls_database_* metrics.

// querier is what statements run on: the pool or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

func (s *Store) exec(ctx context.Context, q querier, sql string, args ...any) (pgconn.CommandTag, error) {
	start := time.Now()
	tag, err := q.Exec(ctx, sql, args...)
	s.m.ObserveQuery(start, err)
	return tag, err
}

// queryRow runs a one-row query and scans it into dest. pgx.ErrNoRows is
// returned as is but not counted as a database error.
func (s *Store) queryRow(ctx context.Context, q querier, sql string, args []any, dest ...any) error {
	start := time.Now()
	err := q.QueryRow(ctx, sql, args...).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		s.m.ObserveQuery(start, nil)
	} else {
		s.m.ObserveQuery(start, err)
	}
	return err
}

// query runs a query and calls each for every row; the time includes
// reading the rows.
func (s *Store) query(ctx context.Context, q querier, sql string, args []any, each func(pgx.Rows) error) error {
	start := time.Now()
	err := eachRow(ctx, q, sql, args, each)
	s.m.ObserveQuery(start, err)
	return err
}

func eachRow(ctx context.Context, q querier, sql string, args []any, each func(pgx.Rows) error) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// batchReader reads the results of a pgx.Batch, which goes to the server
// in one round trip and runs there statement after statement. Each
// statement is counted, and timed from the end of the one before it (the
// first from the send), so a batch's statements add up to its round trip.
type batchReader struct {
	s    *Store
	br   pgx.BatchResults
	last time.Time
}

func (s *Store) sendBatch(ctx context.Context, q querier, b *pgx.Batch) *batchReader {
	start := time.Now()
	return &batchReader{s: s, br: q.SendBatch(ctx, b), last: start}
}

func (r *batchReader) observe(err error) {
	r.s.m.ObserveQuery(r.last, err)
	r.last = time.Now()
}

func (r *batchReader) exec() (pgconn.CommandTag, error) {
	tag, err := r.br.Exec()
	r.observe(err)
	return tag, err
}

func (r *batchReader) queryRow(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		r.observe(nil)
	} else {
		r.observe(err)
	}
	return err
}

// close reads what is left of the batch; it is not a statement of its own.
func (r *batchReader) close() error {
	return r.br.Close()
}

// maxAttempts bounds how often inTx runs a transaction that failed with a
// deadlock or a serialization failure. CommitLeases locks addresses in
// order, so it should never need a second attempt; this is the backstop
// for the orders it cannot control (clients written by two hosts at once,
// a server whose default isolation level is stricter than ours).
const maxAttempts = 5

// rollbackTimeout bounds the ROLLBACK after a failed transaction. It runs
// even when the caller's context has ended, so that the connection goes
// back to the pool clean instead of being dropped.
const rollbackTimeout = 5 * time.Second

// inTx runs fn in a READ COMMITTED transaction, committing when fn returns
// nil, and runs it again (up to maxAttempts times in all) when PostgreSQL
// aborted it as a deadlock victim or a serialization failure; fn must
// therefore start from scratch each time it is called. READ COMMITTED is
// what the lease upsert relies on: a conflicting row is re-read at its
// latest version, where REPEATABLE READ would fail the transaction.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, fn)
		if err == nil || attempt == maxAttempts || !retryable(err) {
			return err
		}
		s.retries.Add(1)
		// A short random pause lets the transaction that won go first.
		pause := time.Duration(attempt) * time.Millisecond
		pause += rand.N(pause)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (after %d attempts: %w)", ctx.Err(), attempt, err)
		case <-time.After(pause):
		}
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	start := time.Now()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	s.m.ObserveQuery(start, err)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		start = time.Now()
		rerr := tx.Rollback(rctx)
		// ErrTxClosed: pgx already ended the transaction with its broken
		// connection; no statement ran, so there is nothing to count.
		if !errors.Is(rerr, pgx.ErrTxClosed) {
			s.m.ObserveQuery(start, rerr)
		}
		return err
	}
	start = time.Now()
	err = tx.Commit(ctx)
	s.m.ObserveQuery(start, err)
	if err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// SQLSTATE codes the store tells apart.
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func retryable(err error) bool {
	switch sqlState(err) {
	case codeSerializationFailure, codeDeadlockDetected:
		return true
	}
	return false
}

// conflict wraps a unique violation as store.ErrConflict, other errors as
// they are. The Go code checks the uniqueness rules first to name the
// holder in its error; this is the backstop should another host win a race
// between that check and the write.
func conflict(err error) error {
	if sqlState(err) == codeUniqueViolation {
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	}
	return err
}

// millis is t as the store keeps it: millisecond precision, UTC.
func millis(t time.Time) time.Time {
	return t.Truncate(time.Millisecond).UTC()
}
