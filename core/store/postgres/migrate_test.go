package postgres

import (
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

func TestEmbeddedMigrationsLoad(t *testing.T) {
	s, _ := openFresh(t, nil)
	v, err := s.schemaVersion(t.Context(), s.pool)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := sqlstore.LoadMigrations(embedded(t))
	if err != nil {
		t.Fatal(err)
	}
	if v != len(ms) || v == 0 {
		t.Errorf("schema version %d after Open, want %d", v, len(ms))
	}
}

func TestReopenIdempotent(t *testing.T) {
	dsn := freshDSN(t)
	ms, _ := sqlstore.LoadMigrations(embedded(t))
	for i := range 3 {
		s, err := Open(t.Context(), dsn, nil)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		if rows := countRows(t, s, "schema_migrations"); rows != len(ms) {
			t.Errorf("Open #%d: %d schema_migrations rows, want %d", i+1, rows, len(ms))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, dsn := openFresh(t, nil)
	if _, err := s.pool.Exec(t.Context(),
		`INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(t.Context(), dsn, nil)
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer database: err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), s.where) {
		t.Errorf("error %q should name the versions and the database", err)
	}
}

// Three steps: 0001 fails if it runs twice, 0002 and 0003 count their runs.
var threeSteps = fstest.MapFS{
	"0001_a.sql": {Data: []byte("CREATE TABLE a (x integer);")},
	"0002_b.sql": {Data: []byte("CREATE TABLE b (y integer); INSERT INTO a VALUES (2);")},
	"0003_c.sql": {Data: []byte("INSERT INTO a VALUES (3);")},
}

// TestMigrationsStepwise applies a set, then a longer one: only the new step
// runs; a failing step leaves the schema at the step before.
func TestMigrationsStepwise(t *testing.T) {
	dsn := freshDSN(t)
	v1 := fstest.MapFS{"0001_a.sql": threeSteps["0001_a.sql"]}
	v2 := fstest.MapFS{"0001_a.sql": threeSteps["0001_a.sql"], "0002_b.sql": threeSteps["0002_b.sql"]}
	v3 := fstest.MapFS{
		"0001_a.sql": v2["0001_a.sql"],
		"0002_b.sql": v2["0002_b.sql"],
		"0003_c.sql": {Data: []byte("CREATE TABLE c (z integer); INSERT INTO nowhere VALUES (1);")},
	}
	for _, fsys := range []fstest.MapFS{v1, v2} {
		s, err := open(t.Context(), dsn, nil, fsys)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		s.Close()
	}
	if _, err := open(t.Context(), dsn, nil, v3); err == nil || !strings.Contains(err.Error(), "0003_c.sql") {
		t.Fatalf("failing migration: err = %v, want one naming 0003_c.sql", err)
	}
	s, err := open(t.Context(), dsn, nil, v2)
	if err != nil {
		t.Fatalf("open after failed migration: %v", err)
	}
	defer s.Close()
	v, err := s.schemaVersion(t.Context(), s.pool)
	if err != nil || v != 2 {
		t.Errorf("version = %d, %v; want 2", v, err)
	}
	if n := countRows(t, s, "a"); n != 1 {
		t.Errorf("rows in a = %d; want 1 (0002 ran once)", n)
	}
	var exists bool
	if err := s.pool.QueryRow(t.Context(), `SELECT to_regclass('c') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Errorf("table c from the failed migration exists (%v, %v)", exists, err)
	}
}

// TestOpenConcurrent starts hosts at once on a new database: the advisory
// lock makes each step run exactly once, and every host opens.
func TestOpenConcurrent(t *testing.T) {
	dsn := freshDSN(t)
	const hosts = 8
	var wg sync.WaitGroup
	stores := make([]*Store, hosts)
	errs := make([]error, hosts)
	for i := range hosts {
		wg.Go(func() { stores[i], errs[i] = open(t.Context(), dsn, nil, threeSteps) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("host %d: %v", i, err)
		} else {
			defer stores[i].Close()
		}
	}
	if t.Failed() {
		return
	}
	if n := countRows(t, stores[0], "schema_migrations"); n != 3 {
		t.Errorf("%d schema_migrations rows, want 3", n)
	}
	if n := countRows(t, stores[0], "a"); n != 2 {
		t.Errorf("rows in a = %d, want 2 (0002 and 0003 once each)", n)
	}
}

func embedded(t *testing.T) fs.FS {
	t.Helper()
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	return fsys
}

func countRows(t *testing.T, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(t.Context(), `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// TestUpgradeFrom0001 opens a database written by a DLS that knew only
// 0001: its clients survive 0002, without CHAP secrets.
func TestUpgradeFrom0001(t *testing.T) {
	dsn := freshDSN(t)
	first, err := fs.ReadFile(embedded(t), "0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	old, err := open(t.Context(), dsn, nil, fstest.MapFS{"0001_init.sql": {Data: first}})
	if err != nil {
		t.Fatalf("open at 0001: %v", err)
	}
	if _, err := old.pool.Exec(t.Context(), `INSERT INTO clients (name, mac, image, created_at, updated_at)
		VALUES ('pc-01', '52:54:00:00:00:01', 'lab', now(), now())`); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := Open(t.Context(), dsn, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	c, err := s.GetClient(t.Context(), "pc-01")
	if err != nil || c.Image != "lab" || c.CHAPSecret != "" || c.CHAPMutualSecret != "" {
		t.Errorf("client after upgrade: %+v, %v", c, err)
	}
	if err := s.PutImage(t.Context(), store.Image{Name: "lab"}); err != nil {
		t.Errorf("PutImage after upgrade: %v", err)
	}
}
