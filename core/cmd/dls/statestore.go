package main

import (
	"context"
	"fmt"
	"os"
	osuser "os/user"
	"strconv"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/postgres"
	"github.com/dls-project/dls/core/store/sqlite"
)

// userStore is the part of the state store `dls user` writes: it revokes
// refresh tokens and records what it changed.
type userStore interface {
	RevokeUserTokens(ctx context.Context, user string) error
	AppendAudit(ctx context.Context, e store.AuditEntry) error
	Close() error
}

// openStateStore opens the config's state store directly, as the host
// does: it works with the host down, and beside a running host (SQLite
// serialises writers across processes; PostgreSQL is shared anyway).
func openStateStore(ctx context.Context, cfg *config.Config) (userStore, error) {
	var (
		st  userStore
		err error
	)
	switch cfg.Database.Type {
	case config.DatabaseSQLite:
		// The data dir as the host makes it; a database file elsewhere
		// must be in a folder that exists.
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		st, err = sqlite.Open(ctx, cfg.Database.Path, nil, sqlite.WithNormalSync(cfg.Database.Sync == config.SyncNormal))
	case config.DatabasePostgres:
		st, err = postgres.Open(ctx, cfg.Database.DSN, nil)
	default:
		err = fmt.Errorf("unknown database %q", cfg.Database.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("open state store: %w", err)
	}
	return st, nil
}

// osUser names whoever runs the CLI, for the audit log: the login name, or
// the uid when the system has no name for it.
func osUser() string {
	if u, err := osuser.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "uid:" + strconv.Itoa(os.Getuid())
}
