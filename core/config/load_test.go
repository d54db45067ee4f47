package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// noEnv is an environment with nothing set.
func noEnv(string) (string, bool) { return "", false }

func fakeEnv(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func testdata(t *testing.T, parts ...string) string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(append([]string{"testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	cfg, err := load(path, noEnv)
	if err != nil {
		t.Fatalf("load %s:\n%v", path, err)
	}
	return cfg
}

// writeConfig writes text to dls.hcl in a new folder and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dls.hcl")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func names(ps []*PluginBlock) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Kind+"/"+p.Type+"/"+p.Name)
	}
	return out
}

// TestLoadSite loads a whole site config (testdata/site.hcl): every block and attribute.
func TestLoadSite(t *testing.T) {
	cfg := mustLoad(t, "testdata/site.hcl")
	if cfg.File != "testdata/site.hcl" {
		t.Errorf("File = %q", cfg.File)
	}
	if cfg.DataDir != "/var/lib/dls" || cfg.PluginDir != "/usr/libexec/dls" {
		t.Errorf("dirs: %q %q", cfg.DataDir, cfg.PluginDir)
	}
	if want := (HTTP{Listen: "192.168.77.1:9180", ScrapeTimeout: 2 * time.Second, SessionLifetime: 24 * time.Hour}); cfg.HTTP != want {
		t.Errorf("http = %+v, want %+v", cfg.HTTP, want)
	}
	wantBoot := Boot{
		URL:            "http://192.168.77.1:9180",
		IQNPrefix:      "iqn.2026-11.io.dls",
		UnknownClients: "ignore",
		Files:          testdata(t, "boot"),
		StageTimeout:   DefaultStageTimeout,
		MaxRegistered:  DefaultMaxRegistered,
		MaxDiscovered:  DefaultMaxDiscovered,
		SessionHistory: DefaultSessionHistory,
	}
	if cfg.Boot != wantBoot {
		t.Errorf("boot = %+v, want %+v", cfg.Boot, wantBoot)
	}
	if cfg.Database.Type != DatabaseSQLite || cfg.Database.Path != "/var/lib/dls/dls.db" {
		t.Errorf("database = %+v", cfg.Database)
	}
	if cfg.Database.DeclRange.Start.Line != 15 {
		t.Errorf("database declared at %v", cfg.Database.DeclRange)
	}
	want := []string{"storage/zfs/tank", "auth/local/admins", "protocol/dhcp/lan", "protocol/tftp/boot", "protocol/iscsi/disks"}
	if got := names(cfg.Plugins); !reflect.DeepEqual(got, want) {
		t.Errorf("plugins = %v, want %v", got, want)
	}
	for _, p := range cfg.Plugins {
		if p.Restart != DefaultRestartPolicy() || p.Source != "" || p.SHA256 != "" || p.ConfigBody == nil {
			t.Errorf("%s: %+v", p.Name, p)
		}
	}
	if got := cfg.Plugin("lan").DeclRange; got.Start.Line != 27 || got.Start.Column != 1 {
		t.Errorf("lan declared at %v", got)
	}
	wantImage := &Image{Name: "lab", Storage: "tank", Source: "images/lab.img"}
	if len(cfg.Images) != 1 || cfg.Images[0].Name != "lab" || cfg.Images[0].Storage != "tank" ||
		cfg.Images[0].Source != "images/lab.img" || cfg.Images[0].Boot != nil {
		t.Errorf("images = %+v, want [%+v]", cfg.Images, wantImage)
	}
	if cfg.Image("lab") != cfg.Images[0] || cfg.Image("nope") != nil {
		t.Error("Config.Image lookup")
	}
	if len(cfg.Clients) != 1 {
		t.Fatalf("clients = %+v", cfg.Clients)
	}
	c := cfg.Clients[0]
	if c.Name != "pc-01" || c.MAC != "52:54:00:12:34:56" || c.Image != "lab" || c.Address != "192.168.77.21" ||
		c.Initiators == nil || len(c.Initiators) != 0 || !c.Persistent || c.CHAP != nil {
		t.Errorf("client = %+v", c)
	}
}

func TestDefaults(t *testing.T) {
	cfg := mustLoad(t, "testdata/minimal.hcl")
	dir := testdata(t)
	if cfg.DataDir != filepath.Join(dir, "var") || cfg.PluginDir != filepath.Join(dir, "bin/plugins") {
		t.Errorf("dirs: %q %q", cfg.DataDir, cfg.PluginDir)
	}
	if cfg.HTTP.Listen != "127.0.0.1:9180" || cfg.HTTP.ScrapeTimeout != 2*time.Second || cfg.HTTP.SessionLifetime != 24*time.Hour {
		t.Errorf("http = %+v", cfg.HTTP)
	}
	wantBoot := Boot{
		URL:            "http://127.0.0.1:9180",
		IQNPrefix:      "iqn.2026-11.io.dls",
		UnknownClients: "ignore",
		Files:          filepath.Join(dir, "boot"),
		StageTimeout:   DefaultStageTimeout,
		MaxRegistered:  DefaultMaxRegistered,
		MaxDiscovered:  DefaultMaxDiscovered,
		SessionHistory: DefaultSessionHistory,
	}
	if cfg.Boot != wantBoot {
		t.Errorf("boot = %+v, want %+v", cfg.Boot, wantBoot)
	}
	if want := (Database{Type: "sqlite", Path: filepath.Join(dir, "var/dls.db"), Sync: SyncFull}); cfg.Database != want {
		t.Errorf("database = %+v, want %+v", cfg.Database, want)
	}
	p := cfg.Plugin("disks")
	if p == nil || p.ConfigBody != nil {
		t.Fatalf("plugin disks = %+v", p)
	}
	want := RestartPolicy{InitialDelay: 200 * time.Millisecond, MaxDelay: 30 * time.Second, MaxFailures: 5, ResetAfter: time.Minute}
	if p.Restart != want {
		t.Errorf("restart = %+v, want %+v", p.Restart, want)
	}
	if got := p.BinaryPath(cfg.PluginDir); got != filepath.Join(dir, "bin/plugins/dls-storage-dir") {
		t.Errorf("binary = %q", got)
	}

	// An empty file is a valid config too.
	if _, err := load(writeConfig(t, ""), noEnv); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestRelativePaths(t *testing.T) {
	cfg := mustLoad(t, "testdata/relative.hcl")
	dir := testdata(t)
	if cfg.DataDir != filepath.Join(dir, "state") {
		t.Errorf("data_dir = %q", cfg.DataDir)
	}
	if cfg.PluginDir != filepath.Join(filepath.Dir(dir), "plugins") {
		t.Errorf("plugin_dir = %q", cfg.PluginDir)
	}
	if cfg.Boot.Files != "/srv/boot" {
		t.Errorf("boot.files = %q", cfg.Boot.Files)
	}
	if cfg.Database.Path != filepath.Join(dir, "db/dls.sqlite") {
		t.Errorf("database path = %q", cfg.Database.Path)
	}
	if cfg.HTTP.Listen != "0.0.0.0:8080" || cfg.HTTP.ScrapeTimeout != 500*time.Millisecond {
		t.Errorf("http = %+v", cfg.HTTP)
	}
	if cfg.Boot.URL != "" {
		t.Errorf("boot.url = %q, want none for a wildcard listen address", cfg.Boot.URL)
	}
	for _, tc := range []struct{ name, want string }{
		{"disks", filepath.Join(cfg.PluginDir, "vendor/dls-storage-dir")},
		{"admins", "/opt/dls/auth-local"},
		{"boot", filepath.Join(cfg.PluginDir, "dls-protocol-tftp")},
	} {
		if got := cfg.Plugin(tc.name).BinaryPath(cfg.PluginDir); got != tc.want {
			t.Errorf("%s: binary %q, want %q", tc.name, got, tc.want)
		}
	}
	admins := cfg.Plugin("admins")
	if admins.SHA256 != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("sha256 = %q", admins.SHA256)
	}
	want := RestartPolicy{InitialDelay: time.Second, MaxDelay: 30 * time.Second, MaxFailures: 10, ResetAfter: time.Minute}
	if admins.Restart != want {
		t.Errorf("restart = %+v, want %+v", admins.Restart, want)
	}

	// Relative to the file, not to the working directory.
	path := writeConfig(t, "data_dir = \"state\"\nboot {\n  files = \"../files\"\n}\n")
	cfg = mustLoad(t, path)
	if cfg.DataDir != filepath.Join(filepath.Dir(path), "state") {
		t.Errorf("data_dir = %q", cfg.DataDir)
	}
	if cfg.Boot.Files != filepath.Join(filepath.Dir(filepath.Dir(path)), "files") {
		t.Errorf("boot.files = %q", cfg.Boot.Files)
	}
}

func TestBootURL(t *testing.T) {
	for _, tc := range []struct{ listen, want string }{
		{"127.0.0.1:9180", "http://127.0.0.1:9180"},
		{"[::1]:9180", "http://[::1]:9180"},
		{"[fd00::1]:80", "http://[fd00::1]:80"},
		{"0.0.0.0:9180", ""},
		{"[::]:9180", ""},
		{":9180", ""},
		{"dls.lan:9180", ""},
	} {
		cfg := mustLoad(t, writeConfig(t, "http {\n  listen = \""+tc.listen+"\"\n}\n"))
		if cfg.Boot.URL != tc.want {
			t.Errorf("listen %s: boot.url %q, want %q", tc.listen, cfg.Boot.URL, tc.want)
		}
	}
}

func TestSessionHistory(t *testing.T) {
	for value, want := range map[string]time.Duration{
		"0":     0, // keep forever
		"0s":    0,
		"720h":  30 * 24 * time.Hour,
		"1h30m": 90 * time.Minute,
	} {
		cfg := mustLoad(t, writeConfig(t, "boot {\n  session_history = \""+value+"\"\n}\n"))
		if cfg.Boot.SessionHistory != want {
			t.Errorf("session_history = %q: %v, want %v", value, cfg.Boot.SessionHistory, want)
		}
	}
}

func TestEnv(t *testing.T) {
	env := fakeEnv(map[string]string{
		"DLS_TEST_DSN":  "postgres://dls@db/dls",
		"DLS_TEST_ROOT": "/srv/dls",
	})
	cfg, err := load("testdata/env.hcl", env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database.Type != DatabasePostgres || cfg.Database.DSN != "postgres://dls@db/dls" || cfg.Database.Path != "" {
		t.Errorf("database = %+v", cfg.Database)
	}
	if cfg.Boot.URL != "https://boot.example:9180" {
		t.Errorf("boot.url = %q (fallback, trailing slash trimmed)", cfg.Boot.URL)
	}
	data, err := cfg.Plugin("disks").DecodeConfig(stringsSchema("root", "label"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `{"label":"fallback","root":"/srv/dls"}`; got != want {
		t.Errorf("config = %s, want %s", got, want)
	}

	// An unset variable without a fallback fails where it is used, in
	// host attributes at Load and in plugin config at DecodeConfig.
	_, err = load("testdata/env.hcl", noEnv)
	want := `testdata/env.hcl:2:9: Error in function call; Call to function "env" failed: environment variable DLS_TEST_DSN is not set.`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	cfg, err = load("testdata/env.hcl", fakeEnv(map[string]string{"DLS_TEST_DSN": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Plugin("disks").DecodeConfig(stringsSchema("root", "label"))
	want = `testdata/env.hcl:11:13: Error in function call; Call to function "env" failed: environment variable DLS_TEST_ROOT is not set.`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}

	// Load reads the process environment.
	t.Setenv("DLS_TEST_DSN", "from-process")
	t.Setenv("DLS_TEST_SCHEME", "http")
	cfg, err = Load("testdata/env.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Database.DSN != "from-process" || cfg.Boot.URL != "http://boot.example:9180" {
		t.Errorf("database %+v, boot %+v", cfg.Database, cfg.Boot)
	}
}

// TestLoadErrors checks that every problem is reported, each at its exact
// file:line:col.
func TestLoadErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"unknown_top.hcl", []string{
			`2:1: Unsupported argument; An argument named "datadir" is not expected here.`,
			`4:1: Unsupported block type; Blocks of type "frobnicate" are not expected here.`,
		}},
		{"duplicate_instance.hcl", []string{
			`5:17: Duplicate plugin instance name; "main" is already the name of storage "dir" "main" at testdata/errors/duplicate_instance.hcl:1:1; instance names are unique across protocol, storage and auth blocks.`,
		}},
		{"bad_names.hcl", []string{
			`1:10: Invalid plugin type; "DHCP": use lower-case letters, digits, "_" and "-", starting with a letter or digit.`,
			`2:15: Invalid instance name; "-disks": use lower-case letters, digits, "_" and "-", starting with a letter or digit.`,
			`3:7: Invalid image name; "Lab": use lower-case letters, digits, "_", "." and "-", starting with a letter or digit.`,
			`4:13: Unknown storage instance; No storage block is named "x".`,
			`7:8: Invalid client name; "pc_01": use lower-case letters, digits, "." and "-", starting with a letter or digit.`,
		}},
		{"plugin_attrs.hcl", []string{
			`2:12: Invalid value for "sha256"; A SHA-256 checksum is 64 hexadecimal digits.`,
			`3:12: Invalid value for "source"; The plugin source must not be empty; leave it out to use dls-storage-dir in plugin_dir.`,
			`5:21: Invalid value for "initial_delay"; initial_delay must be more than zero.`,
			`7:21: Invalid value for "max_failures"; max_failures must be at least 1.`,
			`8:21: Invalid value for "reset_after"; "soon" is not a duration such as "90s" or "1h30m".`,
			`9:5: Unsupported argument; An argument named "jitter" is not expected here.`,
			`12:3: Duplicate config block; Only one config block is allowed; the first is at testdata/errors/plugin_attrs.hcl:11:3.`,
		}},
		{"database.hcl", []string{
			`1:10: Unsupported database type; Use database "sqlite" or database "postgres", not "mysql".`,
			`2:1: Duplicate database block; Only one database block is allowed; the first is at testdata/errors/database.hcl:1:1.`,
		}},
		{"clients.hcl", []string{
			`9:13: Not a storage instance; "boot" is a protocol instance (testdata/errors/clients.hcl:2:1), not a storage instance.`,
			`12:7: Duplicate image name; Image "lab" is already declared at testdata/errors/clients.hcl:4:1.`,
			`13:13: Unknown storage instance; No storage block is named "nowhere".`,
			`23:16: Invalid value for "mac"; MAC address 52:54:00:12:34:56 already belongs to client "pc-01" (testdata/errors/clients.hcl:17:1).`,
			`25:16: Invalid value for "address"; Address 192.168.77.21 is already reserved for client "pc-01" (testdata/errors/clients.hcl:17:1).`,
			`28:16: Invalid value for "mac"; "52:54:00:zz:34:56" is not a MAC address such as "52:54:00:12:34:56".`,
			`29:16: Unknown image; No image block is named "missing".`,
			`30:16: Invalid value for "address"; "fe80::1" is not an IPv4 address.`,
			`31:41: Invalid value for "initiators"; Element 1: "pc-03" is not an iSCSI initiator name (iqn., eui. or naa.).`,
			`32:16: Incorrect attribute value type; Inappropriate value for attribute "persistent": a bool is required.`,
			`35:21: Invalid value for "mutual_secret"; The mutual CHAP secret must differ from the secret (RFC 3720).`,
			`38:8: Duplicate client name; Client "pc-01" is already declared at testdata/errors/clients.hcl:17:1.`,
		}},
		{"host.hcl", []string{
			`2:20: Invalid value for "listen"; "localhost" is not a host:port address such as "127.0.0.1:69".`,
			`3:20: Invalid value for "scrape_timeout"; The scrape timeout must be more than zero.`,
			`5:1: Duplicate http block; Only one http block is allowed; the first is at testdata/errors/host.hcl:1:1.`,
			`8:21: Invalid value for "url"; "ftp://x" is not an http:// or https:// URL such as "http://192.168.77.1:9180".`,
			`9:21: Invalid value for "iqn_prefix"; "IQN.2026-11.io.dls" is not an iSCSI qualified name prefix such as "iqn.2026-11.io.dls" (lower case).`,
			`10:21: Missing boot.default_image; unknown_clients = "register" needs default_image, the image registered clients boot.`,
			`11:21: Invalid value for "session_history"; "90d" is not a duration such as "90s" or "1h30m".`,
		}},
		{"session_lifetime.hcl", []string{
			`2:22: Invalid value for "session_lifetime"; "1d" is not a duration such as "90s" or "1h30m".`,
		}},
		{"session_short.hcl", []string{
			`2:22: Invalid value for "session_lifetime"; session_lifetime must be at least 1m (admins log in again when it ends).`,
		}},
		{"register.hcl", []string{
			`3:21: Unknown image; No image block is named "nope".`,
			`5:1: Duplicate boot block; Only one boot block is allowed; the first is at testdata/errors/register.hcl:1:1.`,
		}},
		{"register_missing.hcl", []string{
			`2:21: Missing boot.default_image; unknown_clients = "register" needs default_image, the image registered clients boot.`,
			`3:21: Invalid value for "max_registered"; max_registered must be 0 (no bound) or more.`,
			`4:21: Invalid value for "session_history"; session_history must be "0" (keep forever) or longer.`,
		}},
		{"functions.hcl", []string{
			`1:14: Error in function call; Call to function "env" failed: environment variable DLS_TEST_UNSET_VAR is not set.`,
			`2:14: Call to unknown function; There is no function named "file".`,
			`4:11: Variables not allowed; Variables may not be used here.`,
		}},
		{"syntax.hcl", []string{
			`1:23: Unclosed configuration block; There is no closing brace for this block before the end of the file. This may be caused by incorrect brace nesting elsewhere in this file.`,
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := "testdata/errors/" + tc.file
			cfg, err := load(path, noEnv)
			if err == nil {
				t.Fatalf("loaded %+v, want errors", cfg)
			}
			if cfg != nil {
				t.Error("a config came back with the error")
			}
			want := make([]string, len(tc.want))
			for i, w := range tc.want {
				want[i] = path + ":" + w
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
				t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
			}
		})
	}
}

// TestInlineErrors covers single problems with small configs written here.
func TestInlineErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"max_delay shorter", "storage \"dir\" \"d\" {\n  restart {\n    initial_delay = \"1m\"\n  }\n}\n",
			`3:21: Invalid value for "initial_delay"; max_delay (30s) is shorter than initial_delay (1m0s).`},
		{"max_delay shorter, both set", "storage \"dir\" \"d\" {\n  restart {\n    initial_delay = \"2s\"\n    max_delay = \"1s\"\n  }\n}\n",
			`4:17: Invalid value for "max_delay"; max_delay (1s) is shorter than initial_delay (2s).`},
		{"fraction", "storage \"dir\" \"d\" {\n  restart {\n    max_failures = 1.5\n  }\n}\n",
			`3:20: Invalid value for "max_failures"; max_failures must be a whole number: value must be a whole number, between -9223372036854775808 and 9223372036854775807.`},
		{"sqlite sync", "database \"sqlite\" {\n  sync = \"fast\"\n}\n",
			`2:10: Invalid value for "sync"; sync is "full" (every commit synced to disk, the default) or "normal" (survives a crash of DLS, not a power cut), not "fast".`},
		{"postgres without dsn", "database \"postgres\" {}\n",
			`1:21: Missing required argument; The argument "dsn" is required, but no definition was found.`},
		{"empty data_dir", "data_dir = \"\"\n",
			`1:12: Invalid value for "data_dir"; The path must not be empty.`},
		{"wrong type", "data_dir = [\"a\"]\n",
			`1:12: Incorrect attribute value type; Inappropriate value for attribute "data_dir": string required, but have tuple.`},
		{"image boot without kernel", "storage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x.img\"\n  boot {\n    confirm = true\n  }\n}\n",
			`5:8: Missing required argument; The argument "kernel" is required, but no definition was found.`},
		{"image boot bad loader", "storage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x.img\"\n  boot {\n    kernel = \"k\"\n    loader = \"grub\"\n  }\n}\n",
			`7:14: Invalid value for "loader"; loader must be "ipxe" (iPXE, the default) or "shim" (shim, GRUB and a signed kernel, for Secure Boot), not "grub".`},
		{"image without storage", "image \"x\" {\n  source = \"x.img\"\n}\n",
			`1:11: Missing required argument; The argument "storage" is required, but no definition was found.`},
		{"plugin block without labels", "storage \"dir\" {}\n",
			`1:15: Missing name for storage; All storage blocks must have 2 labels (type, name).`},
		{"port out of range", "http {\n  listen = \"127.0.0.1:70000\"\n}\n",
			`2:12: Invalid value for "listen"; "127.0.0.1:70000": the port "70000" is not a number from 0 to 65535.`},
		{"chap without secret", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  chap {}\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`4:8: Missing required argument; The argument "secret" is required, but no definition was found.`},
		{"chap secret too short", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  chap {\n    secret = \"elevenchars\"\n  }\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`5:14: Invalid value for "secret"; The CHAP secret is 11 characters long; CHAP secrets need at least 12.`},
		{"chap mutual secret too short", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  chap {\n    secret = \"twelve-chars\"\n    mutual_secret = \"short\"\n  }\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`6:21: Invalid value for "mutual_secret"; The mutual CHAP secret is 5 characters long; CHAP secrets need at least 12.`},
		{"chap empty secret", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  chap {\n    secret = \"\"\n  }\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`5:14: Invalid value for "secret"; The CHAP secret must not be empty; leave the chap block out to have DLS generate one.`},
		{"extra_addresses not an address", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  extra_addresses = [\"10.0.0.5\", \"10.0.0.256\"]\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`4:34: Invalid value for "extra_addresses"; Element 1: "10.0.0.256" is not an IP address such as "10.0.0.5" (no zone).`},
		{"extra_addresses with zone", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  extra_addresses = [\"fe80::1%eth0\"]\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`4:22: Invalid value for "extra_addresses"; Element 0: "fe80::1%eth0" is not an IP address such as "10.0.0.5" (no zone).`},
		{"unknown_clients bad value", "boot {\n  unknown_clients = \"enlist\"\n}\n",
			`2:21: Invalid value for "unknown_clients"; Use "ignore", "register" or "discover", not "enlist".`},
		{"max_discovered negative", "boot {\n  unknown_clients = \"discover\"\n  max_discovered = -1\n}\n",
			`3:20: Invalid value for "max_discovered"; max_discovered must be 0 (no bound) or more.`},
		{"labels not a map", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  labels = [\"r1\"]\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`4:12: Incorrect attribute value type; Inappropriate value for attribute "labels": map of string required.`},
		{"labels reserved key", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  labels = { room = \"r1\", \"dls.origin\" = \"api\" }\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`4:42: Invalid value for "labels"; Label key "dls.origin": keys starting with "dls." are the host's own.`},
		{"labels key too long", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  labels = {\n    aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa = \"x\"\n  }\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`5:72: Invalid value for "labels"; Label key "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa": want 1-63 characters.`},
		{"extra_addresses not a list", "client \"c\" {\n  mac = \"52:54:00:00:00:01\"\n  image = \"x\"\n  extra_addresses = \"10.0.0.5\"\n}\nstorage \"dir\" \"d\" {}\nimage \"x\" {\n  storage = \"d\"\n  source = \"x\"\n}\n",
			`4:21: Incorrect attribute value type; Inappropriate value for attribute "extra_addresses": list of string required, but have string.`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.text)
			_, err := load(path, noEnv)
			if err == nil {
				t.Fatal("loaded, want an error")
			}
			if got := strings.TrimPrefix(err.Error(), path+":"); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestDiscover: unknown_clients = "discover" needs no default image;
// max_discovered bounds it.
func TestDiscover(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, "boot {\n  unknown_clients = \"discover\"\n  max_discovered = 64\n}\n"))
	if cfg.Boot.UnknownClients != UnknownClientsDiscover || cfg.Boot.MaxDiscovered != 64 {
		t.Errorf("boot = %+v", cfg.Boot)
	}
}

func TestClients(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, `
storage "dir" "d" {}
image "lab" {
  storage = "d"
  source  = "lab.img"
  boot {
    kernel  = "lab/vmlinuz"
    initrd  = "lab/initrd.img"
    cmdline = "root=/dev/sda rw"
    confirm = true
  }
}
boot {
  unknown_clients = "register"
  default_image   = "lab"
}
client "pc-01" {
  mac        = "52-54-00-AB-CD-EF"
  image      = "lab"
  initiators = ["iqn.1991-05.com.microsoft:pc-01"]
  extra_addresses = ["10.0.0.5", "fd00::5", "::ffff:10.0.0.6", "10.0.0.5"]
  persistent = false
  chap {
    secret        = "twelve-chars"
    mutual_secret = "other-secret"
  }
}
client "pc-02" {
  mac   = "5254.00ab.cdee"
  image = "lab"
  labels = { room = "r1", ring = "canary" }
}
`))
	want := &ImageBoot{Kernel: "lab/vmlinuz", Initrd: "lab/initrd.img", Cmdline: "root=/dev/sda rw", Confirm: true, Loader: LoaderIPXE}
	if !reflect.DeepEqual(cfg.Images[0].Boot, want) {
		t.Errorf("image boot = %+v", cfg.Images[0].Boot)
	}
	if cfg.Boot.UnknownClients != UnknownClientsRegister || cfg.Boot.DefaultImage != "lab" || cfg.Boot.MaxRegistered != DefaultMaxRegistered {
		t.Errorf("boot = %+v", cfg.Boot)
	}
	c1, c2 := cfg.Clients[0], cfg.Clients[1]
	if c1.MAC != "52:54:00:ab:cd:ef" || c1.Persistent || c1.Address != "" ||
		!reflect.DeepEqual(c1.Initiators, []string{"iqn.1991-05.com.microsoft:pc-01"}) ||
		!reflect.DeepEqual(c1.CHAP, &CHAP{Secret: "twelve-chars", MutualSecret: "other-secret"}) {
		t.Errorf("pc-01 = %+v", c1)
	}
	if want := map[string]string{"room": "r1", "ring": "canary"}; !reflect.DeepEqual(c2.Labels, want) || c1.Labels != nil {
		t.Errorf("labels: pc-01 %v, pc-02 %v, want none and %v", c1.Labels, c2.Labels, want)
	}
	if want := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::5"), netip.MustParseAddr("10.0.0.6")}; !reflect.DeepEqual(c1.ExtraAddresses, want) {
		t.Errorf("pc-01 extra_addresses = %v, want %v", c1.ExtraAddresses, want)
	}
	if c2.MAC != "52:54:00:ab:cd:ee" || !c2.Persistent || c2.Initiators != nil {
		t.Errorf("pc-02 = %+v", c2)
	}
	if c2.ExtraAddresses != nil {
		t.Errorf("pc-02 extra_addresses = %v, want none", c2.ExtraAddresses)
	}
	if c2.DeclRange.Start.Line != 28 {
		t.Errorf("pc-02 declared at %v", c2.DeclRange)
	}
}

func TestStartOrder(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, `
protocol "dhcp" "lan" {}
auth "local" "admins" {}
protocol "tftp" "boot" {}
storage "zfs" "tank" {}
storage "dir" "scratch" {}
`))
	if got, want := names(cfg.Plugins), []string{
		"protocol/dhcp/lan", "auth/local/admins", "protocol/tftp/boot", "storage/zfs/tank", "storage/dir/scratch",
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("file order = %v", got)
	}
	if got, want := names(cfg.StartOrder()), []string{
		"auth/local/admins", "storage/zfs/tank", "storage/dir/scratch", "protocol/dhcp/lan", "protocol/tftp/boot",
	}; !reflect.DeepEqual(got, want) {
		t.Errorf("start order = %v, want %v", got, want)
	}
	if cfg.Plugin("tank").Kind != KindStorage || cfg.Plugin("nope") != nil {
		t.Error("Plugin lookup")
	}
}

func TestFormatDiagnostics(t *testing.T) {
	at := func(line, col int) *hcl.Range {
		return &hcl.Range{Filename: "dls.hcl", Start: hcl.Pos{Line: line, Column: col}, End: hcl.Pos{Line: line, Column: col + 1}}
	}
	diags := hcl.Diagnostics{
		{Severity: hcl.DiagWarning, Summary: "a warning", Subject: at(1, 1)},
		{Severity: hcl.DiagError, Summary: "second", Detail: "with detail.", Subject: at(7, 3)},
		{Severity: hcl.DiagError, Summary: "no position"},
		{Severity: hcl.DiagError, Summary: "first", Subject: at(2, 10)},
		{Severity: hcl.DiagError, Summary: "first", Subject: at(2, 10)},
		{Severity: hcl.DiagError, Summary: "other file", Subject: &hcl.Range{Filename: "a.hcl", Start: hcl.Pos{Line: 9, Column: 1}}},
		nil,
	}
	want := "a.hcl:9:1: other file\ndls.hcl:2:10: first\ndls.hcl:7:3: second; with detail.\nno position"
	if err := FormatDiagnostics(diags); err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	if err := FormatDiagnostics(diags[:1]); err != nil {
		t.Errorf("warnings only: %v", err)
	}
	if err := FormatDiagnostics(nil); err != nil {
		t.Errorf("nil: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/nope.hcl")
	if err == nil || !strings.Contains(err.Error(), "load config: open testdata/nope.hcl: no such file or directory") {
		t.Errorf("got %v", err)
	}
}

// TestSessionLifetime: http.session_lifetime is read as a duration.
func TestSessionLifetime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dls.hcl")
	if err := os.WriteFile(path, []byte("http {\n  session_lifetime = \"8h30m\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, path)
	if cfg.HTTP.SessionLifetime != 8*time.Hour+30*time.Minute {
		t.Errorf("session_lifetime = %s, want 8h30m", cfg.HTTP.SessionLifetime)
	}
}

// TestDatabaseSync: SQLite syncs every commit unless sync = "normal".
func TestDatabaseSync(t *testing.T) {
	for text, want := range map[string]string{
		"":                         SyncFull,
		"database \"sqlite\" {}\n": SyncFull,
		"database \"sqlite\" {\n  sync = \"normal\"\n}\n": SyncNormal,
		"database \"sqlite\" {\n  sync = \"full\"\n}\n":   SyncFull,
	} {
		cfg, err := Load(writeConfig(t, text))
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		if cfg.Database.Sync != want {
			t.Errorf("%q: sync %q, want %q", text, cfg.Database.Sync, want)
		}
	}
}

func TestImageLoader(t *testing.T) {
	cfg := mustLoad(t, writeConfig(t, `storage "dir" "d" {}
image "plain" {
  storage = "d"
  source  = "p.img"
  boot {
    kernel = "k"
  }
}
image "signed" {
  storage = "d"
  source  = "s.img"
  boot {
    kernel = "k"
    loader = "shim"
  }
}
`))
	got := map[string]string{}
	for _, im := range cfg.Images {
		got[im.Name] = im.Boot.Loader
	}
	if got["plain"] != LoaderIPXE || got["signed"] != LoaderShim {
		t.Errorf("loaders = %v, want plain %q (the default), signed %q", got, LoaderIPXE, LoaderShim)
	}
}
