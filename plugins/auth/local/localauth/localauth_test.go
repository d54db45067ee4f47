package localauth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/auth/local/localauth"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/plugintest"
)

// fastConfig makes hashes cheap: tests hash hundreds of passwords.
var fastConfig = map[string]any{"hash_memory_kib": 64, "hash_iterations": 1, "hash_parallelism": 1}

func start(t *testing.T, dataDir string) (*plugintest.Harness, *plugintest.AuthClient) {
	t.Helper()
	h := plugintest.Start(t, localauth.New(), plugintest.WithDataDir(dataDir), plugintest.WithConfig(fastConfig))
	return h, h.Auth()
}

func mustCreate(t *testing.T, c *plugintest.AuthClient, name, password string, groups ...string) {
	t.Helper()
	if err := c.CreateUser(context.Background(), name, password, groups); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
}

func wantInvalid(t *testing.T, c *plugintest.AuthClient, name, password string) error {
	t.Helper()
	id, err := c.Verify(context.Background(), name, password)
	if !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Fatalf("Verify(%q, %q) = %+v, %v; want ErrInvalidCredentials", name, password, id, err)
	}
	return err
}

func wantValid(t *testing.T, c *plugintest.AuthClient, name, password string, groups ...string) {
	t.Helper()
	id, err := c.Verify(context.Background(), name, password)
	if err != nil {
		t.Fatalf("Verify(%q): %v", name, err)
	}
	if id.Username != name || !slices.Equal(id.Groups, groups) {
		t.Fatalf("Verify(%q) = %+v, want user %s in groups %v", name, id, name, groups)
	}
}

func TestInfo(t *testing.T) {
	h, _ := start(t, t.TempDir())
	if h.Info.Kind != "auth" || h.Info.Type != "local" {
		t.Errorf("info = %+v", h.Info)
	}
	if !slices.Contains(h.Info.Capabilities, auth.CapabilityUserAdmin) {
		t.Errorf("capabilities %v lack %s", h.Info.Capabilities, auth.CapabilityUserAdmin)
	}
}

func TestVerify(t *testing.T) {
	_, c := start(t, t.TempDir())
	mustCreate(t, c, "alice", "correct horse battery", "admin", "operator")

	wantValid(t, c, "alice", "correct horse battery", "admin", "operator")
	wrong := wantInvalid(t, c, "alice", "correct horse batterY")
	unknown := wantInvalid(t, c, "mallory", "correct horse battery")
	// Same answer for a wrong password and an unknown user, but for the name.
	if a, b := strings.ReplaceAll(wrong.Error(), "alice", "X"), strings.ReplaceAll(unknown.Error(), "mallory", "X"); a != b {
		t.Errorf("errors differ:\n wrong password: %s\n unknown user:   %s", a, b)
	}
	wantInvalid(t, c, "alice", "")
	wantInvalid(t, c, "", "")
	wantInvalid(t, c, "", "correct horse battery")
	wantInvalid(t, c, "Alice", "correct horse battery")
	wantInvalid(t, c, "alice ", "correct horse battery")
	wantInvalid(t, c, "alice", strings.Repeat("x", 100000))
	wantInvalid(t, c, "../alice", "correct horse battery")
}

func TestUserAdmin(t *testing.T) {
	h, c := start(t, t.TempDir())
	ctx := context.Background()

	if users, err := c.ListUsers(ctx); err != nil || len(users) != 0 {
		t.Fatalf("fresh plugin: ListUsers = %v, %v", users, err)
	}
	mustCreate(t, c, "root", "first-password-1", "admin")
	mustCreate(t, c, "ops.team_1", "second-password-2", "operator", "viewer", "operator")
	mustCreate(t, c, "guest", "third-password-3")

	if err := c.CreateUser(ctx, "root", "another-password", []string{"viewer"}); !errors.Is(err, auth.ErrUserExists) {
		t.Errorf("create existing user: %v, want ErrUserExists", err)
	}
	users, err := c.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []auth.Identity{
		{Username: "guest"},
		{Username: "ops.team_1", Groups: []string{"operator", "viewer"}},
		{Username: "root", Groups: []string{"admin"}},
	}
	if fmt.Sprint(users) != fmt.Sprint(want) {
		t.Errorf("ListUsers = %v, want %v", users, want)
	}

	if err := c.SetPassword(ctx, "root", "new-password-99"); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, c, "root", "first-password-1")
	wantValid(t, c, "root", "new-password-99", "admin")

	if err := c.DeleteUser(ctx, "guest"); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, c, "guest", "third-password-3")
	if err := c.DeleteUser(ctx, "guest"); !errors.Is(err, auth.ErrUserNotFound) {
		t.Errorf("delete deleted user: %v, want ErrUserNotFound", err)
	}
	if err := c.SetPassword(ctx, "guest", "whatever-password"); !errors.Is(err, auth.ErrUserNotFound) {
		t.Errorf("set password of deleted user: %v, want ErrUserNotFound", err)
	}
	if err := c.SetPassword(ctx, "No Such", "whatever-password"); !errors.Is(err, auth.ErrUserNotFound) {
		t.Errorf("set password of invalid name: %v, want ErrUserNotFound", err)
	}

	// The users survive a restart.
	h.Stop()
	_, c2 := start(t, h.DataDir)
	wantValid(t, c2, "root", "new-password-99", "admin")
	wantValid(t, c2, "ops.team_1", "second-password-2", "operator", "viewer")
}

