package postgres

// These tests need a real PostgreSQL: they read its DSN from DLS_PG_DSN
// (eval "$(.ci/postgres-setup.sh)" makes one) and skip without it, except
// under CI, where a missing database fails them. Each test works in a
// schema of its own, dropped when it ends.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/storetest"
)

// dsnEnv names the variable holding the test database's DSN.
const dsnEnv = "DLS_PG_DSN"

// schemaPrefix starts the name of every schema the tests make.
const schemaPrefix = "dls_test_"

// baseDSN returns the DSN of the test database, skipping the test when
// there is none (failing it under CI, which must run these tests).
func baseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(dsnEnv)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not set, and CI must test the PostgreSQL store: run eval \"$(.ci/postgres-setup.sh)\" first", dsnEnv)
		}
		t.Skipf("%s is not set: no PostgreSQL to test against (eval \"$(.ci/postgres-setup.sh)\" makes one)", dsnEnv)
	}
	return dsn
}

var sweepOnce sync.Once

// freshDSN makes a new, empty schema in the test database and returns a
// DSN whose search_path is that schema; the schema is dropped when the test
// ends. The first call also drops test schemas more than an hour old, left
// by runs that were killed before their cleanup.
func freshDSN(t testing.TB) string {
	t.Helper()
	dsn := baseDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to the test database (%s): %v", dsnEnv, err)
	}
	defer conn.Close(ctx)
	sweepOnce.Do(func() { sweepSchemas(t, ctx, conn) })

	var random [6]byte
	rand.Read(random[:])
	schema := fmt.Sprintf("%s%d_%s", schemaPrefix, time.Now().Unix(), hex.EncodeToString(random[:]))
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withSearchPath(t, dsn, schema)
}

// withSearchPath adds search_path=schema to dsn; pgx sends it to the
// server as a run-time parameter.
func withSearchPath(t testing.TB, dsn, schema string) string {
	t.Helper()
	return withParam(t, dsn, "search_path", schema)
}

// withParam sets key=value in dsn, a URL or a keyword/value string.
func withParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " " + key + "=" + value
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("%s is not a valid URL", dsnEnv)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

func sweepSchemas(t testing.TB, ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, schemaPrefix)
	if err != nil {
		t.Logf("list old test schemas: %v", err)
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Logf("list old test schemas: %v", err)
		return
	}
	for _, name := range names {
		stamp, _, _ := strings.Cut(strings.TrimPrefix(name, schemaPrefix), "_")
		sec, err := strconv.ParseInt(stamp, 10, 64)
		if err != nil || time.Since(time.Unix(sec, 0)) < time.Hour {
			continue
		}
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{name}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("drop old test schema %s: %v", name, err)
		}
	}
}

// openFresh opens a store on a new schema and closes it when the test ends.
func openFresh(t testing.TB, m *store.Metrics) (*Store, string) {
	t.Helper()
	dsn := freshDSN(t)
	s, err := Open(t.Context(), dsn, m)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dsn
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openFresh(t, nil)
		return s
	})
}

// TestStoreShared opens one schema twice: two pools, as two DLS hosts
// sharing the database would have.
func TestStoreShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		a, dsn := openFresh(t, nil)
		b, err := Open(t.Context(), dsn, nil)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		return a, b
	})
}

