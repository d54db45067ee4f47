// Package sqlstore holds what the SQLite and PostgreSQL state stores share:
// the SQL of every statement on the clients, images, leases, sessions,
// tokens and audit tables, the mapping between their rows and the store's
// types, and the checks made before a write. Tables implements those
// parts of store.Store once, on a DB and a Dialect that each driver
// supplies.
//
// A driver keeps what is its own: connections, migrations, transactions
// (SQLite's single writer, PostgreSQL's retried READ COMMITTED), batching
// (CommitLeases), the counting and timing of statements, and the mapping
// of its errors.
package sqlstore

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// Dialect is how the two databases differ, as far as the shared
// statements are concerned: parameter markers, JSON arrays, locking, and
// the column types of times and addresses (SQLite keeps unix milliseconds,
// text and JSON text; PostgreSQL timestamptz, inet and inet[]).
type Dialect interface {
	// Param is the n-th (from 1) parameter marker of a statement.
	Param(n int) string
	// JSONArrayAgg is an aggregate of expr over a subquery's rows, in
	// the order of order, as a JSON array: [] when there are no rows.
	JSONArrayAgg(expr, order string) string
	// JSONArray is the array column col as a JSON array of strings.
	JSONArray(col string) string
	// SkipLocked ends the SELECT that picks the rows a purge batch
	// deletes, so that hosts purging one database at once skip each
	// other's rows; "" where there is one writer anyway.
	SkipLocked() string

	// Time is t as a statement argument, with millisecond precision.
	Time(t time.Time) any
	// ScanTime reads back a time column scanned into an any: the zero
	// time for NULL, UTC otherwise.
	ScanTime(v any) (time.Time, error)
	// Addr is a as a statement argument: NULL for the zero Addr.
	Addr(a netip.Addr) any
	// ScanAddr reads back an address column scanned into an any: the
	// zero Addr for NULL.
	ScanAddr(v any) (netip.Addr, error)
	// Addrs is as as an argument for an address array column (never
	// NULL).
	Addrs(as []netip.Addr) (any, error)
}

// Row is a row being read: *sql.Rows or pgx.Rows.
type Row interface {
	Scan(dest ...any) error
}

// Conn runs statements on a driver's pool or in one of its transactions.
// Each call is one statement, which the driver counts and times.
type Conn interface {
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	// QueryRow scans the first row of a query into dest; found is false
	// (and err nil) when there is none.
	QueryRow(ctx context.Context, query string, args []any, dest ...any) (found bool, err error)
	// Query calls each for every row of a query.
	Query(ctx context.Context, query string, args []any, each func(Row) error) error
}

// DB is a driver's database as Tables uses it.
type DB interface {
	// Read runs statements that only read (SQLite: its read-only pool).
	Read() Conn
	// Write runs a write outside a transaction (SQLite: its single
	// writer).
	Write() Conn
	// InTx runs fn in a write transaction, committing when fn returns
	// nil. fn may be called again after a failed attempt (PostgreSQL
	// retries deadlock victims), so it starts from scratch each time.
	InTx(ctx context.Context, fn func(Conn) error) error
	// Conflict returns err wrapped as store.ErrConflict when the database
	// refused a write for a unique constraint, other errors as they are.
	// The statements check uniqueness first to name the holder; this is
	// the backstop should another writer win the race.
	Conflict(err error) error
}

// Tables implements the table methods of store.Store (all but
// CommitLeases, which batches its own way in each driver) on a DB.
type Tables struct {
	db DB
	d  Dialect
	q  statements
}

// New returns the tables of db, whose statements are written in d.
func New(db DB, d Dialect) *Tables {
	return &Tables{db: db, d: d, q: newStatements(d)}
}

// Bind returns query with its ? parameters, in order, replaced by d's
// markers. The statements are written with ? (none has a ? elsewhere).
func Bind(d Dialect, query string) string {
	if d.Param(1) == "?" {
		return query
	}
	var b strings.Builder
	n := 0
	for {
		i := strings.IndexByte(query, '?')
		if i < 0 {
			b.WriteString(query)
			return b.String()
		}
		n++
		b.WriteString(query[:i])
		b.WriteString(d.Param(n))
		query = query[i+1:]
	}
}

// statements are the fixed statements, bound once to the dialect so that
// the hot paths (a DHCP lookup, a lease commit) build no SQL.
type statements struct {
	clientByName, clientByMAC, clientByInitiator, listClients string
}

func newStatements(d Dialect) statements {
	sc := selectClient(d)
	return statements{
		clientByName:      Bind(d, sc+` WHERE c.name = ?`),
		clientByMAC:       Bind(d, sc+` WHERE c.mac = ?`),
		clientByInitiator: Bind(d, sc+` WHERE c.id = (SELECT client_id FROM client_initiators WHERE iqn = ?)`),
		listClients:       sc + ` ORDER BY c.name`,
	}
}
