package sqlstore

import (
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Migration is one schema step: a file NNNN_name.sql of a driver's
// migrations folder. Each driver applies its own (the SQL differs by
// dialect, and so does how hosts starting at once are kept from applying a
// step twice); reading and ordering them is the same for both.
type Migration struct {
	Version int
	Name    string // file name, recorded in schema_migrations for humans
	SQL     string
}

// LoadMigrations reads every *.sql file of fsys, ordered by version.
// Versions must run 1, 2, 3, ... without gaps or duplicates: a gap usually
// means a file lost in a merge, and guessing past it would leave a schema
// no released binary ever had.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var ms []Migration
	for _, name := range names {
		prefix, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(prefix)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", name)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: version, Name: name, SQL: string(body)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	for i, m := range ms {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d (missing or duplicate file)", m.Name, m.Version, i+1)
		}
	}
	return ms, nil
}
