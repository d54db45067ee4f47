//go:build e2e && linux

// A shared LAN is safe (issue 14, acceptance 1): on one bridge, a
// configured client A that holds its lease, a configured client B that is
// off, and an intruder X with an address of its own. X gets no script,
// file or secret of A or B, by MAC in any spelling, over HTTP and TFTP; X
// cannot log in to A's target as A, with or without A's CHAP secret; A
// can; A cannot without CHAP; /boot/done with A's token from X is
// refused. Every refusal is counted in the host's metrics and changes
// nothing. Once in full mode, once in proxy mode beside dnsmasq.
//
// The machines are namespaces, not QEMU: A gets its lease from a real DHCP
// client (busybox udhcpc, with A's MAC on its interface), and in proxy
// mode also DLS's proxy answer from the PXE DISCOVER a PXE ROM sends; X
// and A use curl, tftp-hpa and libiscsi's iscsi-inq, each from its own
// namespace and address.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/e2e/lab"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// secClient is one configured client of the security test.
type secClient struct{ name, mac string }

// secSegment is one boot segment of the security test: A and X on its
// bridge, B configured and off.
type secSegment struct {
	mode   string // "full" or "proxy"
	bridge string
	a, b   secClient
	xIP    string // X's own address (cidr /24), outside every pool
	router string // the segment's router for X (proxy: DLS's namespace)
	// In the test: A's and X's namespaces, A's lease.
	aNS, xNS *lab.NS
	aIP      string
}

var (
	secA  = secClient{"sec-a", "52:54:00:5e:c0:01"}
	secB  = secClient{"sec-b", "52:54:00:5e:c0:02"}
	secPA = secClient{"sec-pa", "52:54:00:5e:c0:03"}
	secPB = secClient{"sec-pb", "52:54:00:5e:c0:04"}
)

// secRun is what every check of the security test shares.
type secRun struct {
	lab   *lab.Lab
	dls   *lab.NS
	host  *lab.Host
	token string // the admin's API token
	dir   string
}

func needSecurityTools(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		skip(t, "needs root (network namespaces); run make e2e")
	}
	if err := lab.Need("ip", "busybox", "curl", "tftp", "iscsi-inq", "dnsmasq"); err != nil {
		skip(t, "%v: make e2e installs busybox curl tftp-hpa libiscsi-bin dnsmasq-base", err)
	}
}

func TestSecurity(t *testing.T) {
	needSecurityTools(t)
	s := setupSecurity(t)
	full := &secSegment{mode: "full", bridge: "br0", a: secA, b: secB, xIP: "192.168.77.50/24", router: fullIP}
	proxy := &secSegment{mode: "proxy", bridge: "br1", a: secPA, b: secPB, xIP: "192.168.78.50/24", router: proxyIP}
	for _, seg := range []*secSegment{full, proxy} {
		t.Run(seg.mode+" mode", func(t *testing.T) { s.segment(t, seg) })
	}
}

