package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeIPXE is a folder with the iPXE builds dls init looks for, so that
// the tests do not depend on Debian's package ipxe.
func fakeIPXE(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"undionly.kpxe", "snponly.efi"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("ipxe"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// inNetns runs script with sh in a network namespace of its own (only
// its loopback, brought up; a user namespace maps the caller to root), so
// that the ports dls init writes (67, 69, 3260, 9180, 9184) are free
// whatever else runs on this machine. It skips when namespaces cannot be
// made here.
func inNetns(t *testing.T, script string) (string, int) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("no unshare here")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip here")
	}
	if out, err := exec.Command("unshare", "-rn", "true").CombinedOutput(); err != nil {
		t.Skipf("no user and network namespaces here: %v %s", err, out)
	}
	cmd := exec.Command("unshare", "-rn", "sh", "-ec", "ip link set lo up\n"+script)
	cmd.Env = append(os.Environ(), "DLS="+filepath.Join(binDir, "dls"))
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// TestInitThenValidateDeep: the config dls init writes passes dls
// validate --deep at once, before dls serve ever ran.
func TestInitThenValidateDeep(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etc", "dls.hcl")
	out, code := inNetns(t, fmt.Sprintf(`"$DLS" init --interface lo --data-dir %s --ipxe-dir %s --out %s
"$DLS" validate --deep --config %[3]s`, filepath.Join(dir, "var"), fakeIPXE(t), cfg))
	if code != 0 || !strings.Contains(out, "dls.hcl: ok (5 plugins; deep checks passed)") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if !strings.Contains(out, "wrote "+cfg+": full on lo (127.0.0.1/8), pool 127.0.0.100-127.0.0.199, boot URL http://127.0.0.1:9184") {
		t.Errorf("summary:\n%s", out)
	}
	text, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Beside this dls (the tests' build) are its plugins.
	for _, part := range []string{
		fmt.Sprintf("plugin_dir = %q", filepath.Join(binDir, "plugins")),
		`unknown_clients = "discover"`, `auth "local" "admins" {}`, `storage "dir" "local"`,
		`protocol "dhcp" "lan"`, `protocol "tftp" "tftp"`, `protocol "iscsi" "iscsi"`,
		`listen = "127.0.0.1:9180"`, `listen          = "127.0.0.1:9184"`, `listen = "127.0.0.1:3260"`,
	} {
		if !strings.Contains(string(text), part) {
			t.Errorf("config lacks %q:\n%s", part, text)
		}
	}
}

// TestInitWithoutInterface: with no flags and no terminal, dls init takes
// the first interface that is up with an IPv4 address besides loopback;
// a namespace has none, and it says what to do.
func TestInitWithoutInterface(t *testing.T) {
	out, code := inNetns(t, `"$DLS" init --out -`)
	if code != 1 || !strings.Contains(out, "dls init: no interface is up with an IPv4 address besides loopback: name one with --interface") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

func TestInitFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dls.hcl")
	ipxe := fakeIPXE(t)
	// Proxy mode, ZFS, to standard output: no pool, no file.
	stdout, stderr, code := dls(t, "init", "--interface", "lo", "--mode", "proxy", "--storage", "zfs:tank/dls", "--ipxe-dir", ipxe, "--out", "-")
	if code != 0 || strings.Contains(stdout, "pool {") || !strings.Contains(stdout, `dataset = "tank/dls"`) || !strings.Contains(stdout, `mode      = "proxy"`) {
		t.Errorf("proxy: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// A file is not overwritten without --force.
	if err := os.WriteFile(path, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = dls(t, "init", "--interface", "lo", "--ipxe-dir", ipxe, "--out", path)
	if code != 1 || !strings.Contains(stderr, path+" exists: give another --out, or --force to overwrite it") {
		t.Errorf("existing file: exit %d %s", code, stderr)
	}
	if _, stderr, code = dls(t, "init", "--interface", "lo", "--ipxe-dir", ipxe, "--out", path, "--force", "--pool", "127.0.0.10-127.0.0.20"); code != 0 {
		t.Errorf("--force: exit %d %s", code, stderr)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), `start   = "127.0.0.10"`) {
		t.Errorf("--pool not written:\n%s", b)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "relay"}, `mode "relay": want full or proxy`},
		{[]string{"--pool", "10.0.0.1-10.0.0.9"}, `--pool: pool "10.0.0.1-10.0.0.9": not inside lo's subnet 127.0.0.0/8`},
		{[]string{"--pool", "127.0.0.1-127.0.0.9"}, `holds this host's address 127.0.0.1 on lo`},
		{[]string{"--mode", "proxy", "--pool", "127.0.0.10-127.0.0.20"}, "--pool is for --mode full"},
		{[]string{"--storage", "zfs:"}, `storage "zfs:": want dir, or zfs:DATASET such as zfs:tank/dls`},
	} {
		args := append([]string{"init", "--interface", "lo", "--out", "-"}, tc.args...)
		_, stderr, code := dls(t, args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q:\n%s", tc.args, code, tc.want, stderr)
		}
	}
	if _, stderr, code := dls(t, "init", "--interface", "dls-nope0", "--out", "-"); code != 1 || !strings.Contains(stderr, "interface dls-nope0") {
		t.Errorf("missing interface: exit %d %s", code, stderr)
	}
}

// TestInitWithoutIPXE: without the iPXE builds, dls init says which
// Debian package has them, and leaves the TFTP root to the plugin's own
// folder.
func TestInitWithoutIPXE(t *testing.T) {
	stdout, stderr, code := dls(t, "init", "--interface", "lo", "--ipxe-dir", t.TempDir(), "--out", "-")
	if code != 0 || !strings.Contains(stderr, "undionly.kpxe and snponly.efi not found in ") ||
		!strings.Contains(stderr, "install Debian's package ipxe (apt-get install ipxe) and run dls init again") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stdout, "root   =") {
		t.Errorf("a TFTP root without iPXE builds:\n%s", stdout)
	}
}

// validateDeep writes body as a config and runs dls validate --deep.
func validateDeep(t *testing.T, body string) (string, int) {
	t.Helper()
	path := writeConfig(t, body)
	_, stderr, code := dls(t, "validate", "--deep", "--config", path)
	return strings.ReplaceAll(stderr, path, "dls.hcl"), code
}

// The misconfigurations dls validate used to pass, one test each: each
// is now a finding at file:line:col (line 1 and 2 are data_dir and
// plugin_dir).

func TestValidateDeepNonexistentInterface(t *testing.T) {
	stderr, code := validateDeep(t, `protocol "dhcp" "lan" {
  config {
    interface = "dls-nope0"
    mode      = "proxy"
  }
}
`)
	if code != 1 || !strings.Contains(stderr, `dls.hcl:5:17: interface "dls-nope0" does not exist on this machine (it has lo`) {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}

func TestValidateDeepMissingImageSource(t *testing.T) {
	stderr, code := validateDeep(t, `storage "dir" "local" {}
image "lab" {
  storage = "local"
  source  = "/nonexistent/dls/lab.img"
}
`)
	if code != 1 || !strings.Contains(stderr, `dls.hcl:6:13: image "lab": source /nonexistent/dls/lab.img cannot be read: no such file or directory`) {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}

func TestValidateDeepBootURLNotAbsolute(t *testing.T) {
	stderr, code := validateDeep(t, `http {
  listen = "0.0.0.0:9180"
}
`)
	want := `dls.hcl:4:12: boot URL is not absolute: http.listen "0.0.0.0:9180" names no address machines can reach, so they would be sent to a relative script URL; set boot { listen = "<boot network address>:9184" } or boot.url = "http://<boot network address>:9184"`
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}

func TestValidateDeepISCSIPortVsScripts(t *testing.T) {
	tmpl := filepath.Join(t.TempDir(), "site.ipxe")
	if err := os.WriteFile(tmpl, []byte("#!ipxe\nsanboot iscsi:{{.Server}}:::0:{{.TargetIQN}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, code := validateDeep(t, fmt.Sprintf(`boot {
  url    = "http://127.0.0.1:9184"
  script = %q
}
protocol "iscsi" "iscsi" {
  config {
    listen = "127.0.0.1:3261"
  }
}
`, tmpl))
	want := fmt.Sprintf(`dls.hcl:5:12: boot script template %s names no iSCSI port ("iscsi:127.0.0.1::": iPXE then uses 3260), but the iSCSI listener (protocol "iscsi" "iscsi") is on port 3261: write the target as {{.ISCSIURI}}`, tmpl)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d:\n%s\nwant:\n%s", code, stderr, want)
	}
}

// TestServeLogsPreflightFindings: dls serve runs the deep checks before it
// binds anything, logs each finding as a warning at file:line:col, and
// starts anyway.
func TestServeLogsPreflightFindings(t *testing.T) {
	path := writeConfig(t, `http {
  listen = "127.0.0.1:0"
}
storage "dir" "local" {}
image "lab" {
  storage = "local"
  source  = "/nonexistent/dls/lab.img"
}
protocol "iscsi" "iscsi" {
  config {
    listen = "127.0.0.1:0"
  }
}
`)
	cmd := exec.Command(filepath.Join(binDir, "dls"), "serve", "--config", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var warned bool
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("dls serve ended")
			}
			if strings.Contains(l, "[WARN]") && strings.Contains(l, "preflight: "+path+`:9:13: image "lab": source /nonexistent/dls/lab.img cannot be read: no such file or directory`) {
				warned = true
			}
			if strings.Contains(l, "dls serving") {
				if !warned {
					t.Fatalf("serving without the preflight warning first; last line %s", l)
				}
				return
			}
		case <-timeout:
			t.Fatal("dls serve did not start serving")
		}
	}
}

// TestInitQuestions: on a terminal, each question has a proposal Enter
// takes, and a wrong answer is said and asked again.
func TestInitQuestions(t *testing.T) {
	var w strings.Builder
	q := &asker{r: bufio.NewReader(strings.NewReader("relay\nproxy\n\n")), w: &w}
	got, err := q.ask("DHCP mode", "full", func(v string) error { _, err := checkMode(v); return err })
	if err != nil || got != "proxy" {
		t.Errorf("answer %q %v", got, err)
	}
	if !strings.Contains(w.String(), `DHCP mode [full]:   mode "relay": want full or proxy`) {
		t.Errorf("dialogue:\n%s", w.String())
	}
	if got, err := q.ask("Storage", "dir", nil); err != nil || got != "dir" {
		t.Errorf("Enter: %q %v", got, err)
	}
	if _, err := q.ask("Storage", "dir", nil); err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("end of input: %v", err)
	}
}

// TestValidateDeepWeakCHAPSecret: CHAP secrets are held to
// core/chapsecret's rule when the config loads, so --deep reports a weak
// one at its file:line:col before any check of the machine.
func TestValidateDeepWeakCHAPSecret(t *testing.T) {
	img := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(img, make([]byte, 512), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, code := validateDeep(t, fmt.Sprintf(`storage "dir" "local" {}
image "lab" {
  storage = "local"
  source  = %q
}
client "pc-01" {
  mac   = "52:54:00:12:34:56"
  image = "lab"
  chap {
    secret = "short"
  }
}
`, img))
	if code != 1 || !strings.Contains(stderr, `dls.hcl:12:14: Invalid value for "secret"; The CHAP secret is 5 characters long; CHAP secrets need at least 12.`) {
		t.Errorf("exit %d:\n%s", code, stderr)
	}
}
