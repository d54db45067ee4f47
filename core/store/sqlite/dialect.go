package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/dls-project/dls/core/store/sqlstore"
)

// dialect is SQLite's sqlstore.Dialect: times are unix milliseconds,
// addresses text, address lists JSON text.
type dialect struct{}

func (dialect) Param(int) string { return "?" }

func (dialect) JSONArrayAgg(expr, order string) string {
	return "json_group_array(" + expr + " ORDER BY " + order + ")"
}

func (dialect) JSONArray(col string) string { return col }

// SkipLocked is empty: one writer at a time, nothing to skip.
func (dialect) SkipLocked() string { return "" }

func (dialect) Time(t time.Time) any { return t.UnixMilli() }

func (dialect) ScanTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case nil:
		return time.Time{}, nil
	case int64:
		return time.UnixMilli(v).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("time column holds %T, not unix milliseconds", v)
}

func (dialect) Addr(a netip.Addr) any {
	if !a.IsValid() {
		return nil
	}
	return a.String()
}

func (dialect) ScanAddr(v any) (netip.Addr, error) {
	switch v := v.(type) {
	case nil:
		return netip.Addr{}, nil
	case string:
		return netip.ParseAddr(v)
	}
	return netip.Addr{}, fmt.Errorf("address column holds %T, not text", v)
}

func (dialect) Addrs(as []netip.Addr) (any, error) {
	out := make([]string, len(as)) // never nil, so it marshals as []
	for i, a := range as {
		out[i] = a.String()
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

// tablesDB is the store as sqlstore.Tables uses it.
type tablesDB struct{ s *Store }

func (db tablesDB) Read() sqlstore.Conn  { return conn{db.s, db.s.read} }
func (db tablesDB) Write() sqlstore.Conn { return conn{db.s, db.s.write} }

func (db tablesDB) InTx(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return db.s.inTx(ctx, db.s.write, func(tx *sql.Tx) error { return fn(conn{db.s, tx}) })
}

func (tablesDB) Conflict(err error) error { return conflict(err) }

// conn runs sqlstore's statements on q through the store's counted
// helpers.
type conn struct {
	s *Store
	q querier
}

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.s.exec(ctx, c.q, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) QueryRow(ctx context.Context, query string, args []any, dest ...any) (bool, error) {
	err := c.s.queryRow(ctx, c.q, query, args, dest...)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (c conn) Query(ctx context.Context, query string, args []any, each func(sqlstore.Row) error) error {
	return c.s.query(ctx, c.q, query, args, func(rows *sql.Rows) error { return each(rows) })
}
