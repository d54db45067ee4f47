// Package sqlite is the host's default state store: embedded SQLite through
// modernc.org/sqlite (pure Go, no cgo), in one file under the data dir.
//
// Writes go through a single connection, reads through a small pool of
// read-only connections; WAL mode lets those reads run while a write is
// being committed, so a DHCP lookup never waits for a lease commit's fsync.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlstore"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Compile-time check that Store is a store.Store.
var _ store.Store = (*Store)(nil)

// readConns bounds the read pool. Each SQLite connection carries its own
// page cache; a handful is plenty for lookups that take microseconds, and
// more would only cost memory.
const readConns = 4

// busyTimeoutMS is how long a statement waits for a lock held by another
// process using the same file (dls CLI commands, a backup) before failing.
// Within one host the single writer connection means we never wait on
// ourselves.
const busyTimeoutMS = 5000

// Store is the SQLite state store. Build it with Open.
type Store struct {
	// Tables holds the statements shared with the PostgreSQL store.
	*sqlstore.Tables

	// write is one connection: SQLite allows one writer at a time anyway, and
	// queueing in database/sql is cheaper than retrying on SQLITE_BUSY.
	write *sql.DB
	// read is the read-only pool (the same *sql.DB as write for :memory:,
	// whose connections would each see their own empty database).
	read *sql.DB
	m    *store.Metrics

	untrack   func()
	closeOnce sync.Once
	closeErr  error
}

// Option changes how Open opens the database.
type Option func(*options)

type options struct {
	normalSync bool
}

// WithNormalSync, when on, opens the database with synchronous=NORMAL
// instead of FULL: a commit survives a crash or kill -9 of the process,
// but a power cut or kernel crash may roll back the last commits (the
// config's database "sqlite" { sync = "normal" }).
func WithNormalSync(on bool) Option { return func(o *options) { o.normalSync = on } }

// Open opens (creating if needed) the database at path, applies pending
// migrations and returns the store. path is a file path, or ":memory:" for a
// throwaway database (tests). m may be nil.
func Open(ctx context.Context, path string, m *store.Metrics, opts ...Option) (*Store, error) {
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open state store %s: migrations: %w", path, err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return open(ctx, path, m, migrations, o)
}

// open is Open with the migrations as a parameter, so tests can migrate
// with their own sets.
func open(ctx context.Context, path string, m *store.Metrics, migrations fs.FS, o options) (*Store, error) {
	s, err := openPools(path, m, o)
	if err != nil {
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	if err := s.setup(ctx, path != ":memory:", migrations); err != nil {
		s.Close()
		return nil, fmt.Errorf("open state store %s: %w", path, err)
	}
	return s, nil
}

func openPools(path string, m *store.Metrics, o options) (*Store, error) {
	if path == "" {
		return nil, errors.New("empty database path")
	}
	// The driver cuts the DSN at the first '?' and reads a "file:" prefix
	// as a URI, so such paths cannot pass through it unchanged.
	if strings.Contains(path, "?") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("database path %q: '?' and a file: prefix are not supported", path)
	}
	memory := path == ":memory:"
	if !memory {
		// The database will hold tokens and the audit log: create it
		// readable by the owner only. SQLite gives its -wal and -shm files
		// the database file's permissions.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}

	// Durability: synchronous=FULL, not NORMAL, unless asked. In WAL mode NORMAL already
	// survives a crash or kill -9 of the process (a commit has written its
	// WAL frames to the OS before it returns), but not a power cut or
	// kernel crash, which can roll back the last commits. A DHCP client
	// keeps a lease it was ACKed across the server's reboot, so a forgotten
	// lease lets the address go to a second machine while the first still
	// uses it. FULL syncs the WAL at every commit; CommitLeases takes whole
	// batches so the DHCP server pays that once per batch, not per client.
	//
	// _txlock=immediate: write transactions take the write lock at BEGIN, so
	// a transaction that read first never fails to upgrade with SQLITE_BUSY
	// (which busy_timeout cannot wait out) when another process writes.
	sync := "FULL"
	if o.normalSync {
		sync = "NORMAL"
	}
	write, err := sql.Open("sqlite", dsn(path,
		"_txlock=immediate",
		"_pragma=busy_timeout("+fmt.Sprint(busyTimeoutMS)+")",
		"_pragma=foreign_keys(1)",
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous("+sync+")",
	))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	// Never recycle the connection: for :memory: it *is* the database.
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)

	s := &Store{write: write, read: write, m: m}
	s.Tables = sqlstore.New(tablesDB{s}, dialect{})
	if !memory {
		// query_only makes a write through the read pool an error instead of
		// a second writer competing with the first.
		s.read, err = sql.Open("sqlite", dsn(path,
			"_pragma=busy_timeout("+fmt.Sprint(busyTimeoutMS)+")",
			"_pragma=foreign_keys(1)",
			"_pragma=query_only(1)",
		))
		if err != nil {
			write.Close()
			return nil, err
		}
		s.read.SetMaxOpenConns(readConns)
		s.read.SetMaxIdleConns(readConns)
	}
	s.untrack = m.TrackConnections(s.openConnections)
	return s, nil
}

// dsn builds the driver's data source name: the path, then parameters.
func dsn(path string, params ...string) string {
	return path + "?" + strings.Join(params, "&")
}

// setup migrates the schema and checks that WAL mode took.
func (s *Store) setup(ctx context.Context, file bool, migrations fs.FS) error {
	if err := s.migrate(ctx, migrations); err != nil {
		return err
	}
	if !file {
		return nil
	}
	// journal_mode=WAL silently stays on the old mode where WAL cannot
	// work (some network file systems); without WAL, readers would block
	// the writer, so refuse rather than run slow and surprising.
	var mode string
	if err := s.queryRow(ctx, s.write, "PRAGMA journal_mode", nil, &mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, not wal: is the database on a network file system?", mode)
	}
	return nil
}

func (s *Store) openConnections() int {
	n := s.write.Stats().OpenConnections
	if s.read != s.write {
		n += s.read.Stats().OpenConnections
	}
	return n
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.queryRow(ctx, s.read, "SELECT 1", nil, &one); err != nil {
		return fmt.Errorf("ping state store: %w", err)
	}
	return nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.untrack()
		var errs []error
		if s.read != s.write {
			errs = append(errs, s.read.Close())
		}
		errs = append(errs, s.write.Close())
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("close state store: %w", err)
		}
	})
	return s.closeErr
}
