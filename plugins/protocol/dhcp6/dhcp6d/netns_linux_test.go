package dhcp6d

// Tests against real peers in network namespaces: the whole host (bin/dls
// serve, this plugin as its supervised subprocess, the SQLite store) runs
// in one namespace, ISC dhclient -6 and perfdhcp -6 in another, on a veth
// pair with IPv6 only. They need root; without it they skip (and fail when
// CI is set).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/plugins/protocol/internal/netnstest"
)

// lab holds this package's namespaces and built programs.
var lab = &netnstest.Lab{
	Prefix:   "dl6t",
	Install:  "apt-get install isc-dhcp-client kea-admin",
	Packages: map[string]string{"plugins/dls-protocol-dhcp6": "github.com/dls-project/dls/plugins/protocol/dhcp6"},
}

func TestMain(m *testing.M) { lab.Main(m) }

// netns creates a network namespace with IPv6 duplicate address
// detection off (addresses usable at once).
func netns(t *testing.T, role string) string {
	return lab.Netns(t, role, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
}

// v6Net is two namespaces on a veth, IPv6 only: the server's
// (fd00:99::1/64 on vsrv) and the clients' (vcli, MAC cliMAC, link-local
// only).
func v6Net(t *testing.T) (srv, cli string) {
	srv, cli = netns(t, "srv"), netns(t, "cli")
	lab.Link(t, srv, "vsrv", cli, "vcli")
	netnstest.Run(t, netnstest.InNS(cli, "ip", "link", "set", "vcli", "address", cliMAC)...)
	netnstest.Run(t, netnstest.InNS(srv, "ip", "addr", "add", "fd00:99::1/64", "dev", "vsrv", "nodad")...)
	netnstest.Run(t, netnstest.InNS(srv, "ip", "link", "set", "vsrv", "up")...)
	netnstest.Run(t, netnstest.InNS(cli, "ip", "link", "set", "vcli", "up")...)
	// The client's link-local address is its source: wait until it is
	// there (it is not tentative: no DAD).
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(netnstest.Run(t, netnstest.InNS(cli, "ip", "-6", "addr", "show", "dev", "vcli", "scope", "link")...), "fe80::") {
		if time.Now().After(deadline) {
			t.Fatal("vcli has no link-local address")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return srv, cli
}

const cliMAC = "52:54:00:66:00:01"

const hostConfig = `data_dir   = %q
plugin_dir = %q
http {
  listen = "` + netnstest.HTTPAddr + `"
}
boot {
  url = "http://10.99.0.1:9180"
}
storage "file" "files" {}
image "lab" {
  storage = "files"
  source  = %q
}
client "pc-1" {
  mac   = %q
  image = "lab"
}
protocol "dhcp6" "lan6" {
  config {
    interface  = "vsrv"
    server_ip  = "fd00:99::1"
    boot_url   = "http://[fd00:99::1]:9184"
    dns        = ["fd00:99::53"]
    preference = 255
    pool {
      name  = "lan6"
      start = "fd00:99::1:0"
      end   = "fd00:99::ffff:ffff"
    }
  }
}
`

// startHost writes the config and runs the host in ns until the test
// ends.
func startHost(t *testing.T, ns string) *netnstest.Host {
	t.Helper()
	return lab.StartHost(t, ns, func(p netnstest.Paths) string {
		return fmt.Sprintf(hostConfig, p.DataDir, p.PluginDir, p.Image, cliMAC)
	})
}

// dhclient6 runs ISC dhclient -6 once on vcli in cli with conf, and
// returns what its script saw (the environment of each call).
func dhclient6(t *testing.T, cli, dir, conf string) string {
	t.Helper()
	out := filepath.Join(dir, "dhclient6.out")
	script := filepath.Join(dir, "dhclient6.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n{ echo \"reason=$reason\"; env | grep '^new_' | sort; } >> "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(dir, "dhclient6.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "dhclient6.pid")
	args := netnstest.InNS(cli, "dhclient", "-6", "-1", "-v", "-cf", cf, "-sf", script, "-lf", filepath.Join(dir, "dhclient6.leases"), "-pf", pidFile, "vcli")
	b, err := netnstest.RunTimeout(exec.Command(args[0], args[1:]...), 60*time.Second)
	if pid, perr := os.ReadFile(pidFile); perr == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(pid))); n > 0 {
			_ = syscall.Kill(n, syscall.SIGKILL)
		}
	}
	if err != nil {
		t.Fatalf("dhclient -6: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("dhclient -6 ran no script: %v\n%s", err, b)
	}
	return string(got)
}

// TestDhclient6GetsAddressAndBootURL: ISC dhclient -6, saying it is UEFI
// x64 firmware (option 61) and asking for option 59, gets an address of
// the pool, the DNS server and the tftp:// boot URL with the server's
// bracketed address; with user class iPXE, the boot script URL on the
// configured IPv6 boot_url. Its lease is in the host's store.
func TestDhclient6GetsAddressAndBootURL(t *testing.T) {
	lab.NeedRoot(t, "dhclient", "sysctl")
	srv, cli := v6Net(t)
	h := startHost(t, srv)
	dir := t.TempDir()
	const conf = `option dhcp6.arch-type code 61 = unsigned integer 16;
option dhcp6.boot-url code 59 = string;
option dhcp6.user-class-raw code 15 = string;
send dhcp6.arch-type 7;
also request dhcp6.boot-url;
`
	got := dhclient6(t, cli, dir, conf)
	m := regexp.MustCompile(`(?m)^new_ip6_address=(\S+)$`).FindStringSubmatch(got)
	if !strings.Contains(got, "reason=BOUND6") || m == nil || !strings.HasPrefix(m[1], "fd00:99::") {
		t.Fatalf("dhclient -6 got:\n%s", got)
	}
	addr := m[1]
	if !strings.Contains(got, "new_dhcp6_boot_url=tftp://[fd00:99::1]/ipxe.efi") {
		t.Errorf("no tftp boot URL in:\n%s", got)
	}
	if !strings.Contains(got, "new_dhcp6_name_servers=fd00:99::53") {
		t.Errorf("no DNS server in:\n%s", got)
	}
	if v := h.Metric(`dls_dhcp6_pool_active_leases{plugin="lan6",pool="lan6"}`); v != 1 {
		t.Errorf("active leases %v, want 1", v)
	}
	if v := h.Metric(`dls_dhcp6_requests_total{plugin="lan6",result="replied",type="request"}`); v < 1 {
		t.Errorf("requests_total{request,replied} = %v", v)
	}

	// iPXE (user class "iPXE", RFC 3004 form: a length, then the text):
	// the boot script URL, rebased on boot_url. A new lease file: a new
	// DUID-LLT of the same MAC, the same address.
	dir2 := t.TempDir()
	got = dhclient6(t, cli, dir2, conf+"send dhcp6.user-class-raw 00:04:69:50:58:45;\n")
	if !regexp.MustCompile(`new_dhcp6_boot_url=http://\[fd00:99::1\]:9184/boot/\S+`).MatchString(got) {
		t.Errorf("iPXE got no script URL on boot_url:\n%s", got)
	}
	if !strings.Contains(got, "new_ip6_address="+addr+"\n") {
		t.Errorf("the same MAC got another address than %s:\n%s", addr, got)
	}

	t.Logf("dhclient -6 (arch 7, then iPXE): %s, %s", addr, regexp.MustCompile(`new_dhcp6_boot_url=\S+`).FindString(got))

	// The lease is durable: in the host's SQLite store.
	h.Stop()
	st, err := sqlite.Open(context.Background(), filepath.Join(h.DataDir(), "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls, err := st.LoadLeases(context.Background(), "lan6")
	if err != nil || len(ls) != 1 || ls[0].Address.String() != addr || ls[0].MAC != cliMAC {
		t.Errorf("stored leases %+v, %v; want %s for %s", ls, err, addr, cliMAC)
	}
}

// TestPerfdhcp6 runs perfdhcp -6 (4-way exchanges, distinct DUIDs) at a
// low rate against the host, direct and as a relay (-A 1: every message in
// a Relay-forward, answered by Relay-reply): every exchange must be
// answered.
func TestPerfdhcp6(t *testing.T) {
	lab.NeedRoot(t, "perfdhcp", "sysctl")
	srv, cli := v6Net(t)
	h := startHost(t, srv)
	perf := func(extra ...string) (advertises, replies int) {
		t.Helper()
		args := netnstest.InNS(cli, append([]string{"perfdhcp", "-6", "-l", "vcli", "-r", "100", "-R", "300", "-p", "3"}, extra...)...)
		b, err := netnstest.RunTimeout(exec.Command(args[0], args[1:]...), 60*time.Second)
		var exit *exec.ExitError
		if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
			t.Fatalf("perfdhcp -6 %v: %v\n%s", extra, err, b)
		}
		recv := regexp.MustCompile(`received packets: (\d+)`).FindAllStringSubmatch(string(b), -1)
		if len(recv) != 2 {
			t.Fatalf("perfdhcp -6 %v output:\n%s", extra, b)
		}
		advertises, _ = strconv.Atoi(recv[0][1])
		replies, _ = strconv.Atoi(recv[1][1])
		if advertises < 250 || replies < 250 {
			t.Errorf("perfdhcp -6 %v: %d/%d answers received, want ~300 each:\n%s", extra, advertises, replies, b)
		}
		return advertises, replies
	}
	a, r := perf()
	if v := h.Metric(`dls_dhcp6_pool_active_leases{plugin="lan6",pool="lan6"}`); v < 250 {
		t.Errorf("active leases %v after perfdhcp, want ~300", v)
	}
	ra, rr := perf("-A", "1")
	if v := h.Metric(`dls_dhcp6_errors_total{plugin="lan6",reason="malformed"}`); v != 0 {
		t.Errorf("%v of perfdhcp's messages counted malformed", v)
	}
	t.Logf("perfdhcp -6: %d/%d Advertises/Replies; relayed (-A 1): %d/%d", a, r, ra, rr)
}
