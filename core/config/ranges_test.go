package config

import (
	"fmt"
	"testing"
)

func TestAttrRange(t *testing.T) {
	path := writeConfig(t, `data_dir = "var"
boot {
  url = "http://10.0.0.1:9184"
}
image "lab" {
  storage = "local"
  source  = "lab.img"
}
storage "dir" "local" {}
`)
	cfg := mustLoad(t, path)
	pos := func(typ string, labels []string, name string) string {
		r, ok := cfg.AttrRange(typ, labels, name)
		if !ok {
			return "absent"
		}
		return fmt.Sprintf("%d:%d", r.Start.Line, r.Start.Column)
	}
	for _, tc := range []struct {
		typ    string
		labels []string
		name   string
		want   string
	}{
		{"", nil, "data_dir", "1:12"},
		{"boot", nil, "url", "3:9"},
		{"image", []string{"lab"}, "source", "7:13"},
		{"image", []string{"other"}, "source", "absent"},
		{"boot", nil, "listen", "absent"},
		{"http", nil, "listen", "absent"},
	} {
		if got := pos(tc.typ, tc.labels, tc.name); got != tc.want {
			t.Errorf("%s %v %s: %s, want %s", tc.typ, tc.labels, tc.name, got, tc.want)
		}
	}
	if r, ok := cfg.BlockRange("storage", "dir", "local"); !ok || r.Start.Line != 9 || r.Filename != path {
		t.Errorf("storage block at %v (%v)", r, ok)
	}
	if _, ok := cfg.BlockRange("storage", "dir"); ok {
		t.Error("a block with other labels was found")
	}
}

func TestISCSIPort(t *testing.T) {
	for text, want := range map[string]int{
		``:                            DefaultISCSIPort,
		`protocol "iscsi" "disks" {}`: DefaultISCSIPort,
		"protocol \"iscsi\" \"disks\" {\n  config {\n    listen = \"10.0.0.1:3261\"\n  }\n}\n": 3261,
		"protocol \"iscsi\" \"disks\" {\n  config {\n    queue_depth = 8\n  }\n}\n":            DefaultISCSIPort,
		// The first iscsi block decides; other protocols do not count.
		"protocol \"tftp\" \"t\" {\n  config {\n    listen = \":69\"\n  }\n}\n" +
			"protocol \"iscsi\" \"a\" {\n  config {\n    listen = \":3262\"\n  }\n}\n" +
			"protocol \"iscsi\" \"b\" {\n  config {\n    listen = \":3263\"\n  }\n}\n": 3262,
		// env() is evaluated as for every other attribute.
		"protocol \"iscsi\" \"disks\" {\n  config {\n    listen = env(\"DLS_TEST_NOPE\", \"0.0.0.0:3270\")\n  }\n}\n": 3270,
	} {
		cfg := mustLoad(t, writeConfig(t, text))
		if got := cfg.ISCSIPort(); got != want {
			t.Errorf("%q: port %d, want %d", text, got, want)
		}
	}
}

func TestUnknownClientsDiscover(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, "boot {\n  unknown_clients = \"discover\"\n}\n"))
	if cfg.Boot.UnknownClients != "discover" {
		t.Errorf("unknown_clients %q", cfg.Boot.UnknownClients)
	}
}
