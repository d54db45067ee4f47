package sqlstore

import (
	"testing"
	"testing/fstest"
)

func TestLoadMigrationsOrders(t *testing.T) {
	fsys := fstest.MapFS{
		"0002_b.sql": {Data: []byte("SELECT 2;")},
		"0001_a.sql": {Data: []byte("SELECT 1;")},
	}
	ms, err := LoadMigrations(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Name != "0001_a.sql" || ms[1].Version != 2 || ms[1].SQL != "SELECT 2;" {
		t.Errorf("LoadMigrations = %+v", ms)
	}
}

func TestLoadMigrationsRejects(t *testing.T) {
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":        {"0001_a.sql": sql, "0003_c.sql": sql},
		"duplicate":  {"0001_a.sql": sql, "0001_b.sql": sql},
		"no number":  {"init.sql": sql},
		"zero":       {"0000_a.sql": sql},
		"not first":  {"0002_b.sql": sql},
		"bad prefix": {"01a_x.sql": sql},
	} {
		if _, err := LoadMigrations(fsys); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
