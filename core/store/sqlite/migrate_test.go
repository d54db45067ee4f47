package sqlite

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"
)

func TestEmbeddedMigrationsLoad(t *testing.T) {
	s, _ := openTemp(t, nil)
	v, err := s.schemaVersion(t.Context(), s.read)
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
	path := filepath.Join(t.TempDir(), "dls.db")
	for i := range 3 {
		s, err := Open(t.Context(), path, nil)
		if err != nil {
			t.Fatalf("Open #%d: %v", i+1, err)
		}
		var rows int
		if err := s.read.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		ms, _ := sqlstore.LoadMigrations(embedded(t))
		if rows != len(ms) {
			t.Errorf("Open #%d: %d schema_migrations rows, want %d", i+1, rows, len(ms))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, path := openTemp(t, nil)
	if _, err := s.write.ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(t.Context(), path, nil)
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open of a newer database: err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "9999") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q should name the versions and the file", err)
	}
}

// TestMigrationsStepwise applies a set, then a longer one: only the new step
// runs; a failing step leaves the schema at the step before.
func TestMigrationsStepwise(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dls.db")
	v1 := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")},
	}
	v2 := fstest.MapFS{
		"0001_a.sql": {Data: []byte("CREATE TABLE a (x INTEGER);")}, // would fail if run twice
		"0002_b.sql": {Data: []byte("CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1);")},
	}
	v3 := fstest.MapFS{
		"0001_a.sql": v2["0001_a.sql"],
		"0002_b.sql": v2["0002_b.sql"],
		"0003_c.sql": {Data: []byte("CREATE TABLE c (z INTEGER); INSERT INTO nowhere VALUES (1);")},
	}
	for _, fsys := range []fstest.MapFS{v1, v2} {
		s, err := open(t.Context(), path, nil, fsys, options{})
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		s.Close()
	}
	if _, err := open(t.Context(), path, nil, v3, options{}); err == nil || !strings.Contains(err.Error(), "0003_c.sql") {
		t.Fatalf("failing migration: err = %v, want one naming 0003_c.sql", err)
	}
	s, err := open(t.Context(), path, nil, v2, options{})
	if err != nil {
		t.Fatalf("open after failed migration: %v", err)
	}
	defer s.Close()
	v, err := s.schemaVersion(t.Context(), s.read)
	if err != nil || v != 2 {
		t.Errorf("version = %d, %v; want 2", v, err)
	}
	var n int
	if err := s.read.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM a`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows in a = %d, %v; want 1 (0002 ran once)", n, err)
	}
	if err := s.read.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM sqlite_schema WHERE name = 'c'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("table c from the failed migration exists (%d, %v)", n, err)
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

// TestUpgradeFrom0001 opens a database written by a DLS that knew only
// 0001: its clients survive 0002, without CHAP secrets.
func TestUpgradeFrom0001(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dls.db")
	first, err := fs.ReadFile(embedded(t), "0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	old, err := open(t.Context(), path, nil, fstest.MapFS{"0001_init.sql": {Data: first}}, options{})
	if err != nil {
		t.Fatalf("open at 0001: %v", err)
	}
	if _, err := old.write.ExecContext(t.Context(), `INSERT INTO clients (name, mac, image, created_at, updated_at)
		VALUES ('pc-01', '52:54:00:00:00:01', 'lab', 0, 0)`); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := Open(t.Context(), path, nil)
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
