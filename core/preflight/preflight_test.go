package preflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dls-project/dls/core/config"
)

// fakeSystem is a machine with the interfaces a test needs; binds fail
// with binds[network+" "+addr] when set.
type fakeSystem struct {
	ifcs  []Interface
	binds map[string]error
}

func (f fakeSystem) Interfaces() ([]Interface, error) { return f.ifcs, nil }
func (f fakeSystem) Bind(_ context.Context, network, addr, _ string) error {
	return f.binds[network+" "+addr]
}
func (f fakeSystem) LookupHost(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS in this test")
}

// lab is a boot LAN on br0 beside loopback.
func lab() fakeSystem {
	return fakeSystem{ifcs: []Interface{
		{Name: "lo", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "br0", Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("192.168.77.1/24")}},
	}}
}

// loaded writes text as dls.hcl in a fresh folder (data_dir var beside
// it) and loads it.
func loaded(t *testing.T, text string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "dls.hcl")
	if err := os.WriteFile(path, []byte("data_dir = \"var\"\n"+text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// check runs Check and returns the findings as "line:col: message".
func check(t *testing.T, cfg *config.Config, sys System, plugins map[string]string) []string {
	t.Helper()
	js := map[string][]byte{}
	for k, v := range plugins {
		js[k] = []byte(v)
	}
	var out []string
	for _, f := range Check(context.Background(), Input{Config: cfg, Plugins: js, System: sys}) {
		out = append(out, strings.TrimPrefix(f.String(), cfg.File+":"))
	}
	return out
}

// want fails unless got is exactly the findings want.
func want(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A clean lab config, as dls init writes it (line 1 is data_dir).
const labConfig = `http {
  listen = "127.0.0.1:9180"
}
boot {
  listen = "192.168.77.1:9184"
}
protocol "dhcp" "lan" {
  config {
    interface = "br0"
    boot_files = {
      bios    = "undionly.kpxe"
      efi_x64 = "snponly.efi"
    }
  }
}
protocol "tftp" "tftp" {
  config {
    listen = "192.168.77.1:69"
    root   = %q
  }
}
protocol "iscsi" "iscsi" {
  config {
    listen = "192.168.77.1:3260"
  }
}
`

func ipxeDir(t *testing.T, files ...string) string {
	dir := t.TempDir()
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("ipxe"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const (
	labDHCP  = `{"interface":"br0","mode":"full","server_ip":null,"port":67,"proxy_port":4011,"boot_files":{"bios":"undionly.kpxe","efi_x64":"snponly.efi"}}`
	labTFTP  = `{"listen":"192.168.77.1:69","root":%q}`
	labISCSI = `{"listen":"192.168.77.1:3260"}`
)

func labPlugins(root string) map[string]string {
	return map[string]string{"lan": labDHCP, "tftp": fmt.Sprintf(labTFTP, root), "iscsi": labISCSI}
}

func TestCleanLabConfig(t *testing.T) {
	root := ipxeDir(t, "undionly.kpxe", "snponly.efi")
	cfg := loaded(t, fmt.Sprintf(labConfig, root))
	want(t, check(t, cfg, lab(), labPlugins(root)))
}

// TestNonexistentInterface: the DHCP block names an interface this
// machine does not have (the real machine's list).
func TestNonexistentInterface(t *testing.T) {
	cfg := loaded(t, `protocol "dhcp" "lan" {
  config {
    interface = "dls-nope0"
  }
}
`)
	got := check(t, cfg, Host{}, map[string]string{"lan": `{"interface":"dls-nope0","mode":"proxy","port":0,"proxy_port":0}`})
	found := false
	for _, f := range got {
		found = found || strings.HasPrefix(f, `4:17: interface "dls-nope0" does not exist on this machine (it has lo`)
	}
	if !found {
		t.Errorf("findings: %q", got)
	}
}

// TestLoopbackInterface: the real lo exists, is up and has 127.0.0.1.
func TestLoopbackInterface(t *testing.T) {
	cfg := loaded(t, `protocol "dhcp" "lan" {
  config {
    interface = "lo"
    server_ip = "127.0.0.1"
  }
}
`)
	got := check(t, cfg, Host{}, map[string]string{"lan": `{"interface":"lo","mode":"proxy","server_ip":"127.0.0.1","port":0,"proxy_port":0,"boot_files":{"bios":"http://127.0.0.1:9180/boot/files/undionly.kpxe"}}`})
	for _, f := range got {
		if strings.Contains(f, "interface") || strings.Contains(f, "server_ip") {
			t.Errorf("finding about lo: %s", f)
		}
	}
	// server_ip elsewhere than on the interface.
	cfg = loaded(t, `protocol "dhcp" "lan" {
  config {
    interface = "lo"
    server_ip = "192.0.2.250"
  }
}
`)
	got = check(t, cfg, Host{}, map[string]string{"lan": `{"interface":"lo","mode":"proxy","server_ip":"192.0.2.250","port":0,"proxy_port":0,"boot_files":{"bios":"x://y"}}`})
	if len(got) == 0 || !strings.HasPrefix(got[0], `5:17: server_ip 192.0.2.250 is not an address of interface "lo" (it has 127.0.0.1/8`) {
		t.Errorf("findings: %q", got)
	}
}

// TestPortInUse: a port another program holds (a real listener here).
func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	cfg := loaded(t, fmt.Sprintf("http {\n  listen = %q\n}\n", addr))
	got := check(t, cfg, Host{}, nil)
	want(t, got, fmt.Sprintf(`3:12: http.listen %q: port %s/tcp is in use by another program (ss -ltnp 'sport = :%s' names it)`, addr, port, port))
	l.Close()
	// Free again: nothing to say (boot URL http://127.0.0.1:port is on lo).
	want(t, check(t, cfg, Host{}, nil))
}

func TestPortNotChecked(t *testing.T) {
	root := ipxeDir(t, "undionly.kpxe", "snponly.efi")
	cfg := loaded(t, fmt.Sprintf(labConfig, root))
	sys := lab()
	sys.binds = map[string]error{"udp 0.0.0.0:67": syscall.EACCES, "udp 192.168.77.1:69": syscall.EADDRINUSE}
	fs := Check(context.Background(), Input{Config: cfg, Plugins: jsonOf(labPlugins(root)), System: sys})
	var got []string
	for _, f := range fs {
		got = append(got, strings.TrimPrefix(f.String(), cfg.File+":"))
	}
	want(t, got,
		`9:3: note: protocol "dhcp" "lan" port 67: port 67/udp not checked: binding it needs root (or CAP_NET_BIND_SERVICE)`,
		`19:14: protocol "tftp" "tftp" listen "192.168.77.1:69": port 69/udp is in use by another program (ss -lunp 'sport = :69' names it)`)
	if Problems(fs) != 1 {
		t.Errorf("problems %d, want 1 (a note is not one)", Problems(fs))
	}
}

func jsonOf(m map[string]string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		out[k] = []byte(v)
	}
	return out
}

// TestListenAddressNotLocal: a listener on an address no interface has.
func TestListenAddressNotLocal(t *testing.T) {
	cfg := loaded(t, "boot {\n  listen = \"10.9.9.9:9184\"\n}\n")
	want(t, check(t, cfg, lab(), nil),
		`3:12: boot.listen "10.9.9.9:9184": 10.9.9.9 is not an address of this machine (no interface has it), so nothing can listen there`,
		`3:12: boot URL http://10.9.9.9:9184: 10.9.9.9 is not an address of this machine, so machines cannot reach DLS there`)
}

// TestMissingImageSource: an image block whose source does not exist.
func TestMissingImageSource(t *testing.T) {
	cfg := loaded(t, `storage "dir" "local" {}
image "lab" {
  storage = "local"
  source  = "/nonexistent/dls/lab.img"
}
`)
	want(t, check(t, cfg, lab(), nil),
		`5:13: image "lab": source /nonexistent/dls/lab.img cannot be read: no such file or directory`)
	// Relative to the config file, as the host imports it; a folder is not a disk.
	cfg = loaded(t, `storage "dir" "local" {}
image "lab" {
  storage = "local"
  source  = "."
}
`)
	want(t, check(t, cfg, lab(), nil),
		fmt.Sprintf(`5:13: image "lab": source %s is not a file (a raw disk image is)`, filepath.Dir(cfg.File)))
}

// TestBootURLNotAbsolute: http.listen on every address and no boot.url.
func TestBootURLNotAbsolute(t *testing.T) {
	cfg := loaded(t, "http {\n  listen = \"0.0.0.0:9180\"\n}\n")
	want(t, check(t, cfg, lab(), nil),
		`3:12: boot URL is not absolute: http.listen "0.0.0.0:9180" names no address machines can reach, so they would be sent to a relative script URL; set boot { listen = "<boot network address>:9184" } or boot.url = "http://<boot network address>:9184"`)
}

// TestBootURLOffBootInterface: boot.url names an address the boot
// interface does not have.
func TestBootURLOffBootInterface(t *testing.T) {
	root := ipxeDir(t, "undionly.kpxe", "snponly.efi")
	text := strings.Replace(fmt.Sprintf(labConfig, root), "boot {\n  listen = \"192.168.77.1:9184\"\n}", "boot {\n  url = \"http://127.0.0.1:9180\"\n}", 1)
	cfg := loaded(t, text)
	want(t, check(t, cfg, lab(), labPlugins(root)),
		`6:9: boot URL http://127.0.0.1:9180: 127.0.0.1 is not an address of interface "br0", where protocol "dhcp" "lan" answers machines (it has 192.168.77.1/24), so they cannot reach it; use that interface's address`,
		`25:14: protocol "iscsi" "iscsi" listens on 192.168.77.1 only, but boot scripts send machines to 127.0.0.1 (boot.url's host): listen on 127.0.0.1:3260`)
}

// TestBootFiles: each architecture boot_files names needs its file in a
// TFTP root; architectures it does not name are not looked for.
func TestBootFiles(t *testing.T) {
	root := ipxeDir(t, "undionly.kpxe")
	outside := filepath.Join(t.TempDir(), "snponly.efi")
	_ = os.WriteFile(outside, []byte("x"), 0o644)
	cfg := loaded(t, fmt.Sprintf(labConfig, root))
	want(t, check(t, cfg, lab(), labPlugins(root)),
		fmt.Sprintf(`13:17: snponly.efi (the first-stage iPXE build for efi_x64) is not in TFTP root %s: install Debian's package ipxe (apt-get install ipxe) and set the tftp block's root = "/usr/lib/ipxe", or copy the file there`, root))
	// A link out of the root, as Debian's /usr/lib/ipxe/ipxe.efi is.
	if err := os.Symlink(outside, filepath.Join(root, "snponly.efi")); err != nil {
		t.Fatal(err)
	}
	want(t, check(t, cfg, lab(), labPlugins(root)),
		fmt.Sprintf(`13:17: snponly.efi (the first-stage iPXE build for efi_x64) is a link leading out of TFTP root %s, which the TFTP plugin refuses: name a file inside the root (Debian's package ipxe has snponly.efi and undionly.kpxe as files in /usr/lib/ipxe)`, root))
	// Without boot_files: the DHCP plugin's defaults for BIOS and 64-bit
	// UEFI, reported at the DHCP block; a relative root is under the
	// plugin's folder in data_dir.
	cfg = loaded(t, "protocol \"dhcp\" \"lan\" {\n  config {\n    interface = \"br0\"\n  }\n}\nprotocol \"tftp\" \"tftp\" {}\n")
	rel := filepath.Join(filepath.Dir(cfg.File), "var", "plugins", "tftp", "tftp")
	want(t, check(t, cfg, lab(), map[string]string{
		"lan":  `{"interface":"br0","mode":"proxy","port":67,"proxy_port":4011,"boot_files":null}`,
		"tftp": `{"listen":":69","root":"tftp"}`,
	}),
		`1:1: boot URL http://127.0.0.1:9180: 127.0.0.1 is not an address of interface "br0", where protocol "dhcp" "lan" answers machines (it has 192.168.77.1/24), so they cannot reach it; use that interface's address`,
		fmt.Sprintf(`2:1: undionly.kpxe (the DHCP plugin's default for bios; boot_files sets another) is not in TFTP root %s: install Debian's package ipxe (apt-get install ipxe) and set the tftp block's root = "/usr/lib/ipxe", or copy the file there`, rel),
		fmt.Sprintf(`2:1: ipxe.efi (the DHCP plugin's default for efi_x64; boot_files sets another) is not in TFTP root %s: install Debian's package ipxe (apt-get install ipxe) and set the tftp block's root = "/usr/lib/ipxe", or copy the file there`, rel))
}

// TestISCSIPortVsScripts: the iSCSI target on a non-default port. The
// built-in scripts carry it; a site template that names no port (or
// another) is caught at its boot.script attribute.
func TestISCSIPortVsScripts(t *testing.T) {
	root := ipxeDir(t, "undionly.kpxe", "snponly.efi")
	text := strings.Replace(fmt.Sprintf(labConfig, root), "192.168.77.1:3260", "192.168.77.1:3261", 1)
	plugins := labPlugins(root)
	plugins["iscsi"] = `{"listen":"192.168.77.1:3261"}`
	want(t, check(t, loaded(t, text), lab(), plugins))

	tmpl := filepath.Join(t.TempDir(), "site.ipxe")
	if err := os.WriteFile(tmpl, []byte("#!ipxe\nset initiator-iqn {{.InitiatorIQN}}\nsanboot iscsi:{{.Server}}:::0:{{.TargetIQN}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withScript := strings.Replace(text, "boot {\n", fmt.Sprintf("boot {\n  script = %q\n", tmpl), 1)
	want(t, check(t, loaded(t, withScript), lab(), plugins),
		fmt.Sprintf(`6:12: boot script template %s names no iSCSI port ("iscsi:192.168.77.1::": iPXE then uses 3260), but the iSCSI listener (protocol "iscsi" "iscsi") is on port 3261: write the target as {{.ISCSIURI}}`, tmpl))

	// A second iSCSI block on another port than the one scripts name.
	two := text + "protocol \"iscsi\" \"more\" {\n  config {\n    listen = \"192.168.77.1:3262\"\n  }\n}\n"
	plugins["more"] = `{"listen":"192.168.77.1:3262"}`
	want(t, check(t, loaded(t, two), lab(), plugins),
		`30:14: protocol "iscsi" "more" listens on port 3262, but boot scripts name iSCSI port 3261 (the first iscsi block's listen as written, else 3260): machines would not find their disk; give it port 3261`)
}

// TestBootFilesWithoutTFTP: a site with no TFTP block boots UEFI machines
// by UEFI HTTP boot from boot.files: the UEFI first stage must be a file
// there (a link out of it is refused, as /boot/files refuses it); BIOS,
// which has no HTTP boot, and the PXE clients left without TFTP are noted,
// not failed; a first stage fetched from http_boot_url is not checked.
func TestBootFilesWithoutTFTP(t *testing.T) {
	files := ipxeDir(t)
	text := fmt.Sprintf("boot {\n  listen = \"192.168.77.1:9184\"\n  files = %q\n}\nprotocol \"dhcp\" \"lan\" {\n  config {\n    interface = \"br0\"\n  }\n}\n", files)
	cfg := loaded(t, text)
	plugins := map[string]string{"lan": `{"interface":"br0","mode":"full","port":67,"proxy_port":4011,"boot_files":null}`}
	bios := `6:1: note: undionly.kpxe (the DHCP plugin's default for bios; boot_files sets another): no protocol "tftp" block serves it, and BIOS firmware has no HTTP boot: BIOS machines cannot boot (UEFI machines can, by UEFI HTTP boot)`
	want(t, check(t, cfg, lab(), plugins), bios,
		fmt.Sprintf(`6:1: ipxe.efi (the DHCP plugin's default for efi_x64; boot_files sets another) is not in boot.files %s, where UEFI HTTP boot clients fetch it (<boot url>/boot/files/), and no protocol "tftp" block serves it: copy it there from Debian's package ipxe (/usr/lib/ipxe)`, files))
	outside := filepath.Join(t.TempDir(), "ipxe.efi")
	_ = os.WriteFile(outside, []byte("x"), 0o644)
	if err := os.Symlink(outside, filepath.Join(files, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	want(t, check(t, cfg, lab(), plugins), bios,
		fmt.Sprintf(`6:1: ipxe.efi (the DHCP plugin's default for efi_x64; boot_files sets another) is a link leading out of boot.files %s, which /boot/files refuses, and no protocol "tftp" block serves it: copy the file into the folder (Debian's /usr/lib/ipxe/ipxe.efi is such a link; snponly.efi there is a file)`, files))
	_ = os.Remove(filepath.Join(files, "ipxe.efi"))
	_ = os.WriteFile(filepath.Join(files, "ipxe.efi"), []byte("ipxe"), 0o644)
	want(t, check(t, cfg, lab(), plugins), bios,
		fmt.Sprintf(`6:1: note: ipxe.efi (the DHCP plugin's default for efi_x64; boot_files sets another): no protocol "tftp" block: served from boot.files %s to UEFI HTTP boot clients only (PXE firmware needs TFTP)`, files))
	// http_boot_url elsewhere: nothing of this host's to check.
	plugins["lan"] = `{"interface":"br0","mode":"full","port":67,"proxy_port":4011,"boot_files":null,"http_boot_url":"http://192.168.77.9/efi/"}`
	want(t, check(t, cfg, lab(), plugins), bios)
}

// TestBindUDPIPv6: a UDP listener on an IPv6 address (the TFTP plugin's
// listen = "[fd00:77::1]:69") is checked as udp6; udp4 cannot bind it
// ("no suitable address") and warned of a working config.
func TestBindUDPIPv6(t *testing.T) {
	ctx := context.Background()
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	addr := pc.LocalAddr().String()
	if err := (Host{}).Bind(ctx, "udp", addr, ""); !inUse(err) {
		t.Errorf("Bind(udp, %s) while in use: %v, want EADDRINUSE", addr, err)
	}
	pc.Close()
	if err := (Host{}).Bind(ctx, "udp", addr, ""); err != nil {
		t.Errorf("Bind(udp, %s): %v", addr, err)
	}
	if err := (Host{}).Bind(ctx, "udp", "127.0.0.1:0", ""); err != nil {
		t.Errorf("Bind(udp, 127.0.0.1:0): %v", err)
	}
}
