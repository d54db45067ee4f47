package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dls-project/dls/core/store/sqlstore"
)

// dialect is PostgreSQL's sqlstore.Dialect: times are timestamptz,
// addresses inet, address lists inet[].
type dialect struct{}

func (dialect) Param(n int) string { return "$" + strconv.Itoa(n) }

func (dialect) JSONArrayAgg(expr, order string) string {
	return "COALESCE(json_agg(" + expr + " ORDER BY " + order + "), '[]')"
}

// JSONArray relies on inet's text form, which leaves out the /32 (/128) of
// a single address.
func (dialect) JSONArray(col string) string { return "to_json(" + col + ")" }

func (dialect) SkipLocked() string { return " FOR UPDATE SKIP LOCKED" }

func (dialect) Time(t time.Time) any { return millis(t) }

func (dialect) ScanTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return v.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("time column holds %T, not a timestamptz", v)
}

func (dialect) Addr(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a
}

func (dialect) ScanAddr(v any) (netip.Addr, error) {
	switch v := v.(type) {
	case nil:
		return netip.Addr{}, nil
	case netip.Prefix:
		return v.Addr(), nil
	}
	return netip.Addr{}, fmt.Errorf("address column holds %T, not an inet", v)
}

func (dialect) Addrs(as []netip.Addr) (any, error) {
	if as == nil {
		as = []netip.Addr{} // the column is NOT NULL
	}
	return as, nil
}

// tablesDB is the store as sqlstore.Tables uses it: every statement goes
// to the pool, transactions through inTx (retried).
type tablesDB struct{ s *Store }

func (db tablesDB) Read() sqlstore.Conn  { return conn{db.s, db.s.pool} }
func (db tablesDB) Write() sqlstore.Conn { return conn{db.s, db.s.pool} }

func (db tablesDB) InTx(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return db.s.inTx(ctx, func(tx pgx.Tx) error { return fn(conn{db.s, tx}) })
}

func (tablesDB) Conflict(err error) error { return conflict(err) }

// conn runs sqlstore's statements on q through the store's counted
// helpers.
type conn struct {
	s *Store
	q querier
}

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := c.s.exec(ctx, c.q, query, args...)
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

func (c conn) QueryRow(ctx context.Context, query string, args []any, dest ...any) (bool, error) {
	err := c.s.queryRow(ctx, c.q, query, args, dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (c conn) Query(ctx context.Context, query string, args []any, each func(sqlstore.Row) error) error {
	return c.s.query(ctx, c.q, query, args, func(rows pgx.Rows) error { return each(rows) })
}