func TestPolicy(t *testing.T) {
	_, c := start(t, t.TempDir())
	ctx := context.Background()
	for _, tc := range []struct {
		name, user, password string
		groups               []string
		want                 string
	}{
		{"empty name", "", "long-enough-password", nil, "empty name"},
		{"upper case", "Alice", "long-enough-password", nil, "only a-z"},
		{"space", "al ice", "long-enough-password", nil, "only a-z"},
		{"slash", "../etc", "long-enough-password", nil, "only a-z"},
		{"unicode", "alicé", "long-enough-password", nil, "only a-z"},
		{"65 chars", strings.Repeat("a", 65), "long-enough-password", nil, "longer than 64"},
		{"short password", "bob", "elevenchars", nil, "too short: 11 characters, at least 12"},
		{"empty password", "bob", "", nil, "too short"},
		{"multibyte short", "bob", "ééééééééééé", nil, "too short: 11 characters"},
		{"long password", "bob", strings.Repeat("p", 1025), nil, "too long"},
		{"password is name", "bobbobbobbob", "BOBBOBBOBBOB", nil, "must not be the user name"},
		{"bad group", "bob", "long-enough-password", []string{"Admins"}, "group: name \"Admins\""},
		{"empty group", "bob", "long-enough-password", []string{""}, "group: empty name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.CreateUser(ctx, tc.user, tc.password, tc.groups)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("CreateUser(%q, %q, %q) = %v, want an error containing %q", tc.user, tc.password, tc.groups, err, tc.want)
			}
		})
	}
	mustCreate(t, c, strings.Repeat("a", 64), "twelve-chars")
	mustCreate(t, c, "unicode", "éééééééééééé")
	if err := c.SetPassword(ctx, "unicode", "short"); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Errorf("SetPassword short: %v", err)
	}
	wantValid(t, c, "unicode", "éééééééééééé")
	if users, _ := c.ListUsers(ctx); len(users) != 2 {
		t.Errorf("refused users were stored: %v", users)
	}
}

func TestMinPasswordLengthConfig(t *testing.T) {
	cfg := map[string]any{"min_password_length": 20}
	for k, v := range fastConfig {
		cfg[k] = v
	}
	h := plugintest.Start(t, localauth.New(), plugintest.WithConfig(cfg))
	err := h.Auth().CreateUser(context.Background(), "bob", "nineteen-characters", nil)
	if err == nil || !strings.Contains(err.Error(), "at least 20") {
		t.Fatalf("19 characters with min_password_length 20: %v", err)
	}
	mustCreate(t, h.Auth(), "bob", "twenty-characters!!!")
}

