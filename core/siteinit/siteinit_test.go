package siteinit

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/config"
)

func network(t *testing.T, prefix, router string) Network {
	t.Helper()
	n := Network{Interface: "br0", Addr: netip.MustParsePrefix(prefix)}
	if router != "" {
		n.Router = netip.MustParseAddr(router)
	}
	return n
}

func TestProposePool(t *testing.T) {
	for _, tc := range []struct {
		name, prefix, router, want string
	}{
		{"a /24", "192.168.77.1/24", "", "192.168.77.100-192.168.77.199"},
		{"a /24 with a router", "192.168.77.1/24", "192.168.77.254", "192.168.77.100-192.168.77.199"},
		// The host inside the usual range: the larger side is kept.
		{"host at .150", "192.168.77.150/24", "192.168.77.1", "192.168.77.100-192.168.77.149"},
		{"host at .101", "192.168.77.101/24", "", "192.168.77.102-192.168.77.199"},
		{"router at .100", "192.168.77.1/24", "192.168.77.100", "192.168.77.101-192.168.77.199"},
		{"host and router inside", "192.168.77.120/24", "192.168.77.180", "192.168.77.121-192.168.77.179"},
		{"a /16", "10.1.2.3/16", "10.1.0.1", "10.1.0.100-10.1.0.199"},
		{"a /25", "192.168.77.1/25", "", "192.168.77.64-192.168.77.126"},
		{"a /28", "10.0.0.1/28", "10.0.0.14", "10.0.0.8-10.0.0.13"},
		{"a /30, host only", "10.0.0.1/30", "", "10.0.0.2-10.0.0.2"},
		{"a /30, host at the top", "10.0.0.2/30", "", "10.0.0.1-10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := network(t, tc.prefix, tc.router)
			p, err := ProposePool(n)
			if err != nil {
				t.Fatal(err)
			}
			if p.String() != tc.want {
				t.Errorf("pool %s, want %s", p, tc.want)
			}
			if in(p, n.Addr.Addr()) || (n.Router.IsValid() && in(p, n.Router)) {
				t.Errorf("pool %s holds the host or the router", p)
			}
			// What is proposed is what --pool accepts.
			if _, err := ParsePool(p.String(), n); err != nil {
				t.Errorf("ParsePool(proposal): %v", err)
			}
		})
	}
	for _, tc := range []struct{ prefix, router, want string }{
		{"10.0.0.1/30", "10.0.0.2", "no address left besides the host's and the router's"},
		{"10.0.0.1/31", "", "has no addresses for machines"},
		{"10.0.0.1/32", "", "has no addresses for machines"},
	} {
		if _, err := ProposePool(network(t, tc.prefix, tc.router)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s router %q: %v, want an error with %q", tc.prefix, tc.router, err, tc.want)
		}
	}
}

func TestParsePool(t *testing.T) {
	n := network(t, "192.168.77.1/24", "192.168.77.254")
	if p, err := ParsePool(" 192.168.77.10 - 192.168.77.20 ", n); err != nil || p.Size() != 11 {
		t.Errorf("ParsePool: %v %v", p, err)
	}
	for in, want := range map[string]string{
		"192.168.77.10":                   "want START-END",
		"192.168.77.10-x":                 "two IPv4 addresses",
		"192.168.77.20-192.168.77.10":     "the start comes after the end",
		"192.168.77.0-192.168.77.10":      "not inside br0's subnet 192.168.77.0/24",
		"192.168.77.200-192.168.77.255":   "not inside",
		"192.168.78.10-192.168.78.20":     "not inside",
		"192.168.77.1-192.168.77.20":      "holds this host's address 192.168.77.1",
		"192.168.77.200-192.168.77.254":   "holds the router's address 192.168.77.254",
		"2001:db8::1-2001:db8::2":         "two IPv4 addresses",
		"192.168.77.100-192.168.77.100-1": "two IPv4 addresses",
	} {
		if _, err := ParsePool(in, n); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePool(%q) = %v, want an error with %q", in, err, want)
		}
	}
}

func TestDefaultRouter(t *testing.T) {
	table := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth1\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"br0\t00000000\t014DA8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
	for iface, want := range map[string]string{"eth0": "192.0.2.1", "br0": "192.168.77.1"} {
		got, err := DefaultRouter(strings.NewReader(table), iface)
		if err != nil || got.String() != want {
			t.Errorf("%s: %v %v, want %s", iface, got, err, want)
		}
	}
	if _, err := DefaultRouter(strings.NewReader(table), "eth1"); err == nil {
		t.Error("eth1 has no default route, got one")
	}
}

// TestReadNetworkLoopback reads the real loopback interface.
func TestReadNetworkLoopback(t *testing.T) {
	n, err := ReadNetwork("lo")
	if err != nil {
		t.Skipf("no IPv4 loopback here: %v", err)
	}
	if n.Addr.Addr() != netip.MustParseAddr("127.0.0.1") || n.Addr.Bits() != 8 {
		t.Errorf("lo: %v", n.Addr)
	}
	if _, err := ReadNetwork("dls-no-such-if0"); err == nil || !strings.Contains(err.Error(), "dls-no-such-if0") {
		t.Errorf("missing interface: %v", err)
	}
}

