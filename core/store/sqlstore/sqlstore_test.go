package sqlstore

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// numbered is a Dialect with PostgreSQL's parameter markers; Bind uses
// nothing else of it.
type numbered struct{ Dialect }

func (numbered) Param(n int) string { return "$" + strconv.Itoa(n) }

// question marks its parameters with ?, as SQLite does.
type question struct{ Dialect }

func (question) Param(int) string { return "?" }

func TestBind(t *testing.T) {
	for _, c := range []struct {
		d        Dialect
		in, want string
	}{
		{numbered{}, `SELECT 1`, `SELECT 1`},
		{numbered{}, `a = ? AND b <> ?`, `a = $1 AND b <> $2`},
		{numbered{}, `VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`},
		{numbered{}, `?`, `$1`},
		{question{}, `a = ? AND b <> ?`, `a = ? AND b <> ?`},
	} {
		if got := Bind(c.d, c.in); got != c.want {
			t.Errorf("Bind(%T, %q) = %q, want %q", c.d, c.in, got, c.want)
		}
	}
}

// The fixed statements are bound once, at New: each must have the markers
// of the dialect and no ? left.
func TestStatementsBound(t *testing.T) {
	q := newStatements(fakePG{})
	for name, s := range map[string]string{
		"clientByName": q.clientByName, "clientByMAC": q.clientByMAC, "clientByInitiator": q.clientByInitiator,
	} {
		if want := "$1"; !strings.Contains(s, want) || strings.Contains(s, "?") {
			t.Errorf("%s = %q: want %s and no ?", name, s, want)
		}
	}
}

// fakePG is enough of a Dialect to build the statements.
type fakePG struct{ numbered }

func (fakePG) JSONArrayAgg(expr, order string) string { return "agg(" + expr + "," + order + ")" }
func (fakePG) JSONArray(col string) string            { return "arr(" + col + ")" }
func (fakePG) SkipLocked() string                     { return "" }
func (fakePG) Time(t time.Time) any                   { return t }
func (fakePG) ScanTime(any) (time.Time, error)        { return time.Time{}, nil }
func (fakePG) Addr(a netip.Addr) any                  { return a }
func (fakePG) ScanAddr(any) (netip.Addr, error)       { return netip.Addr{}, nil }
func (fakePG) Addrs(as []netip.Addr) (any, error)     { return as, nil }
