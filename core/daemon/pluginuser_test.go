package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/internal/hostprobe"
	"github.com/hashicorp/hcl/v2"
)

func TestPluginUserNeedsRoot(t *testing.T) {
	u := config.PluginUser{User: "nobody", UID: 65534, GID: 65534,
		UserRange: hcl.Range{Filename: "dls.hcl", Start: hcl.Pos{Line: 3, Column: 10}}}
	err := checkPluginUser(u, 1000)
	if err == nil || !strings.HasPrefix(err.Error(), "dls.hcl:3:10: plugin.user \"nobody\": dls serve runs as uid 1000, not root") {
		t.Errorf("non-root host with plugin.user: %v", err)
	}
	if err := checkPluginUser(u, 0); err != nil {
		t.Errorf("root host: %v", err)
	}
	if err := checkPluginUser(config.PluginUser{}, 1000); err != nil {
		t.Errorf("no plugin block: %v", err)
	}
}

// TestPluginsRunAsPluginUser (root only): with plugin { user = "nobody" }
// plugins run as nobody, a protocol plugin binds a port below 1024 with
// its ambient CAP_NET_BIND_SERVICE and still reaches the host services,
// owns its data dir, and cannot open the database or the token key.
func TestPluginsRunAsPluginUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start plugins as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	// Everything the plugins run from must be reachable by nobody:
	// t.TempDir's parent is 0700.
	dir, err := os.MkdirTemp("", "dls-priv-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{dir, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"dls-protocol-test", "dls-auth-local"} {
		copyFile(t, filepath.Join(pluginDir, name), filepath.Join(bin, name))
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "dls-protocol-tftp"), "github.com/dls-project/dls/plugins/protocol/tftp")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build the tftp plugin: %v", err)
	}
	// A file the TFTP plugin serves, left root's before the start: the
	// host hands the plugin's whole data dir to nobody.
	tftpRoot := filepath.Join(dir, "var", "plugins", "tftp", "files")
	if err := os.MkdirAll(tftpRoot, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tftpRoot, "hello.txt"), []byte("served as nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freeLowPort(t)
	udpPort := freeLowUDPPort(t)
	db, key := filepath.Join(dir, "var", "dls.db"), filepath.Join(dir, "var", "api-token.key")
	h := startIn(t, dir, fmt.Sprintf(`
plugin {
  user = "nobody"
}
protocol "test" "low" {
  source = %q
  config {
    listen     = "127.0.0.1:%d"
    probe_host = true
    try_read   = [%q, %q]
  }
}
protocol "tftp" "tftp" {
  source = %q
  config {
    listen  = "127.0.0.1:%d"
    root    = "files"
    scripts = ""
  }
}
auth "local" "users" {
  source = %q
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
`, filepath.Join(bin, "dls-protocol-test"), port, db, key, filepath.Join(bin, "dls-protocol-tftp"), udpPort, filepath.Join(bin, "dls-auth-local")), nil)
	h.waitFor(20*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })

	for name, wantAmbient := range map[string]uint64{
		"low":   1<<10 | 1<<13, // CAP_NET_BIND_SERVICE, CAP_NET_RAW
		"tftp":  1<<10 | 1<<13,
		"users": 0,
	} {
		_, pid, _, _ := h.plugin(name)
		st := procStatus(t, pid)
		for _, field := range []string{"Uid", "Gid"} {
			want := nobody.Uid
			if field == "Gid" {
				want = nobody.Gid
			}
			if ids := strings.Fields(st[field]); len(ids) != 4 || ids[0] != want || ids[1] != want || ids[2] != want || ids[3] != want {
				t.Errorf("plugin %s (pid %d): %s %q, want %s throughout", name, pid, field, st[field], want)
			}
		}
		if groups := strings.TrimSpace(st["Groups"]); groups != "" {
			t.Errorf("plugin %s keeps supplementary groups %q", name, groups)
		}
		amb, err := strconv.ParseUint(st["CapAmb"], 16, 64)
		if err != nil || amb != wantAmbient {
			t.Errorf("plugin %s: CapAmb %q, want %#x", name, st["CapAmb"], wantAmbient)
		}
		var sys syscall.Stat_t
		pdir := filepath.Join(dir, "var", "plugins", name)
		if err := syscall.Stat(pdir, &sys); err != nil || strconv.Itoa(int(sys.Uid)) != nobody.Uid || sys.Mode&0o777 != 0o700 {
			t.Errorf("data dir %s: uid %d mode %o (%v), want nobody's, 0700", pdir, sys.Uid, sys.Mode&0o777, err)
		}
	}

	// The low port is bound by the plugin running as nobody.
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		t.Fatalf("plugin's listener on port %d: %v", port, err)
	}
	c.Close()

	// The real TFTP plugin, as nobody, serves on its low UDP port (tftp-hpa).
	if _, err := exec.LookPath("tftp"); err != nil {
		t.Log("tftp-hpa not installed: the TFTP transfer is not checked")
	} else {
		out := filepath.Join(t.TempDir(), "hello.txt")
		get := exec.Command("tftp", "127.0.0.1", strconv.Itoa(udpPort), "-m", "binary", "-c", "get", "hello.txt", out)
		if b, err := get.CombinedOutput(); err != nil {
			t.Errorf("tftp get from the plugin on port %d: %v: %s", udpPort, err, b)
		} else if got, _ := os.ReadFile(out); string(got) != "served as nobody\n" {
			t.Errorf("tftp got %q", got)
		}
	}

	// The host's state stays the host's: 0600, root's, out of reach.
	for _, f := range []string{db, key} {
		var sys syscall.Stat_t
		if err := syscall.Stat(f, &sys); err != nil || sys.Uid != 0 || sys.Mode&0o077 != 0 {
			t.Errorf("%s: uid %d mode %o (%v), want root's, 0600", f, sys.Uid, sys.Mode&0o777, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "var", "plugins", "low", "try-read.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tried map[string]string
	if err := json.Unmarshal(b, &tried); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{db, key} {
		if !strings.Contains(tried[f], "permission denied") {
			t.Errorf("plugin as nobody opening %s: %q, want permission denied", f, tried[f])
		}
	}
	// The host's broker socket admits the plugin under its other uid.
	r, err := hostprobe.Read(filepath.Join(dir, "var", "plugins", "low"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r["Events.Report"].Code; got != "OK" {
		t.Errorf("Events.Report from the plugin as nobody: %s %s", got, r["Events.Report"].Message)
	}
}

// procStatus reads /proc/<pid>/status as field -> value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// freeLowPort finds a TCP port below 1024 free on 127.0.0.1.
func freeLowPort(t *testing.T) int {
	t.Helper()
	for p := 900; p < 1024; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Skip("no free TCP port below 1024")
	return 0
}

// freeLowUDPPort is 69 (TFTP) when free on 127.0.0.1, else a UDP port
// below 1024 that is.
func freeLowUDPPort(t *testing.T) int {
	t.Helper()
	for _, p := range append([]int{69}, portRange(900, 1024)...) {
		c, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			c.Close()
			return p
		}
	}
	t.Skip("no free UDP port below 1024")
	return 0
}

func portRange(from, to int) []int {
	var out []int
	for p := from; p < to; p++ {
		out = append(out, p)
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
