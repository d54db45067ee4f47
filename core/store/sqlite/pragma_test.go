package sqlite

import (
	"database/sql"
	"testing"
)

// TestPragmas checks that the DSN settings took effect: they are easy to
// lose silently (a typo in a _pragma, a driver that ignores a parameter).
func TestPragmas(t *testing.T) {
	s, _ := openTemp(t, nil)
	for _, tc := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.write, "journal_mode", "wal"},
		{s.write, "synchronous", "2"}, // FULL
		{s.write, "foreign_keys", "1"},
		{s.write, "busy_timeout", "5000"},
		{s.read, "foreign_keys", "1"},
		{s.read, "busy_timeout", "5000"},
		{s.read, "query_only", "1"},
	} {
		var got string
		if err := tc.db.QueryRowContext(t.Context(), "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			pool := "write"
			if tc.db == s.read {
				pool = "read"
			}
			t.Errorf("%s pool: PRAGMA %s = %s, want %s", pool, tc.pragma, got, tc.want)
		}
	}
}

// TestNormalSync: database "sqlite" { sync = "normal" } reaches the write
// connection as synchronous=NORMAL (1); the default stays FULL (above).
func TestNormalSync(t *testing.T) {
	s, err := Open(t.Context(), t.TempDir()+"/dls.db", nil, WithNormalSync(true))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got string
	if err := s.write.QueryRowContext(t.Context(), "PRAGMA synchronous").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != "1" {
		t.Errorf("PRAGMA synchronous = %s with WithNormalSync(true), want 1 (NORMAL)", got)
	}
}
