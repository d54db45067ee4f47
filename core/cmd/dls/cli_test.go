package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/api"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/storage"
)

// The API commands run in-process against an httptest server serving the
// real core/api handler over a real SQLite store, with fake auth, storage
// and Wake-on-LAN.

// testHost is one host's API.
type testHost struct {
	t     *testing.T
	url   string
	store *sqlite.Store
	clock *testClock
	stor  *fakeStorage
	waker *fakeWaker
	// uploads is the API's upload folder.
	uploads string
	// env is what the CLI sees of the environment: its own config dir,
	// DLS_SERVER pointing here.
	env map[string]string
}

var cliUsers = map[string]struct {
	password string
	groups   []string
}{
	"alice": {"alice-pw", []string{"admin"}},
	"oscar": {"oscar-pw", []string{"operator"}},
	"vera":  {"vera-pw", []string{"viewer"}},
}

func newTestHost(t *testing.T) *testHost {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &testHost{t: t, store: st, clock: &testClock{now: time.Now().UTC().Truncate(time.Second)}, waker: &fakeWaker{}}
	h.stor = &fakeStorage{versions: map[string][]storage.Version{}, now: h.clock.Now}
	if err := st.PutImage(ctx, store.Image{Name: "win11", Storage: "tank", Source: "/img/win11.raw", Origin: "config"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.stor.ImportImage(ctx, storage.ImportRequest{Image: "win11", Source: "/img/win11.raw"}); err != nil {
		t.Fatal(err)
	}
	a, err := api.New(ctx, api.Deps{
		Store: st,
		Authenticators: func() []api.NamedAuthenticator {
			return []api.NamedAuthenticator{{Name: "local", Authenticator: fakeAuth{}}}
		},
		Storage: h.stor,
		Plugins: func() []supervisor.Status {
			return []supervisor.Status{
				{Name: "tank", Kind: "storage", Type: "dir", Version: "1.0.0", State: "running", Healthy: true},
				{Name: "local", Kind: "auth", Type: "local", Version: "1.0.0", State: "running", Healthy: true},
			}
		},
		Waker: h.waker,
		Clock: h.clock,
	}, api.Options{KeyFile: filepath.Join(dir, "api-token.key"), UploadDir: filepath.Join(dir, "uploads")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	h.url = srv.URL
	h.uploads = filepath.Join(dir, "uploads")
	h.env = map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, "config"), "DLS_SERVER": srv.URL, "HOME": dir}
	return h
}

// dls runs an API command in-process.
func (h *testHost) dls(stdin string, args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	var o, e bytes.Buffer
	c := &cli{stdin: strings.NewReader(stdin), stdout: &o, stderr: &e, getenv: func(k string) string { return h.env[k] }, now: h.clock.Now}
	code = c.run(context.Background(), args[0], args[1:])
	return o.String(), e.String(), code
}

// ok runs a command that must succeed and returns its output.
func (h *testHost) ok(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.dls("", args...)
	if code != 0 {
		h.t.Fatalf("dls %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails runs a command that must exit with code and mention msg on
// standard error.
func (h *testHost) fails(code int, msg string, args ...string) {
	h.t.Helper()
	out, errOut, got := h.dls("", args...)
	if got != code || !strings.Contains(errOut, msg) {
		h.t.Fatalf("dls %s: exit %d, stderr %q (stdout %q); want exit %d mentioning %q", strings.Join(args, " "), got, errOut, out, code, msg)
	}
}

func (h *testHost) login(user string) {
	h.t.Helper()
	out, errOut, code := h.dls(cliUsers[user].password+"\n", "login", "--user", user, "--password-stdin")
	if code != 0 {
		h.t.Fatalf("login %s: exit %d: %s%s", user, code, out, errOut)
	}
}

func (h *testHost) creds() credentials {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.env["XDG_CONFIG_HOME"], "dls", "credentials.json"))
	if err != nil {
		h.t.Fatal(err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		h.t.Fatal(err)
	}
	return c
}

func TestLoginStoresCredentialsAndRefreshes(t *testing.T) {
	h := newTestHost(t)
	out, errOut, code := h.dls("alice-pw\n", "login", "--user", "alice", "--password-stdin")
	if code != 0 || !strings.Contains(out, "logged in to "+h.url+" as alice (admin)") {
		t.Fatalf("login: exit %d: %s%s", code, out, errOut)
	}
	path := filepath.Join(h.env["XDG_CONFIG_HOME"], "dls", "credentials.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %04o, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("credentials dir mode %04o, want 0700", di.Mode().Perm())
	}
	c1 := h.creds()
	if c1.Server != h.url || c1.AccessToken == "" || c1.RefreshToken == "" || !c1.Expiry.Equal(h.clock.Now().Add(15*time.Minute)) {
		t.Fatalf("credentials %+v", c1)
	}
	h.ok("client", "list")
	if c := h.creds(); c.RefreshToken != c1.RefreshToken {
		t.Fatal("refreshed a token that had not expired")
	}

	// Expired: refreshed before the request, the refresh token rotated.
	h.clock.Add(16 * time.Minute)
	h.ok("client", "list")
	c2 := h.creds()
	if c2.RefreshToken == c1.RefreshToken || c2.AccessToken == c1.AccessToken || !c2.Expiry.Equal(h.clock.Now().Add(15*time.Minute)) {
		t.Fatalf("not refreshed: %+v", c2)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %04o after refresh", fi.Mode().Perm())
	}

	// The server refuses a token the CLI thought valid (clock skew):
	// refreshed and retried once.
	c2.Expiry = h.clock.Now().Add(24 * time.Hour)
	if err := saveCredentials(path, &c2); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(20 * time.Minute)
	h.ok("client", "list")
	if c3 := h.creds(); c3.RefreshToken == c2.RefreshToken {
		t.Fatal("not refreshed after a 401")
	}

	// Logout revokes the refresh token and removes the file.
	old := h.creds()
	if out := h.ok("logout"); !strings.Contains(out, "logged out of "+h.url) {
		t.Errorf("logout: %s", out)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("credentials still there: %v", err)
	}
	h.fails(1, "not logged in to "+h.url+": run dls login", "client", "list")
	if err := saveCredentials(path, &old); err != nil {
		t.Fatal(err)
	}
	h.clock.Add(time.Hour)
	h.fails(1, "refresh token revoked", "client", "list")
}

// TestConcurrentRefresh: dls commands that find the token expired at the
// same time refresh it once between them; presenting the same refresh
// token twice would revoke every token of the user.
func TestConcurrentRefresh(t *testing.T) {
	h := newTestHost(t)
	h.login("alice")
	h.clock.Add(time.Hour)
	var wg sync.WaitGroup
	codes := make([]int, 6)
	errs := make([]string, len(codes))
	for i := range codes {
		wg.Go(func() { _, errs[i], codes[i] = h.dls("", "client", "list") })
	}
	wg.Wait()
	for i, code := range codes {
		if code != 0 {
			t.Errorf("run %d: exit %d: %s", i, code, errs[i])
		}
	}
	h.clock.Add(time.Hour)
	h.ok("client", "list")
}

func TestLoginErrors(t *testing.T) {
	h := newTestHost(t)
	if _, e, code := h.dls("wrong\n", "login", "--user", "alice", "--password-stdin"); code != 1 || !strings.Contains(e, "dls login: invalid username or password") {
		t.Errorf("wrong password: exit %d: %s", code, e)
	}
	// Not a terminal, no --password-stdin: a usage error that says so.
	if _, e, code := h.dls("", "login", "--user", "alice"); code != 2 || !strings.Contains(e, "--password-stdin") {
		t.Errorf("no password: exit %d: %s", code, e)
	}
	if _, e, code := h.dls("x\n", "login", "--password-stdin"); code != 2 || !strings.Contains(e, "--user") {
		t.Errorf("no user: exit %d: %s", code, e)
	}
	if _, e, code := h.dls("x\n", "login", "--server", "ftp://x", "--user", "a", "--password-stdin"); code != 2 || !strings.Contains(e, "want http://HOST:PORT") {
		t.Errorf("bad server: exit %d: %s", code, e)
	}
	h.env["DLS_SERVER"] = "http://127.0.0.1:1"
	if _, e, code := h.dls("x\n", "login", "--user", "alice", "--password-stdin"); code != 1 || !strings.Contains(e, "cannot reach http://127.0.0.1:1") {
		t.Errorf("no server: exit %d: %s", code, e)
	}
}

func TestClientCommands(t *testing.T) {
	h := newTestHost(t)
	h.login("oscar")
	out := h.ok("client", "add", "pc-01", "--mac", "AA-BB-CC-DD-EE-01", "--image", "win11", "--address", "10.0.0.11", "--initiator", "iqn.2026-01.lab:pc01", "--label", "room=b12")
	for _, want := range []string{"aa:bb:cc:dd:ee:01", "10.0.0.11", "iqn.2026-01.lab:pc01", "room=b12", "Persistent:  yes"} {
		if !strings.Contains(out, want) {
			t.Errorf("add output lacks %q:\n%s", want, out)
		}
	}
	h.ok("client", "add", "pc-02", "--mac", "aa:bb:cc:dd:ee:02", "--image", "win11", "--persistent=false")

	out = h.ok("client", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME   MAC                IMAGE  ADDRESS    PERSISTENT  INITIATORS") ||
		!strings.HasPrefix(lines[1], "pc-01  aa:bb:cc:dd:ee:01  win11  10.0.0.11  yes         iqn.2026-01.lab:pc01") ||
		!strings.HasPrefix(lines[2], "pc-02  aa:bb:cc:dd:ee:02  win11  -          no          -") {
		t.Errorf("client list:\n%s", out)
	}
	// The floor: no boots yet, grouped by room (no room last).
	out = h.ok("client", "floor")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 ||
		!strings.HasPrefix(lines[0], "ROOM  NAME   IMAGE     STATE  LAST BOOT") ||
		!strings.HasPrefix(lines[1], "b12   pc-01  win11 v1  off") || !strings.HasPrefix(lines[2], "-     pc-02  win11 v1  off") ||
		lines[3] != "off 2, dhcp 0, script 0, iscsi_login 0, handoff 0, booted 0, failed 0" {
		t.Errorf("client floor:\n%s", out)
	}
	// Maintenance: an operator starts and cancels; promote needs an admin.
	if out := h.ok("client", "maintenance", "pc-02", "start"); !strings.Contains(out, "client pc-02: in maintenance") {
		t.Errorf("maintenance start: %q", out)
	}
	h.fails(1, "needs admin", "client", "maintenance", "pc-02", "promote")
	if out := h.ok("client", "maintenance", "pc-02", "cancel"); out != "client pc-02: maintenance cancelled\n" {
		t.Errorf("maintenance cancel: %q", out)
	}
	h.fails(2, `action "fly"`, "client", "maintenance", "pc-02", "fly")
	var cs []apiClient
	if err := json.Unmarshal([]byte(h.ok("client", "list", "-o", "json")), &cs); err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || cs[0].Name != "pc-01" || cs[0].MAC != "aa:bb:cc:dd:ee:01" || !cs[0].Persistent || cs[1].Persistent || cs[0].Labels["room"] != "b12" {
		t.Errorf("client list -o json: %+v", cs)
	}

	// The API's message, exit 1.
	out, errOut, code := h.dls("", "client", "add", "pc-03", "--mac", "zz", "--image", "win11")
	if code != 1 || errOut != "dls client add: mac \"zz\" is not a MAC address (want aa:bb:cc:dd:ee:ff)\n" || out != "" {
		t.Errorf("bad MAC: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	h.fails(1, `dls client add: client pc-01 exists`, "client", "add", "pc-01", "--mac", "aa:bb:cc:dd:ee:09", "--image", "win11")
	h.fails(1, `dls client get: no client "nope"`, "client", "get", "nope")
	// Usage errors, exit 2.
	h.fails(2, "missing client name", "client", "add")
	h.fails(2, "add needs --mac and --image", "client", "add", "pc-03", "--mac", "aa:bb:cc:dd:ee:03")
	h.fails(2, `unknown command "frob"`, "client", "frob")
	h.fails(2, "flag provided but not defined: -bogus", "client", "list", "--bogus")
	h.fails(2, `-o "yaml"`, "client", "list", "-o", "yaml")
	h.fails(2, "set: give at least one", "client", "set", "pc-01", "-o", "json")

	// set changes only what it is given.
	h.ok("client", "set", "pc-01", "--persistent=false", "--address", "", "--initiator", "")
	var c apiClient
	if err := json.Unmarshal([]byte(h.ok("client", "get", "pc-01", "-o", "json")), &c); err != nil {
		t.Fatal(err)
	}
	if c.Persistent || c.Address != "" || len(c.Initiators) != 0 || c.MAC != "aa:bb:cc:dd:ee:01" || c.Labels["room"] != "b12" {
		t.Errorf("after set: %+v", c)
	}

	// CHAP: rotate and set; nothing secret printed, the stored secret changes.
	secret := func() string {
		t.Helper()
		c, err := h.store.GetClient(context.Background(), "pc-01")
		if err != nil {
			t.Fatal(err)
		}
		return c.CHAPSecret
	}
	before := secret()
	if len(before) < 16 {
		t.Fatalf("client add gave no generated secret: %q", before)
	}
	out = h.ok("client", "chap", "pc-01", "--rotate")
	if after := secret(); after == before || strings.Contains(out, after) || !strings.Contains(out, "client pc-01: CHAP secret rotated") {
		t.Errorf("chap --rotate: %q, secret %q -> %q", out, before, after)
	}
	if out, errOut, code := h.dls("chosen-secret-01\n", "client", "chap", "pc-01", "--secret-stdin"); code != 0 || strings.Contains(out, "chosen") || secret() != "chosen-secret-01" {
		t.Errorf("chap --secret-stdin: exit %d, %q %q, secret %q", code, out, errOut, secret())
	}
	if _, errOut, code := h.dls("short\n", "client", "chap", "pc-01", "--secret-stdin"); code != 1 || !strings.Contains(errOut, "secret is 5 characters long") {
		t.Errorf("short secret: exit %d, %q", code, errOut)
	}
	h.fails(2, "chap: give one of --rotate, --secret-stdin", "client", "chap", "pc-01")
	h.fails(2, "chap: give one of --rotate, --secret-stdin", "client", "chap", "pc-01", "--rotate", "--secret-stdin")
	// set keeps the secret and sets extra addresses.
	h.ok("client", "set", "pc-01", "--extra-address", "10.0.0.5", "--extra-address", "fd00::5")
	if c := h.ok("client", "get", "pc-01"); !strings.Contains(c, "10.0.0.5, fd00::5") || secret() != "chosen-secret-01" {
		t.Errorf("after set --extra-address: secret %q\n%s", secret(), c)
	}

	if out := h.ok("wake", "pc-01"); !strings.Contains(out, "magic packet sent") {
		t.Errorf("wake: %s", out)
	}
	h.ok("client", "wake", "pc-02")
	if got := h.waker.list(); !slices.Equal(got, []string{"aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"}) {
		t.Errorf("woken %v", got)
	}
	if out := h.ok("client", "reset", "pc-02", "--version", "1"); !strings.Contains(out, "reset to image win11 version 1") {
		t.Errorf("reset: %s", out)
	}
	h.ok("client", "delete", "pc-02")
	if out := h.ok("client", "list"); strings.Contains(out, "pc-02") {
		t.Errorf("pc-02 still listed:\n%s", out)
	}
}

func TestImageCommands(t *testing.T) {
	h := newTestHost(t)
	h.login("alice")
	out := h.ok("image", "list")
	if !strings.Contains(out, "NAME   STORAGE  ORIGIN  BOOT     SOURCE") || !strings.Contains(out, "win11  tank     config  sanboot  /img/win11.raw") {
		t.Errorf("image list:\n%s", out)
	}
	out = h.ok("image", "versions", "win11")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "1        1.0 MiB") || !strings.HasSuffix(lines[1], "*") {
		t.Errorf("versions:\n%s", out)
	}
	if out := h.ok("image", "snapshot", "win11"); !strings.Contains(out, "2        1.0 MiB") {
		t.Errorf("snapshot:\n%s", out)
	}
	var vs []apiVersion
	if err := json.Unmarshal([]byte(h.ok("image", "versions", "win11", "-o", "json")), &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Current || !vs[1].Current {
		t.Fatalf("versions: %+v", vs)
	}
	// A rollout needs a ring: none of win11's clients has ring=canary here.
	h.fails(1, "no client of image win11 has the label ring=canary", "image", "rollout", "win11", "start", "--version", "1")
	h.fails(2, "rollout start needs --version", "image", "rollout", "win11", "start")
	if out := h.ok("image", "rollout", "win11", "status"); out != "image win11: no rollout in progress\n" {
		t.Errorf("rollout status: %q", out)
	}
	if out := h.ok("image", "rollback", "win11"); out != "image win11: rolled back from version 2 to 1\n" {
		t.Errorf("rollback: %q", out)
	}
	h.fails(1, "no version before the current one (1)", "image", "rollback", "win11")
	if out := h.ok("image", "current", "win11", "1"); out != "image win11: version 1 is current\n" {
		t.Errorf("current: %q", out)
	}
	h.ok("image", "delete-version", "win11", "2")
	h.fails(1, "version 1 of image win11 is current", "image", "delete-version", "win11", "1")
	h.fails(2, `version "two"`, "image", "current", "win11", "two")
	h.fails(2, "missing image name and version", "image", "current", "win11")

	disk := filepath.Join(t.TempDir(), "ubuntu.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out = h.ok("image", "add", "ubuntu", "--storage", "tank", "--source", disk, "--kernel", "http://boot/vmlinuz", "--confirm")
	if !strings.Contains(out, "Imported:") || !strings.Contains(out, "version 1") || !strings.Contains(out, "http://boot/vmlinuz") {
		t.Errorf("image add:\n%s", out)
	}
	// Without --storage: the host's only storage.
	if out := h.ok("image", "add", "x"); !regexp.MustCompile(`(?m)^Storage: +tank$`).MatchString(out) {
		t.Errorf("image add without --storage:\n%s", out)
	}
	h.ok("image", "delete", "x")
	h.ok("image", "delete", "ubuntu", "--purge")
	if calls := h.stor.list(); !slices.Contains(calls, "delete ubuntu") {
		t.Errorf("storage calls %v", calls)
	}

	// A viewer reads, but may not write.
	h.login("vera")
	h.ok("image", "get", "win11")
	h.fails(1, "role viewer may not POST", "image", "snapshot", "win11")
}

// TestImageImportFromDir: dls image import --from-dir makes an ext4 disk
// of a directory tree with mke2fs (package e2fsprogs; skipped without it)
// and imports it; the host is handed the disk's absolute path while the
// file exists, and a temporary disk is removed afterwards.
func TestImageImportFromDir(t *testing.T) {
	debugfs := ""
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, "mke2fs")); err == nil {
			debugfs = filepath.Join(d, "debugfs")
		}
	}
	if debugfs == "" {
		t.Skip("mke2fs not installed (package e2fsprogs)")
	}
	h := newTestHost(t)
	h.login("alice")
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("diskless\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var sources []string
	h.stor.onImport = func(req storage.ImportRequest) error {
		sources = append(sources, req.Source)
		if !filepath.IsAbs(req.Source) {
			return fmt.Errorf("source %q is not absolute", req.Source)
		}
		// The disk is ext4 holding the tree, read back without mounting.
		out, err := exec.Command(debugfs, "-R", "cat /etc/hostname", req.Source).Output()
		if err != nil || string(out) != "diskless\n" {
			return fmt.Errorf("debugfs cat /etc/hostname in %s: %v %q", req.Source, err, out)
		}
		st, err := os.Stat(req.Source)
		if err != nil {
			return err
		}
		if st.Size()%(64<<20) != 0 || st.Size() < 128<<20 {
			return fmt.Errorf("disk of %d bytes: want a multiple of 64 MiB, at least 128 MiB", st.Size())
		}
		return nil
	}

	out, errOut, code := h.dls("", "image", "import", "win11", "--from-dir", root)
	if code != 0 || !strings.HasPrefix(out, "VERSION") || !strings.Contains(out, "\n2 ") {
		t.Errorf("import --from-dir: exit %d\n%s%s", code, out, errOut)
	}
	if len(sources) != 1 {
		t.Fatalf("imports %v, want one", sources)
	}
	// The disk was streamed: the host imported its own copy, and the
	// CLI's temporary disk is gone.
	made, _, _ := strings.Cut(strings.TrimPrefix(errOut, "made "), ":")
	if made == "" || made == sources[0] || !strings.HasPrefix(sources[0], h.uploads) {
		t.Errorf("made %q, host imported %q (want a file under %s)", made, sources[0], h.uploads)
	}
	for _, p := range []string{made, sources[0]} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("the temporary disk %s is still there: %v", p, err)
		}
	}

	// --out keeps the disk where asked; --size sets it.
	kept := filepath.Join(t.TempDir(), "linux.img")
	_, errOut, code = h.dls("", "image", "import", "win11", "--from-dir", root, "--out", kept, "--size", "256M")
	if code != 0 || !strings.Contains(errOut, "made "+kept+": ext4, 256.0 MiB, from "+root) {
		t.Fatalf("import --out --size: exit %d, stderr %q", code, errOut)
	}
	if st, err := os.Stat(kept); err != nil || st.Size() != 256<<20 || len(sources) != 2 || sources[1] == kept {
		t.Errorf("kept disk %s: %v (sources %v)", kept, err, sources)
	}
	if vs := h.stor.versions["win11"]; len(vs) != 3 {
		t.Errorf("win11 has %d versions, want 3 (config's, then two imports)", len(vs))
	}

	// What is refused, and nothing imported for it.
	h.fails(2, "import needs one of --source, --host-source or --from-dir", "image", "import", "win11")
	h.fails(2, "import needs one of --source, --host-source or --from-dir", "image", "import", "win11", "--source", "/x.img", "--from-dir", root)
	h.fails(2, "--out and --size go with --from-dir", "image", "import", "win11", "--source", "/x.img", "--size", "1G")
	h.fails(2, `--size: size "big"`, "image", "import", "win11", "--from-dir", root, "--size", "big")
	h.fails(1, "image win11 from "+filepath.Join(root, "nope"), "image", "import", "win11", "--from-dir", filepath.Join(root, "nope"))
	h.fails(1, "file exists", "image", "import", "win11", "--from-dir", root, "--out", kept)
	if len(sources) != 2 {
		t.Errorf("imports %v after refusals, want two", sources)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1048576": 1 << 20, "512M": 512 << 20, "2G": 2 << 30, "2g": 2 << 30, "1.5GiB": 3 << 29, "100K": 100 << 10, "1T": 1 << 40, "1500": 1024,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "G", "-1G", "0", "ten", "1X", "2P"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestSessionCommands(t *testing.T) {
	h := newTestHost(t)
	ctx := context.Background()
	t0 := h.clock.Now().Add(-10 * time.Minute)
	done, err := h.store.CreateSession(ctx, store.Session{Client: "pc-01", MAC: "aa:bb:cc:dd:ee:01", Address: "10.0.0.11", Expect: "handoff", State: store.SessionDone,
		Stages:  map[string]time.Time{"dhcp": t0, "script": t0.Add(2 * time.Second), "handoff": t0.Add(30 * time.Second)},
		Started: t0, Ended: t0.Add(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.CreateSession(ctx, store.Session{Client: "pc-02", MAC: "aa:bb:cc:dd:ee:02", Expect: "handoff", State: store.SessionFailed, FailedStage: "script",
		Stages: map[string]time.Time{"dhcp": t0.Add(time.Minute)}, Started: t0.Add(time.Minute), Ended: t0.Add(3 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	h.login("vera")
	out := h.ok("session", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "ID  CLIENT  MAC") || !strings.Contains(lines[1], "pc-02") || !strings.Contains(lines[1], "failed (script)") ||
		!strings.Contains(lines[2], "pc-01") || !strings.Contains(lines[2], "handoff/handoff") || !strings.HasSuffix(lines[2], "30s") {
		t.Errorf("session list:\n%s", out)
	}
	// The chart: one done boot of 30 s and one failure in the last 2 hours.
	out = h.ok("session", "times", "--hours", "2")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	boots, failed := 0, 0
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		b, _ := strconv.Atoi(f[2])
		n, _ := strconv.Atoi(f[3])
		boots, failed = boots+b, failed+n
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "HOUR (UTC)") || boots != 1 || failed != 1 || !strings.Contains(out, "30.0s") {
		t.Errorf("session times:\n%s", out)
	}
	out = h.ok("session", "list", "--state", "done", "--client", "pc-01", "--limit", "5")
	if !strings.Contains(out, "pc-01") || strings.Contains(out, "pc-02") {
		t.Errorf("session list --state done:\n%s", out)
	}
	var ss []apiSession
	if err := json.Unmarshal([]byte(h.ok("session", "list", "-o", "json", "--client", "pc-02")), &ss); err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 || ss[0].FailedStage != "script" {
		t.Errorf("session list -o json: %+v", ss)
	}
	out = h.ok("session", "get", fmt.Sprint(done.ID))
	for _, want := range []string{"Client:", "pc-01", "Stage script:", "(+2s)", "Duration:", "30s"} {
		if !strings.Contains(out, want) {
			t.Errorf("session get lacks %q:\n%s", want, out)
		}
	}
	h.fails(1, "state \"booting\": want active, done or failed", "session", "list", "--state", "booting")
	h.fails(1, "no session 999", "session", "get", "999")
	h.fails(2, `session ID "x"`, "session", "get", "x")
}

// TestBackupRestoreRoundTrip backs up one host and restores into a fresh
// one that already leases one of the addresses to another machine.
func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	a := newTestHost(t)
	live := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	if err := a.store.PutImage(ctx, store.Image{Name: "ubuntu", Storage: "tank", Source: "/img/u.raw", Origin: "api",
		Boot: &store.BootProfile{Kernel: "http://boot/vmlinuz", Cmdline: "quiet", Confirm: true}}); err != nil {
		t.Fatal(err)
	}
	clients := []store.Client{
		{Name: "pc-01", MAC: "aa:bb:cc:dd:ee:01", Image: "win11", Address: netip.MustParseAddr("10.0.0.11"), Persistent: true,
			Initiators: []string{"iqn.2026-01.lab:pc01"}, CHAPSecret: "chap-secret-01", CHAPMutualSecret: "mutual-01", Labels: map[string]string{"room": "b12"}},
		{Name: "pc-02", MAC: "aa:bb:cc:dd:ee:02", Image: "ubuntu"},
	}
	for _, c := range clients {
		if err := a.store.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	leases := []store.Lease{
		{Pool: "lab", Address: netip.MustParseAddr("10.0.0.11"), MAC: "aa:bb:cc:dd:ee:01", Expires: live, State: store.LeaseBound, Hostname: "pc-01"},
		{Pool: "lab", Address: netip.MustParseAddr("10.0.0.12"), MAC: "aa:bb:cc:dd:ee:02", Expires: live, State: store.LeaseBound},
		{Pool: "lab", Address: netip.MustParseAddr("10.0.0.50"), MAC: "aa:bb:cc:dd:ee:50", Expires: live, State: store.LeaseBound},
	}
	if _, err := a.store.CommitLeases(ctx, leases); err != nil {
		t.Fatal(err)
	}
	t0 := a.clock.Now().Add(-time.Hour)
	for i, st := range []string{store.SessionDone, store.SessionFailed, store.SessionActive} {
		if _, err := a.store.CreateSession(ctx, store.Session{Client: "pc-01", MAC: "aa:bb:cc:dd:ee:01", Expect: "handoff", State: st,
			Stages: map[string]time.Time{"dhcp": t0.Add(time.Duration(i) * time.Minute)}, Started: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.store.AppendAudit(ctx, store.AuditEntry{Actor: "config", Action: "client.put", Object: "client/pc-01", Source: "reconcile"}); err != nil {
		t.Fatal(err)
	}
	a.login("alice")
	file := filepath.Join(t.TempDir(), "dls-backup.json")
	out := a.ok("backup", file)
	if !strings.Contains(out, "clients 2, images 2, leases 3, sessions 3") {
		t.Errorf("backup: %s", out)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("backup mode %04o, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(file)
	if !bytes.Contains(raw, []byte(`"chap_secret": "chap-secret-01"`)) || !bytes.Contains(raw, []byte(`"format": "dls-backup"`)) {
		t.Errorf("backup lacks the CHAP secret or the format:\n%.400s", raw)
	}
	// An operator may not back up.
	a.login("oscar")
	a.fails(1, "role operator may not GET", "backup", filepath.Join(t.TempDir(), "x.json"))

	// The fresh host leases 10.0.0.50 to another machine.
	b := newTestHost(t)
	other := store.Lease{Pool: "lab", Address: netip.MustParseAddr("10.0.0.50"), MAC: "aa:bb:cc:dd:ee:99", Expires: live, State: store.LeaseBound}
	if _, err := b.store.CommitLeases(ctx, []store.Lease{other}); err != nil {
		t.Fatal(err)
	}
	b.login("alice")
	out, errOut, code := b.dls("", "restore", file)
	if code != 1 || !strings.Contains(out, "conflict: lease 10.0.0.50: address 10.0.0.50 (backup: aa:bb:cc:dd:ee:50) is leased to aa:bb:cc:dd:ee:99 here") ||
		!strings.Contains(errOut, "with 1 conflicts") {
		t.Fatalf("restore: exit %d:\n%s%s", code, out, errOut)
	}
	words := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"KIND IN BACKUP RESTORED UNCHANGED SKIPPED", "clients 2 2 0 0", "images 2 1 1 0", "leases 3 2 0 1", "sessions 3 2 0 1"} {
		if !strings.Contains(words, want) {
			t.Errorf("restore summary lacks %q:\n%s", want, out)
		}
	}

	// Clients (with their secrets), images and leases as on a.
	if ca, cb := storedClients(t, a.store), storedClients(t, b.store); !equalJSON(ca, cb) {
		t.Errorf("clients differ:\n a: %+v\n b: %+v", ca, cb)
	}
	if ia, ib := listImages(t, a.store), listImages(t, b.store); !equalJSON(ia, ib) {
		t.Errorf("images differ:\n a: %+v\n b: %+v", ia, ib)
	}
	la, _ := a.store.LoadLeases(ctx, "")
	lb, _ := b.store.LoadLeases(ctx, "")
	la[2] = other // the conflict: b keeps its own
	if !equalJSON(la, lb) {
		t.Errorf("leases differ:\n a: %+v\n b: %+v", la, lb)
	}
	ss, _ := b.store.ListSessions(ctx, store.SessionFilter{})
	if len(ss) != 2 || ss[0].State != store.SessionFailed || ss[1].State != store.SessionDone {
		t.Errorf("sessions restored: %+v", ss)
	}
	audit, _ := b.store.ListAudit(ctx, 0)
	if audit[0].Action != "store.restore" || audit[0].Actor != "alice" || !slices.ContainsFunc(audit, func(e store.AuditEntry) bool { return e.Actor == "config" && e.Object == "client/pc-01" }) {
		t.Errorf("audit after restore: %+v", audit[:2])
	}

	// Again: nothing more to do, the conflict still reported.
	out, _, code = b.dls("", "restore", file, "-o", "json")
	var sum restoreSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("restore -o json: %v: %s", err, out)
	}
	if code != 1 || sum.Clients.Unchanged != 2 || sum.Images.Unchanged != 2 || sum.Leases.Unchanged != 2 || sum.Sessions.Unchanged != 2 ||
		sum.Audit.Restored != 0 || len(sum.Conflicts) != 1 {
		t.Errorf("second restore: exit %d: %+v", code, sum)
	}
}

func TestRestoreRefusesGarbage(t *testing.T) {
	h := newTestHost(t)
	h.login("alice")
	before := storedClients(t, h.store)
	dir := t.TempDir()
	for _, tc := range []struct{ doc, msg string }{
		{"this is not JSON", "malformed JSON"},
		{`{"format":"tar","version":1}`, `format "tar": not a DLS backup`},
		{`{"version":1,"clients":[]}`, `format "": not a DLS backup`},
		{`{"format":"dls-backup","version":2}`, "backup version 2: this host restores version 1"},
		{`{"format":"dls-backup","version":1,"extra":true}`, `unknown field "extra"`},
		{`{"format":"dls-backup","version":1,"clients":[{"name":"pc-01","mac":"nope","image":"win11"}]}`, `clients[0]: client pc-01: mac "nope"`},
		{`{"format":"dls-backup","version":1,"leases":[{"address":"10.0.0.1","mac":"aa:bb:cc:dd:ee:01","state":"lost","expires":"2026-01-01T00:00:00Z"}]}`, `unknown state "lost"`},
	} {
		f := filepath.Join(dir, "doc.json")
		if err := os.WriteFile(f, []byte(tc.doc), 0o600); err != nil {
			t.Fatal(err)
		}
		h.fails(1, tc.msg, "restore", f)
	}
	h.fails(1, "read backup", "restore", filepath.Join(dir, "missing.json"))
	h.fails(2, "missing file name", "restore")
	if after := storedClients(t, h.store); !equalJSON(before, after) {
		t.Errorf("a refused restore changed the clients: %+v", after)
	}
}

func storedClients(t *testing.T, s *sqlite.Store) []store.Client {
	t.Helper()
	cs, err := s.ListClients(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range cs {
		cs[i].CreatedAt, cs[i].UpdatedAt = time.Time{}, time.Time{}
	}
	return cs
}

func listImages(t *testing.T, s *sqlite.Store) []store.Image {
	t.Helper()
	ims, err := s.ListImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for i := range ims {
		ims[i].CreatedAt, ims[i].UpdatedAt = time.Time{}, time.Time{}
	}
	return ims
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// testClock is a settable clock, shared by the API and the CLI.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeAuth knows cliUsers; a user's groups are its roles.
type fakeAuth struct{}

func (fakeAuth) Verify(_ context.Context, user, pass string) (auth.Identity, error) {
	u, ok := cliUsers[user]
	if !ok || u.password != pass {
		return auth.Identity{}, auth.ErrInvalidCredentials
	}
	return auth.Identity{Username: user, Groups: u.groups}, nil
}

func (fakeAuth) Lookup(_ context.Context, user string) (auth.Identity, error) {
	u, ok := cliUsers[user]
	if !ok {
		return auth.Identity{}, auth.ErrUserNotFound
	}
	return auth.Identity{Username: user, Groups: u.groups}, nil
}

type fakeWaker struct {
	mu    sync.Mutex
	woken []string
}

func (w *fakeWaker) Wake(_ context.Context, mac string, _ netip.Addr) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.woken = append(w.woken, mac)
	return nil
}

func (w *fakeWaker) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.woken)
}

// fakeStorage is one storage plugin for every image: versions in memory,
// volumes not kept.
type fakeStorage struct {
	mu       sync.Mutex
	versions map[string][]storage.Version
	calls    []string
	now      func() time.Time
	// onImport, when set, sees each import's request while the call is
	// in progress (the source file exists then) and may fail it.
	onImport func(storage.ImportRequest) error
}

var _ api.ImageStorage = (*fakeStorage)(nil)

func (f *fakeStorage) ImageStorage(context.Context, string) (api.ImageStorage, error) { return f, nil }

func (f *fakeStorage) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// add makes a new current version; f.mu is held.
func (f *fakeStorage) add(image string) storage.Version {
	vs := f.versions[image]
	for i := range vs {
		vs[i].Current = false
	}
	v := storage.Version{Image: image, Number: 1, Size: 1 << 20, Created: f.now(), Current: true}
	if len(vs) > 0 {
		v.Number = vs[len(vs)-1].Number + 1
	}
	f.versions[image] = append(vs, v)
	return v
}

func (f *fakeStorage) ImportImage(_ context.Context, req storage.ImportRequest) (storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "import "+req.Image)
	if f.onImport != nil {
		if err := f.onImport(req); err != nil {
			return storage.Version{}, err
		}
	}
	return f.add(req.Image), nil
}

func (f *fakeStorage) DeleteImage(_ context.Context, image string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "delete "+image)
	delete(f.versions, image)
	return nil
}

func (f *fakeStorage) CreateVersion(_ context.Context, image string) (storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.versions[image]; !ok {
		return storage.Version{}, fmt.Errorf("image %s: %w", image, storage.ErrNotFound)
	}
	return f.add(image), nil
}

func (f *fakeStorage) ListVersions(_ context.Context, image string) ([]storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs, ok := f.versions[image]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", image, storage.ErrNotFound)
	}
	return slices.Clone(vs), nil
}

func (f *fakeStorage) DeleteVersion(_ context.Context, image string, n uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs := f.versions[image]
	i := slices.IndexFunc(vs, func(v storage.Version) bool { return v.Number == n })
	switch {
	case i < 0:
		return fmt.Errorf("version %d of %s: %w", n, image, storage.ErrNotFound)
	case vs[i].Current:
		return fmt.Errorf("version %d of %s is current: %w", n, image, storage.ErrInUse)
	}
	f.versions[image] = slices.Delete(vs, i, i+1)
	return nil
}

func (f *fakeStorage) SetCurrentVersion(_ context.Context, image string, n uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs := f.versions[image]
	for i := range vs {
		vs[i].Current = vs[i].Number == n
	}
	return nil
}

func (f *fakeStorage) ResetVolume(_ context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("reset %s %d", req.Volume, req.Version))
	return storage.Volume{Name: req.Volume, Image: req.Image, Version: req.Version, Size: 1 << 20}, nil
}

func (f *fakeStorage) Promote(_ context.Context, volume, image string) (storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "promote "+volume+" "+image)
	return f.add(image), nil
}

// TestBinaryDispatchesAPICommands runs the built binary: dls routes the
// API commands, and its usage lists them.
func TestBinaryDispatchesAPICommands(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(binDir, "dls"), "client", "list")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "DLS_SERVER=http://127.0.0.1:1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || e.String() != "dls client list: not logged in to http://127.0.0.1:1: run dls login\n" {
		t.Errorf("dls client list: %v: %q %q", err, o.String(), e.String())
	}
	out, _, code := dls(t, "help")
	if code != 0 || !strings.Contains(out, "\n  login ") || !strings.Contains(out, "\n  backup ") {
		t.Errorf("dls help: exit %d:\n%s", code, out)
	}
}

// TestImageUploadStreamsFile: --source is read by the CLI and streamed;
// the host never opens the path (with the default config it refuses every
// path it is sent, as --host-source shows), and imports its own copy.
func TestImageUploadStreamsFile(t *testing.T) {
	h := newTestHost(t)
	h.login("alice")
	private := filepath.Join(t.TempDir(), "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(private, "lab.raw")
	content := bytes.Repeat([]byte("lab disk sector."), 1<<17) // 2 MiB
	if err := os.WriteFile(disk, content, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []byte
	var sources []string
	h.stor.onImport = func(req storage.ImportRequest) error {
		sources = append(sources, req.Source)
		var err error
		got, err = os.ReadFile(req.Source)
		return err
	}
	out := h.ok("image", "import", "win11", "--source", disk)
	if !strings.Contains(out, "\n2 ") || !bytes.Equal(got, content) || len(sources) != 1 || !strings.HasPrefix(sources[0], h.uploads+"/") {
		t.Errorf("import: %q; host imported %v (%d bytes)", out, sources, len(got))
	}
	out = h.ok("image", "add", "lab", "--storage", "tank", "--source", disk)
	if !strings.Contains(out, "Imported:  version 1 (") || !bytes.Equal(got, content) {
		t.Errorf("add:\n%s", out)
	}
	audit, err := h.store.ListAudit(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) == 0 || audit[0].Action != "image.import" || audit[0].Object != "image/lab" || !strings.Contains(audit[0].Detail, `"source":"upload"`) || strings.Contains(audit[0].Detail, disk) {
		t.Errorf("audit %+v", audit)
	}

	// The same path sent for the host to read: refused, one prefix.
	_, errOut, code := h.dls("", "image", "import", "win11", "--host-source", disk)
	want := "dls image import: source " + disk + ": this host imports no path on its own disk (images.import_dirs is empty in its config); upload the file instead (dls image import NAME --source FILE streams it from your machine), or list the file's folder in images { import_dirs = [...] } on the host\n"
	if code != 1 || errOut != want {
		t.Errorf("--host-source: exit %d, stderr\n%s\nwant\n%s", code, errOut, want)
	}

	// A file the CLI cannot read creates nothing.
	missing := filepath.Join(private, "nope.raw")
	_, errOut, code = h.dls("", "image", "add", "bad", "--storage", "tank", "--source", missing)
	want = "dls image add: --source " + missing + ": cannot read it here: no such file or directory (--source names a file on this machine; --host-source one on the host)\n"
	if code != 1 || errOut != want {
		t.Errorf("missing: exit %d, stderr\n%s\nwant\n%s", code, errOut, want)
	}
	// An upload the host refuses removes the image again.
	odd := filepath.Join(private, "odd.raw")
	if err := os.WriteFile(odd, make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	h.fails(1, "dls image add: upload "+odd+": import upload into image odd: 1000 bytes: a raw disk image is a non-zero multiple of 512 bytes (image odd was not added)",
		"image", "add", "odd", "--storage", "tank", "--source", odd)
	for _, name := range []string{"bad", "odd"} {
		if _, err := h.store.GetImage(context.Background(), name); err == nil {
			t.Errorf("image %s exists", name)
		}
	}
	h.fails(2, "--source and --host-source exclude each other", "image", "add", "x", "--storage", "tank", "--source", disk, "--host-source", disk)
}