func TestUsersFile(t *testing.T) {
	dir := t.TempDir()
	_, c := start(t, dir)
	mustCreate(t, c, "alice", "correct horse battery", "admin")

	path := filepath.Join(dir, "users.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "correct horse") {
		t.Error("users file holds the password in clear")
	}
	if !strings.Contains(string(data), `"hash": "$argon2id$v=19$m=64,t=1,p=1$`) {
		t.Errorf("users file has no PHC argon2id hash:\n%s", data)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
	// A file made readable by others is rewritten 0600 at the next change.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, c, "bob", "correct horse battery")
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("after a change: mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestFileOption(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(t.TempDir(), "etc", "dls-users.json")
	cfg := map[string]any{"file": abs}
	for k, v := range fastConfig {
		cfg[k] = v
	}
	h := plugintest.Start(t, localauth.New(), plugintest.WithDataDir(dir), plugintest.WithConfig(cfg))
	mustCreate(t, h.Auth(), "alice", "correct horse battery")
	if _, err := os.Stat(abs); err != nil {
		t.Errorf("absolute file: %v", err)
	}
	cfg["file"] = "sub/users.json"
	h2 := plugintest.Start(t, localauth.New(), plugintest.WithDataDir(dir), plugintest.WithConfig(cfg))
	mustCreate(t, h2.Auth(), "alice", "correct horse battery")
	if _, err := os.Stat(filepath.Join(dir, "sub", "users.json")); err != nil {
		t.Errorf("relative file: %v", err)
	}
}

// TestReloadAfterExternalChange is `dls user add` while the host runs: a
// second instance of the plugin (the CLI's) changes the file, and the
// host's instance sees it at the next Verify.
func TestReloadAfterExternalChange(t *testing.T) {
	dir := t.TempDir()
	hostH, host := start(t, dir)
	_, cli := start(t, dir)

	wantInvalid(t, host, "alice", "correct horse battery")
	mustCreate(t, cli, "alice", "correct horse battery", "admin")
	wantValid(t, host, "alice", "correct horse battery", "admin")

	if err := cli.SetPassword(context.Background(), "alice", "second horse battery"); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, host, "alice", "correct horse battery")
	wantValid(t, host, "alice", "second horse battery", "admin")

	if err := cli.DeleteUser(context.Background(), "alice"); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, host, "alice", "second horse battery")

	// The host's own change does not lose the CLI's.
	mustCreate(t, cli, "bob", "correct horse battery")
	mustCreate(t, host, "carol", "correct horse battery")
	users, err := cli.ListUsers(context.Background())
	if err != nil || len(users) != 2 {
		t.Errorf("after changes from both: %v, %v", users, err)
	}
	if got := hostH.MetricValue(t, "dls_auth_users"); got != 2 {
		t.Errorf("dls_auth_users = %v, want 2", got)
	}

	// The file removed: no users.
	if err := os.Remove(filepath.Join(dir, "users.json")); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, host, "bob", "correct horse battery")
}

