package sqlite

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/storetest"
)

// openTemp opens a store on a new file in a temp dir and closes it when the
// test ends.
func openTemp(t *testing.T, m *store.Metrics) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dls.db")
	s, err := Open(t.Context(), path, m)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := openTemp(t, nil)
		return s
	})
}

func TestStoreMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(t.Context(), ":memory:", nil)
		if err != nil {
			t.Fatalf("Open(:memory:): %v", err)
		}
		return s
	})
}

// TestStoreShared opens one file twice, as two processes would: the second
// Store has its own writer connection, so the lease rules must hold through
// SQLite's file locking, not the Go pool.
func TestStoreShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		a, path := openTemp(t, nil)
		b, err := Open(t.Context(), path, nil)
		if err != nil {
			t.Fatalf("second Open: %v", err)
		}
		return a, b
	})
}

func TestPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dls.db")
	s, err := Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	if err := s.PutClient(t.Context(), store.Client{Name: "pc-01", MAC: "52:54:00:12:34:56",
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

	s, err = Open(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	c, err := s.ClientByInitiator(t.Context(), "iqn.2026-11.io.dls:x")
	if err != nil || c.Name != "pc-01" || !c.Persistent {
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

func TestFileMode(t *testing.T) {
	_, path := openTemp(t, nil)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		t.Errorf("database mode %v, want no access for group and others", mode)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{
		"",
		filepath.Join(dir, "a?b.db"),
		"file:" + filepath.Join(dir, "x.db"),
		filepath.Join(dir, "missing", "dls.db"),
	} {
		s, err := Open(t.Context(), path, nil)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", path)
			continue
		}
		if !strings.Contains(err.Error(), "open state store") {
			t.Errorf("Open(%q): error %q does not say what failed", path, err)
		}
	}
}

// TestReadPoolIsReadOnly guards the split: a write sent to the read pool
// by mistake must fail, not become a second writer.
func TestReadPoolIsReadOnly(t *testing.T) {
	s, _ := openTemp(t, nil)
	_, err := s.read.ExecContext(t.Context(), `INSERT INTO audit (time, action) VALUES (0, 'x')`)
	if err == nil {
		t.Fatal("write through the read pool succeeded")
	}
}

func TestContextCanceled(t *testing.T) {
	s, _ := openTemp(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.CommitLeases(ctx, []store.Lease{{Address: netip.MustParseAddr("10.0.0.1"),
		MAC: "52:54:00:00:00:01", State: store.LeaseBound}}); !errors.Is(err, context.Canceled) {
		t.Errorf("CommitLeases with a canceled context: err = %v, want context.Canceled", err)
	}
}