func site(t *testing.T, mode string) Site {
	n := network(t, "192.168.77.1/24", "192.168.77.254")
	s := Site{Network: n, Mode: mode, Storage: "dir", DataDir: "var", PluginDir: "/usr/lib/dls/plugins",
		TFTPRoot: IPXEDir, Written: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)}
	if mode == ModeFull {
		p, err := ProposePool(n)
		if err != nil {
			t.Fatal(err)
		}
		s.Pool = p
	}
	return s
}

// load writes text beside a fresh folder and loads it as the host does.
func load(t *testing.T, text []byte) *config.Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dls.hcl")
	if err := os.WriteFile(path, text, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("load:\n%s\n%v", text, err)
	}
	return cfg
}

func TestRenderFullLoads(t *testing.T) {
	text, err := Render(site(t, ModeFull))
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, text)
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %q", cfg.Warnings)
	}
	if cfg.HTTP.Listen != "127.0.0.1:9180" || cfg.Boot.Listen != "192.168.77.1:9184" || cfg.Boot.URL != "http://192.168.77.1:9184" ||
		cfg.Boot.UnknownClients != "discover" || cfg.PluginDir != "/usr/lib/dls/plugins" || cfg.ISCSIPort() != 3260 {
		t.Errorf("host settings: %+v %+v %s", cfg.HTTP, cfg.Boot, cfg.PluginDir)
	}
	var names []string
	for _, p := range cfg.Plugins {
		names = append(names, p.Kind+"/"+p.Type+"/"+p.Name)
	}
	if got := strings.Join(names, " "); got != "auth/local/admins storage/dir/local protocol/dhcp/lan protocol/tftp/tftp protocol/iscsi/iscsi" {
		t.Errorf("plugins: %s", got)
	}
	dhcp := cfg.Plugin("lan")
	for attr, want := range map[string]string{"interface": "br0", "mode": "full", "server_ip": "192.168.77.1"} {
		if got, _ := dhcp.ConfigString(attr); got != want {
			t.Errorf("dhcp %s = %q, want %q", attr, got, want)
		}
	}
	if got, _ := cfg.Plugin("tftp").ConfigString("root"); got != IPXEDir {
		t.Errorf("tftp root %q", got)
	}
	for _, part := range []string{
		"start   = \"192.168.77.100\"", "end     = \"192.168.77.199\"", "netmask = \"255.255.255.0\"", "router  = \"192.168.77.254\"",
		"bios    = \"undionly.kpxe\"", "efi_x64 = \"snponly.efi\"", "single_port = true",
	} {
		if !strings.Contains(string(text), part) {
			t.Errorf("config lacks %q:\n%s", part, text)
		}
	}
}

func TestRenderProxyHasNoPool(t *testing.T) {
	s := site(t, ModeProxy)
	s.Storage, s.Dataset, s.TFTPRoot = "zfs", "tank/dls", ""
	text, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	cfg := load(t, text)
	if strings.Contains(string(text), "pool {") {
		t.Errorf("proxy config has a pool:\n%s", text)
	}
	if got, _ := cfg.Plugin("lan").ConfigString("mode"); got != "proxy" {
		t.Errorf("mode %q", got)
	}
	if got, _ := cfg.Plugin("local").ConfigString("dataset"); got != "tank/dls" || cfg.Plugin("local").Type != "zfs" {
		t.Errorf("zfs storage: %q", got)
	}
	if _, ok := cfg.Plugin("tftp").ConfigString("root"); ok {
		t.Errorf("tftp root set without the ipxe package:\n%s", text)
	}
	if !strings.Contains(string(text), "copy\n# undionly.kpxe and snponly.efi there (Debian's package ipxe") {
		t.Errorf("no hint at the ipxe package:\n%s", text)
	}
}

func TestRenderRefuses(t *testing.T) {
	s := site(t, ModeFull)
	s.Pool = Pool{}
	if _, err := Render(s); err == nil {
		t.Error("full mode without a pool rendered")
	}
	s = site(t, "relay")
	if _, err := Render(s); err == nil {
		t.Error("mode relay rendered")
	}
	s = site(t, ModeProxy)
	s.Storage = "zfs"
	if _, err := Render(s); err == nil {
		t.Error("zfs without a dataset rendered")
	}
}

// TestQuotePaths: a path with quotes, backslashes or template markers
// loads back as written.
func TestQuotePaths(t *testing.T) {
	s := site(t, ModeProxy)
	s.DataDir = `/srv/d"l\s/${HOME}/%{x}`
	text, err := Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := load(t, text); cfg.DataDir != s.DataDir {
		t.Errorf("data_dir %q, want %q", cfg.DataDir, s.DataDir)
	}
}

func TestMissingBootFiles(t *testing.T) {
	dir := t.TempDir()
	if got := MissingBootFiles(dir); len(got) != 2 {
		t.Errorf("empty folder: missing %v", got)
	}
	_ = os.WriteFile(filepath.Join(dir, "undionly.kpxe"), []byte("x"), 0o644)
	// A link out of the folder does not count: the TFTP plugin refuses it.
	outside := filepath.Join(t.TempDir(), "snponly.efi")
	_ = os.WriteFile(outside, []byte("x"), 0o644)
	_ = os.Symlink(outside, filepath.Join(dir, "snponly.efi"))
	if got := MissingBootFiles(dir); len(got) != 1 || got[0] != "snponly.efi" {
		t.Errorf("missing %v, want [snponly.efi]", got)
	}
	if got := MissingBootFiles(filepath.Join(dir, "nope")); len(got) != 2 {
		t.Errorf("no folder: missing %v", got)
	}
}