func TestPersistence(t *testing.T) {
	dsn := freshDSN(t)
	s, err := Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := s.PutClient(t.Context(), store.Client{Name: "pc-01", MAC: "52:54:00:12:34:56",
		Address: netip.MustParseAddr("10.0.0.7"), Labels: map[string]string{"room": "b2"},
		Initiators: []string{"iqn.2026-11.io.dls:x"}, Persistent: true}); err != nil {
		t.Fatalf("PutClient: %v", err)
	}
	if _, err := s.CommitLeases(t.Context(), []store.Lease{{Pool: "lan", Address: netip.MustParseAddr("10.0.0.7"),
		MAC: "52:54:00:12:34:56", Expires: exp, State: store.LeaseBound}}); err != nil {
		t.Fatalf("CommitLeases: %v", err)
	}
	if err := s.AppendAudit(t.Context(), store.AuditEntry{Action: "client.put"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s, err = Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	c, err := s.ClientByInitiator(t.Context(), "iqn.2026-11.io.dls:x")
	if err != nil || c.Name != "pc-01" || !c.Persistent || c.Address != netip.MustParseAddr("10.0.0.7") || c.Labels["room"] != "b2" {
		t.Errorf("client after reopen: %+v, %v", c, err)
	}
	ls, err := s.LoadLeases(t.Context(), "lan")
	if err != nil || len(ls) != 1 || ls[0].MAC != "52:54:00:12:34:56" || !ls[0].Expires.Equal(exp) {
		t.Errorf("leases after reopen: %+v, %v", ls, err)
	}
	if es, err := s.ListAudit(t.Context(), 0); err != nil || len(es) != 1 {
		t.Errorf("audit after reopen: %+v, %v", es, err)
	}
}

// TestTimesUTCMillis: whatever zone and precision the caller uses, times
// come back in UTC with millisecond precision, as store.Store promises.
func TestTimesUTCMillis(t *testing.T) {
	s, _ := openFresh(t, nil)
	zone := time.FixedZone("UTC+5", 5*3600)
	exp := time.Date(2031, 1, 2, 3, 4, 5, 123456789, zone)
	if _, err := s.CommitLeases(t.Context(), []store.Lease{{Pool: "lan", Address: netip.MustParseAddr("10.0.0.1"),
		MAC: "52:54:00:00:00:01", Expires: exp, State: store.LeaseBound}}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(t.Context(), store.AuditEntry{Time: exp, Action: "x"}); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2031, 1, 1, 22, 4, 5, 123000000, time.UTC)
	ls, err := s.LoadLeases(t.Context(), "")
	if err != nil || len(ls) != 1 || ls[0].Expires != want {
		t.Errorf("lease Expires = %v, %v; want %v", ls, err, want)
	}
	es, err := s.ListAudit(t.Context(), 1)
	if err != nil || len(es) != 1 || es[0].Time != want {
		t.Errorf("audit Time = %v, %v; want %v", es, err, want)
	}
}

func TestOpenErrors(t *testing.T) {
	dsn := baseDSN(t)
	for _, bad := range []string{
		"postgres://dls:s3cret-pw@127.0.0.1:notaport/dls",
		"host=127.0.0.1 password=s3cret-pw port=99999",
		withSearchPath(t, strings.Replace(dsn, "://", "://nobody-dls-test:s3cret-pw@", 1), "x"),
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		s, err := Open(ctx, bad, nil)
		cancel()
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", bad)
			continue
		}
		if !strings.Contains(err.Error(), "open state store") {
			t.Errorf("Open(%q): error %q does not say what failed", bad, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q): error %q shows the password", bad, err)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	s, _ := openFresh(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.CommitLeases(ctx, []store.Lease{{Address: netip.MustParseAddr("10.0.0.1"),
		MAC: "52:54:00:00:00:01", State: store.LeaseBound}}); !errors.Is(err, context.Canceled) {
		t.Errorf("CommitLeases with a canceled context: err = %v, want context.Canceled", err)
	}
	// The pool is still usable.
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping after a canceled commit: %v", err)
	}
}

// TestCommitLeasesLargeBatch crosses the batchLeases chunk boundary with
// leases of one address spread over chunks, in an order the sort must not
// disturb.
func TestCommitLeasesLargeBatch(t *testing.T) {
	s, _ := openFresh(t, nil)
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	const n = 3*batchLeases + 7
	batch := make([]store.Lease, n)
	for i := range batch {
		batch[i] = store.Lease{Pool: "lan", Address: netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}),
			MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Expires: exp, State: store.LeaseBound}
	}
	// Three more for the address of lease 5: another MAC (refused), the
	// holder releasing it, then the other MAC again (now free).
	other := "02:00:00:00:ff:ff"
	taken := batch[5]
	batch = append(batch,
		store.Lease{Pool: "lan", Address: taken.Address, MAC: other, Expires: exp, State: store.LeaseBound},
		store.Lease{Pool: "lan", Address: taken.Address, MAC: taken.MAC, Expires: exp, State: store.LeaseReleased},
		store.Lease{Pool: "lan", Address: taken.Address, MAC: other, Expires: exp, State: store.LeaseBound},
	)
	got, err := s.CommitLeases(t.Context(), batch)
	if err != nil {
		t.Fatalf("CommitLeases: %v", err)
	}
	for i := range n {
		if !got[i].OK {
			t.Fatalf("lease %d refused: %+v", i, got[i])
		}
	}
	if want := []store.LeaseResult{{Holder: taken.MAC}, {OK: true}, {OK: true}}; got[n] != want[0] || got[n+1] != want[1] || got[n+2] != want[2] {
		t.Errorf("results for %s = %+v, want %+v", taken.Address, got[n:], want)
	}
	ls, err := s.LoadLeases(t.Context(), "lan")
	if err != nil || len(ls) != n {
		t.Fatalf("LoadLeases = %d leases, %v; want %d", len(ls), err, n)
	}
	if ls[5].MAC != other {
		t.Errorf("%s held by %s, want %s", ls[5].Address, ls[5].MAC, other)
	}
}