// setupSecurity starts DLS with four clients (A and B on each segment)
// whose image has a boot profile with confirm = true, so their scripts
// carry a /boot/done token, and the proxy segment's dnsmasq.
func setupSecurity(t *testing.T) *secRun {
	l := newLab(t, "dls-e2e-sec-")
	s := &secRun{lab: l, dir: l.Dir}
	root, err := lab.RepoRoot()
	must(t, err)
	bin := filepath.Join(l.Dir, "bin")
	must(t, lab.Build(root, bin))

	// The disk: any 8 MiB; the kernel and initrd: files nobody boots (the
	// test only needs the script that names them, and its token).
	image := filepath.Join(l.Dir, "sec.img")
	must(t, os.WriteFile(image, []byte("DLS e2e security disk\n"), 0o644))
	must(t, os.Truncate(image, 8<<20))
	files := filepath.Join(l.Dir, "files")
	must(t, os.MkdirAll(filepath.Join(files, "sec"), 0o755))
	for _, f := range []string{"vmlinuz", "initrd.img"} {
		must(t, os.WriteFile(filepath.Join(files, "sec", f), []byte("not a kernel: "+f+"\n"), 0o644))
	}

	s.dls = twoSegments(t, l, "sec-")

	var clients []lab.HostClient
	for _, c := range []secClient{secA, secB, secPA, secPB} {
		clients = append(clients, lab.HostClient{Name: c.name, MAC: c.mac, Image: "sec"})
	}
	s.host, err = l.StartHost(s.dls, bin, lab.HostConfig{
		BootIP: fullIP,
		Images: []lab.HostImage{{
			Name: "sec", Source: image, Kernel: "sec/vmlinuz", Initrd: "sec/initrd.img",
			Cmdline: "iscsi_auto root=/dev/sda rw console=ttyS0", Confirm: true,
		}},
		Files:   files,
		Clients: clients,
		DHCP: []lab.HostDHCP{
			{Name: "lan", Interface: "br0", Mode: "full", ServerIP: fullIP, PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: fullIP},
			{Name: "pxe", Interface: "br1", Mode: "proxy", ServerIP: proxyIP},
		},
	}, adminPassword)
	must(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.token, err = s.host.Login(ctx, "admin", adminPassword)
	must(t, err)
	return s
}

// machineNS makes namespace role with interface eth0 on the segment's
// bridge, with MAC mac ("" keeps the veth's own).
func (s *secRun) machineNS(t *testing.T, role, port, bridge, mac string) *lab.NS {
	t.Helper()
	ns, err := s.lab.NS(role)
	must(t, err)
	must(t, s.lab.Veth(ns, "eth0", s.dls, port))
	must(t, s.dls.Run("ip", "link", "set", port, "master", bridge))
	if mac != "" {
		must(t, ns.Run("ip", "link", "set", "eth0", "address", mac))
	}
	return ns
}

// udhcpcScript configures the lease as a machine's OS does and prints it.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
	echo "LEASE $ip BOOTFILE ${boot_file:-} SERVER ${siaddr:-}"
	;;
esac
exit 0
`

var leaseLine = regexp.MustCompile(`LEASE (\S+)`)

// lease runs busybox udhcpc in ns until it has a lease and configured it;
// extra are udhcpc options (vendor class and the like).
func (s *secRun) lease(t *testing.T, ns *lab.NS, extra ...string) string {
	t.Helper()
	script := filepath.Join(s.dir, "udhcpc.sh")
	must(t, os.WriteFile(script, []byte(udhcpcScript), 0o755))
	args := append([]string{"timeout", "60", "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "10", "-T", "2", "-s", script}, extra...)
	out, err := ns.Command(args...).CombinedOutput()
	m := leaseLine.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("udhcpc in %s: %v\n%s", ns.Name, err, out)
	}
	t.Logf("%s: %s", ns.Name, strings.TrimSpace(string(out)))
	return m[1]
}

// pxeProxyAnswer sends, from ns with mac, the DHCPDISCOVER iPXE sends
// (vendor class PXEClient, user class iPXE) and waits for DLS's proxyDHCP
// answer (server identifier proxyIP, option 60 PXEClient, no address).
// That answer is what the proxy-mode binding starts from.
func pxeProxyAnswer(t *testing.T, ns *lab.NS, mac string) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	must(t, err)
	var answer *dhcpv4.DHCPv4
	err = ns.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
		if err != nil {
			return err
		}
		defer pc.Close()
		d, err := dhcpv4.New(
			dhcpv4.WithHwAddr(hw),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
			dhcpv4.WithBroadcast(true),
			dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		)
		if err != nil {
			return err
		}
		bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: 67}
		buf := make([]byte, 1500)
		for try := 0; try < 5 && answer == nil; try++ {
			if _, err := pc.WriteTo(d.ToBytes(), bcast); err != nil {
				return err
			}
			deadline := time.Now().Add(2 * time.Second)
			for answer == nil {
				_ = pc.SetReadDeadline(deadline)
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					break
				}
				p, err := dhcpv4.FromBytes(buf[:n])
				if err != nil || p.TransactionID != d.TransactionID || p.OpCode != dhcpv4.OpcodeBootReply {
					continue
				}
				if sid := p.ServerIdentifier(); sid != nil && sid.Equal(net.ParseIP(proxyIP)) {
					answer = p
				}
			}
		}
		if answer == nil {
			return fmt.Errorf("no proxyDHCP answer from %s for %s", proxyIP, mac)
		}
		return nil
	})
	must(t, err)
	return answer
}

// spellings is mac as a URL or TFTP path may name it: dashes (what DLS
// hands out), colons, upper case, both, no separators.
func spellings(mac string) []string {
	dash := strings.ReplaceAll(mac, ":", "-")
	return []string{dash, mac, strings.ToUpper(dash), strings.ToUpper(mac), strings.ReplaceAll(mac, ":", ""),
		strings.ReplaceAll(mac, ":", "%3A")}
}

// curl runs curl in ns; it returns the HTTP status and the body.
func curl(t *testing.T, ns *lab.NS, args ...string) (int, string) {
	t.Helper()
	out, err := ns.Command(append([]string{"curl", "-sS", "--max-time", "15", "-w", "\n%{http_code}"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("curl %v in %s: %v: %s", args, ns.Name, err, ee.Stderr)
		}
		t.Fatalf("curl %v in %s: %v", args, ns.Name, err)
	}
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	var code int
	fmt.Sscanf(s[i+1:], "%d", &code)
	return code, s[:i]
}

// tftpGet fetches file from DLS's TFTP server with tftp-hpa in ns. It
// returns the content if served; otherwise the server's error, and fails
// t when the server never answered (a refusal must be the server's
// ERROR packet, not a lost request).
func (s *secRun) tftpGet(t *testing.T, ns *lab.NS, file string) (string, bool, string) {
	t.Helper()
	dst := filepath.Join(s.dir, fmt.Sprintf("tftp-%d", time.Now().UnixNano()))
	defer os.Remove(dst)
	// host:file: tftp-hpa would take what precedes a colon in the file
	// name (52:54:…) for a host. It exits 0 on an ERROR packet too.
	out, err := ns.Command("timeout", "20", "tftp", fullIP, "-m", "binary", "-c", "get", fullIP+":"+file, dst).CombinedOutput()
	said := strings.TrimSpace(string(out))
	b, rerr := os.ReadFile(dst)
	if err == nil && rerr == nil && len(b) > 0 && !strings.Contains(said, "Error code") {
		return string(b), true, ""
	}
	if !strings.Contains(said, "Error code") {
		t.Errorf("tftp get %s from %s: no answer from the server (%v): %s", file, ns.Name, err, said)
	}
	return "", false, said
}

func (s *secRun) metrics(t *testing.T) lab.Metrics {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	text, err := s.host.Scrape(ctx)
	must(t, err)
	return lab.ParseMetrics(text)
}

func (s *secRun) sessions(t *testing.T, client string) []lab.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ss, err := s.host.Sessions(ctx, s.token, client)
	must(t, err)
	return ss
}

// counted fails t unless family's total grew from before to now: the
// host counted the refusals just made (label values are the host's).
func (s *secRun) counted(t *testing.T, what, family string, before lab.Metrics) {
	t.Helper()
	b, a := before.Sum(family), s.metrics(t).Sum(family)
	if a <= b {
		t.Errorf("%s: %s stayed at %.0f: the refusals were not counted", what, family, b)
	} else {
		t.Logf("%s: %s %.0f → %.0f", what, family, b, a)
	}
}

var (
	passwordLine = regexp.MustCompile(`(?m)^set password (\S+)`)
	usernameLine = regexp.MustCompile(`(?m)^set username (\S+)`)
	reverseLine  = regexp.MustCompile(`(?m)^set reverse-password (\S+)`)
	tokenArg     = regexp.MustCompile(`dls\.token=(\S+)`)
	initiatorSet = regexp.MustCompile(`(?m)^set initiator-iqn (\S+)`)
	targetLine   = regexp.MustCompile(`iscsi:[^:\s]*:[^:\s]*:[^:\s]*:[^:\s]*:(\S+)`)
)

// iscsiInq runs libiscsi's iscsi-inq in ns as initiator against LUN 0 of
// target, with CHAP when secret is set; nil means the login succeeded.
// Without CHAP libiscsi starts its login in the operational stage
// (CSG=1): the stage the bypass of issue 14 used.
func iscsiInq(ns *lab.NS, initiatorIQN, user, secret, target string) (string, error) {
	cred := ""
	if secret != "" {
		cred = user + "%" + secret + "@"
	}
	url := fmt.Sprintf("iscsi://%s%s/%s/0", cred, fullIP, target)
	out, err := ns.Command("timeout", "30", "iscsi-inq", "-i", initiatorIQN, url).CombinedOutput()
	return string(out), err
}

// segment runs every check of one segment.
func (s *secRun) segment(t *testing.T, seg *secSegment) {
	short := seg.mode[:1]
	seg.aNS = s.machineNS(t, "sec-"+short+"a", "s"+short+"a", seg.bridge, seg.a.mac)
	seg.xNS = s.machineNS(t, "sec-"+short+"x", "s"+short+"x", seg.bridge, "")
	must(t, seg.xNS.Run("ip", "addr", "add", seg.xIP, "dev", "eth0"))
	must(t, seg.xNS.Run("ip", "route", "add", "default", "via", seg.router))

	// A powers on: its lease, as its firmware and OS would get it.
	if seg.mode == "full" {
		// As iPXE asks: vendor class PXEClient, user class (77) "iPXE".
		seg.aIP = s.lease(t, seg.aNS, "-V", "PXEClient:Arch:00000:UNDI:002001", "-x", "0x4d:69505845")
	} else {
		// The site's dnsmasq gives the address; DLS answers the PXE
		// DISCOVER as proxyDHCP with the script's URL.
		seg.aIP = s.lease(t, seg.aNS)
		p := pxeProxyAnswer(t, seg.aNS, seg.a.mac)
		t.Logf("proxyDHCP answer for %s: boot file %q, next server %s", seg.a.name, p.BootFileNameOption(), p.ServerIPAddr)
	}
	xIP, _, _ := strings.Cut(seg.xIP, "/")
	t.Logf("%s: A (%s) at %s, X at %s, B (%s) off", seg.mode, seg.a.name, seg.aIP, xIP, seg.b.name)

	// A reads its own script, from its own address, first (in proxy mode
	// that is the first use that binds the boot).
	code, aScript := curl(t, seg.aNS, fmt.Sprintf("http://%s:9180/boot/%s.ipxe", fullIP, strings.ReplaceAll(seg.a.mac, ":", "-")))
	if code != 200 {
		t.Fatalf("A's own script from A's address: HTTP %d: %s", code, aScript)
	}
	initiatorIQN, target := firstMatch(initiatorSet, aScript), firstMatch(targetLine, aScript)
	user, secret, token := firstMatch(usernameLine, aScript), firstMatch(passwordLine, aScript), firstMatch(tokenArg, aScript)
	if initiatorIQN == "" || target == "" || token == "" {
		t.Fatalf("A's script names no initiator, target or token:\n%s", aScript)
	}
	if secret == "" {
		t.Errorf("A's script carries no CHAP secret (set password): CHAP is not on by default:\n%s", aScript)
	}
	if user == "" {
		user = initiatorIQN
	}
	// Everything X must never see of A.
	secrets := map[string]string{"A's token": token}
	if secret != "" {
		secrets["A's CHAP secret"] = secret
	}
	if rs := firstMatch(reverseLine, aScript); rs != "" {
		secrets["A's mutual CHAP secret"] = rs
	}
	leaked := func(t *testing.T, where, body string) {
		t.Helper()
		for what, v := range secrets {
			if strings.Contains(body, v) {
				t.Errorf("%s: X got %s", where, what)
			}
		}
		if strings.Contains(body, initiatorIQN) || strings.Contains(body, "#!ipxe") {
			t.Errorf("%s: X got a script:\n%s", where, body)
		}
	}
	aSessions := len(s.sessions(t, seg.a.name))

	t.Run("X gets no script of A or B over HTTP", func(t *testing.T) {
		before := s.metrics(t)
		for _, c := range []secClient{seg.a, seg.b} {
			for _, m := range spellings(c.mac) {
				for _, path := range []string{"/boot/" + m + ".ipxe", "/boot/" + m + ".ipxe?platform=efi"} {
					code, body := curl(t, seg.xNS, "http://"+fullIP+":9180"+path)
					if code != 404 {
						t.Errorf("X GET %s (%s): HTTP %d, want 404", path, c.name, code)
					}
					leaked(t, "GET "+path, body)
				}
			}
		}
		s.counted(t, "X's HTTP requests", "dls_boot_refused_total", before)
	})

	t.Run("X gets no script of A or B over TFTP", func(t *testing.T) {
		before := s.metrics(t)
		for _, c := range []secClient{seg.a, seg.b} {
			for _, m := range spellings(c.mac) {
				if strings.Contains(m, "%") {
					continue // URL encoding: HTTP only
				}
				file := "mac/" + m + ".ipxe"
				body, ok, said := s.tftpGet(t, seg.xNS, file)
				if ok {
					t.Errorf("X TFTP %s (%s): served %d bytes", file, c.name, len(body))
				} else {
					t.Logf("X TFTP %s: %s", file, said)
				}
				leaked(t, "TFTP "+file, body)
			}
		}
		s.counted(t, "X's TFTP requests", "dls_boot_refused_total", before)
	})

	t.Run("X cannot post /boot/done with A's token", func(t *testing.T) {
		before := s.metrics(t)
		code, body := curl(t, seg.xNS, "--data-urlencode", "token="+token, "http://"+fullIP+":9180/boot/done")
		if code/100 == 2 {
			t.Errorf("X POST /boot/done with A's token: HTTP %d %q, want a refusal", code, body)
		}
		s.counted(t, "X's /boot/done", "dls_boot_refused_total", before)
		for _, ss := range s.sessions(t, seg.a.name) {
			if _, booted := ss.Stages["booted"]; booted {
				t.Errorf("A's session %d reached booted by X's post: %s", ss.ID, ss.StageList(", "))
			}
		}
	})

	t.Run("X cannot log in to A's target", func(t *testing.T) {
		before := s.metrics(t)
		if out, err := iscsiInq(seg.xNS, initiatorIQN, "", "", target); err == nil {
			t.Errorf("X logged in to %s as %s without CHAP:\n%s", target, initiatorIQN, out)
		}
		if secret != "" {
			if out, err := iscsiInq(seg.xNS, initiatorIQN, user, secret, target); err == nil {
				t.Errorf("X logged in to %s as %s with A's CHAP secret (from X's address):\n%s", target, initiatorIQN, out)
			}
		}
		s.counted(t, "X's logins", "dls_iscsi_errors_total", before)
	})

	t.Run("X's attempts changed nothing", func(t *testing.T) {
		if n := len(s.sessions(t, seg.a.name)); n != aSessions {
			t.Errorf("A's boot sessions: %d before X's requests, %d after", aSessions, n)
		}
		if ss := s.sessions(t, seg.b.name); len(ss) != 0 {
			t.Errorf("B is off, yet has %d boot sessions (first: %s from %s)", len(ss), ss[0].StageList(", "), ss[0].Address)
		}
	})

	t.Run("A without CHAP is refused", func(t *testing.T) {
		if secret == "" {
			t.Fatal("A's script has no CHAP secret: nothing to refuse without it")
		}
		before := s.metrics(t)
		if out, err := iscsiInq(seg.aNS, initiatorIQN, "", "", target); err == nil {
			t.Errorf("A logged in to %s without CHAP from its own address:\n%s", target, out)
		}
		s.counted(t, "A's login without CHAP", "dls_iscsi_errors_total", before)
	})

	t.Run("A reads its script over TFTP", func(t *testing.T) {
		file := "mac/" + strings.ReplaceAll(seg.a.mac, ":", "-") + ".ipxe"
		body, ok, said := s.tftpGet(t, seg.aNS, file)
		if !ok {
			t.Fatalf("A TFTP %s from its own address: %s", file, said)
		}
		if !strings.Contains(body, initiatorIQN) {
			t.Errorf("A TFTP %s: not A's script:\n%s", file, body)
		}
		// A boots from the script it read last: if the host renders
		// secrets or tokens per script, these are the current ones.
		if v := firstMatch(passwordLine, body); v != "" && v != secret {
			t.Logf("A's TFTP copy of its script has another CHAP secret than its HTTP copy: A uses the last")
			secret = v
		}
		if v := firstMatch(tokenArg, body); v != "" {
			token = v
		}
	})

	t.Run("A logs in to its target", func(t *testing.T) {
		out, err := iscsiInq(seg.aNS, initiatorIQN, user, secret, target)
		if err != nil {
			t.Fatalf("A's login to %s as %s from %s (CHAP %v): %v\n%s", target, initiatorIQN, seg.aIP, secret != "", err, out)
		}
	})

	t.Run("A confirms its boot", func(t *testing.T) {
		code, body := curl(t, seg.aNS, "--data-urlencode", "token="+token, "http://"+fullIP+":9180/boot/done")
		if code != 200 {
			t.Fatalf("A POST /boot/done: HTTP %d %q", code, body)
		}
		booted := false
		for _, ss := range s.sessions(t, seg.a.name) {
			if _, ok := ss.Stages["booted"]; ok {
				booted = true
			}
		}
		if !booted {
			t.Errorf("A's /boot/done was answered %q, yet no session of %s reached booted", body, seg.a.name)
		}
	})
}

func firstMatch(re *regexp.Regexp, s string) string {
	if m := re.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}