// TestConcurrentWriters: two plugin instances (host and CLI) creating users
// at the same time lose none of them.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	_, a := start(t, dir)
	_, b := start(t, dir)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		for j, c := range []*plugintest.AuthClient{a, b} {
			wg.Go(func() {
				errs <- c.CreateUser(context.Background(), fmt.Sprintf("user-%d-%d", j, i), "correct horse battery", nil)
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, c := range []*plugintest.AuthClient{a, b} {
		users, err := c.ListUsers(context.Background())
		if err != nil || len(users) != 40 {
			t.Errorf("ListUsers: %d users, %v; want 40", len(users), err)
		}
	}
}

func TestConcurrentVerify(t *testing.T) {
	_, c := start(t, t.TempDir())
	mustCreate(t, c, "alice", "correct horse battery", "admin")
	mustCreate(t, c, "bob", "correct horse battery", "viewer")
	ctx := context.Background()
	var wg sync.WaitGroup
	fail := make(chan string, 200)
	for i := range 50 {
		wg.Go(func() {
			if _, err := c.Verify(ctx, "alice", "correct horse battery"); err != nil {
				fail <- fmt.Sprintf("good password %d: %v", i, err)
			}
		})
		wg.Go(func() {
			if _, err := c.Verify(ctx, "bob", "wrong"); !errors.Is(err, auth.ErrInvalidCredentials) {
				fail <- fmt.Sprintf("wrong password %d: %v", i, err)
			}
		})
		wg.Go(func() {
			if _, err := c.Verify(ctx, fmt.Sprintf("nobody%d", i), "x"); !errors.Is(err, auth.ErrInvalidCredentials) {
				fail <- fmt.Sprintf("unknown user %d: %v", i, err)
			}
		})
		if i%10 == 0 {
			wg.Go(func() {
				if err := c.CreateUser(ctx, fmt.Sprintf("new%d", i), "correct horse battery", nil); err != nil {
					fail <- fmt.Sprintf("create %d: %v", i, err)
				}
			})
		}
	}
	wg.Wait()
	close(fail)
	for f := range fail {
		t.Error(f)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  map[string]any
		path string
	}{
		{"empty file", map[string]any{"file": ""}, "file"},
		{"short minimum", map[string]any{"min_password_length": 4}, "min_password_length"},
		{"huge minimum", map[string]any{"min_password_length": 5000}, "min_password_length"},
		{"no memory", map[string]any{"hash_memory_kib": 4}, "hash_memory_kib"},
		{"memory below lanes", map[string]any{"hash_memory_kib": 16, "hash_parallelism": 4}, "hash_memory_kib"},
		{"too much memory", map[string]any{"hash_memory_kib": 1 << 30}, "hash_memory_kib"},
		{"no passes", map[string]any{"hash_iterations": 0}, "hash_iterations"},
		{"no lanes", map[string]any{"hash_parallelism": 0}, "hash_parallelism"},
		{"too many lanes", map[string]any{"hash_parallelism": 256}, "hash_parallelism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := plugintest.Start(t, localauth.New(), plugintest.WithoutConfigure())
			errs, err := h.Configure(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(errs) == 0 {
				t.Fatalf("config %v accepted", tc.cfg)
			}
			if errs[0].Path != tc.path {
				t.Errorf("config %v: error %q at %q, want at %q", tc.cfg, errs[0].Message, errs[0].Path, tc.path)
			}
		})
	}
}

func TestCorruptFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users.json")
	for _, tc := range []struct{ name, content, want string }{
		{"not json", "alice:secret\n", "not a users file"},
		{"version", `{"version": 2, "users": []}`, "format version 2"},
		{"unknown field", `{"version": 1, "users": [], "admins": []}`, "unknown field"},
		{"bad hash", `{"version": 1, "users": [{"name": "alice", "hash": "secret", "groups": []}]}`, `user "alice": password hash`},
		{"bad name", `{"version": 1, "users": [{"name": "Alice", "hash": "", "groups": []}]}`, "only a-z"},
		{"duplicate", `{"version": 1, "users": [{"name": "a", "hash": "` + validHash(t) + `"}, {"name": "a", "hash": "` + validHash(t) + `"}]}`, "listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			h := plugintest.Start(t, localauth.New(), plugintest.WithDataDir(dir), plugintest.WithoutConfigure())
			errs, err := h.Configure(fastConfig)
			if err != nil {
				t.Fatal(err)
			}
			if len(errs) != 1 || errs[0].Path != "file" || !strings.Contains(errs[0].Message, tc.want) {
				t.Errorf("config errors %v, want one at file containing %q", errs, tc.want)
			}
		})
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("empty file is no users", func(t *testing.T) {
		_, c := start(t, dir)
		if users, err := c.ListUsers(context.Background()); err != nil || len(users) != 0 {
			t.Errorf("ListUsers = %v, %v", users, err)
		}
	})

	// Damaged while running: Verify fails, but not as invalid credentials
	// (the host must not count it as a wrong password), and Health says so.
	t.Run("damaged at run time", func(t *testing.T) {
		h, c := start(t, t.TempDir())
		mustCreate(t, c, "alice", "correct horse battery")
		if err := os.WriteFile(filepath.Join(h.DataDir, "users.json"), []byte("{garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := c.Verify(context.Background(), "alice", "correct horse battery")
		if err == nil || errors.Is(err, auth.ErrInvalidCredentials) || !strings.Contains(err.Error(), "users file") {
			t.Errorf("Verify with a damaged file: %v", err)
		}
		if err := h.Base.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "users file") {
			t.Errorf("Health = %v, want an error about the users file", err)
		}
		if got := h.MetricValue(t, "dls_auth_plugin_verifications_total", "error"); got != 1 {
			t.Errorf("verifications{error} = %v, want 1", got)
		}
	})
}

func validHash(t *testing.T) string {
	h, err := localauth.NewHash("x", localauth.Params{Memory: 64, Iterations: 1, Parallelism: 1})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// TestHandEditedFile: an admin may write a user with a hash made by
// another argon2id tool; the running plugin picks it up.
func TestHandEditedFile(t *testing.T) {
	h, c := start(t, t.TempDir())
	// The argon2 reference CLI's output for "correct horse battery staple".
	doc := `{"version": 1, "users": [{"name": "ref", "groups": ["admin"],
		"hash": "$argon2id$v=19$m=1024,t=2,p=2$ZGxzLXRlc3Qtc2FsdC0xNg$mrLBb5v8YM/GgBv07FsCm6VamsIvI4O8RnotM7fT45s"}]}`
	time.Sleep(10 * time.Millisecond) // a different mtime even on coarse clocks
	if err := os.WriteFile(filepath.Join(h.DataDir, "users.json"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	wantValid(t, c, "ref", "correct horse battery staple", "admin")
	wantInvalid(t, c, "ref", "correct horse battery")
}

func TestMetrics(t *testing.T) {
	h, c := start(t, t.TempDir())
	mustCreate(t, c, "alice", "correct horse battery")
	wantValid(t, c, "alice", "correct horse battery")
	wantInvalid(t, c, "alice", "nope")
	wantInvalid(t, c, "bob", "nope")
	for result, want := range map[string]float64{"ok": 1, "invalid": 2, "error": 0} {
		if got := h.MetricValue(t, "dls_auth_plugin_verifications_total", result); got != want {
			t.Errorf("verifications{%s} = %v, want %v", result, got, want)
		}
	}
	s, ok := h.MetricSample(t, "dls_auth_plugin_verify_duration_seconds")
	if !ok || s.Count != 3 {
		t.Errorf("verify duration: %+v, %v", s, ok)
	}
	if got := h.MetricValue(t, "dls_auth_users"); got != 1 {
		t.Errorf("dls_auth_users = %v", got)
	}
}

// TestDefaults runs the plugin as `dls user add` does: only a data dir,
// the default (RFC 9106) hash parameters.
func TestDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes with 64 MiB")
	}
	h := plugintest.Start(t, localauth.New())
	mustCreate(t, h.Auth(), "admin", "a-long-admin-password", "admin")
	wantValid(t, h.Auth(), "admin", "a-long-admin-password", "admin")
	data, err := os.ReadFile(filepath.Join(h.DataDir, "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Errorf("default parameters not used:\n%s", data)
	}
}

// TestLookup: the host's instance answers a user's current groups without
// a password, and a user deleted (or regrouped) by another instance, the
// CLI's, as soon as the file changed.
func TestLookup(t *testing.T) {
	dir := t.TempDir()
	hostH, host := start(t, dir)
	_, cli := start(t, dir)
	ctx := context.Background()

	if id, err := host.Lookup(ctx, "alice"); !errors.Is(err, auth.ErrUserNotFound) {
		t.Fatalf("Lookup of an unknown user = %+v, %v; want ErrUserNotFound", id, err)
	}
	mustCreate(t, cli, "alice", "correct horse battery", "admin")
	id, err := host.Lookup(ctx, "alice")
	if err != nil || id.Username != "alice" || !slices.Equal(id.Groups, []string{"admin"}) {
		t.Fatalf("Lookup(alice) = %+v, %v; want alice in [admin]", id, err)
	}

	// Demoted by hand in the file, as an admin without a groups command does.
	users, err := os.ReadFile(filepath.Join(dir, "users.json"))
	if err != nil {
		t.Fatal(err)
	}
	demoted := strings.Replace(string(users), `"admin"`, `"viewer"`, 1)
	if demoted == string(users) {
		t.Fatalf("users file holds no \"admin\" group: %s", users)
	}
	time.Sleep(10 * time.Millisecond) // a different mtime even on coarse clocks
	if err := os.WriteFile(filepath.Join(dir, "users.json"), []byte(demoted), 0o600); err != nil {
		t.Fatal(err)
	}
	if id, err := host.Lookup(ctx, "alice"); err != nil || !slices.Equal(id.Groups, []string{"viewer"}) {
		t.Fatalf("Lookup(alice) after demotion = %+v, %v; want [viewer]", id, err)
	}

	if err := cli.DeleteUser(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if id, err := host.Lookup(ctx, "alice"); !errors.Is(err, auth.ErrUserNotFound) {
		t.Fatalf("Lookup after delete = %+v, %v; want ErrUserNotFound", id, err)
	}

	// An unreadable file is a failure, never "not found": the host must
	// not end sessions because of a damaged file.
	if err := os.WriteFile(filepath.Join(hostH.DataDir, "users.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := host.Lookup(ctx, "alice"); err == nil || errors.Is(err, auth.ErrUserNotFound) {
		t.Errorf("Lookup with a damaged file = %v; want a failure other than ErrUserNotFound", err)
	}
}
