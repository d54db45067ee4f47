package dhcpd

// Tests against real peers in network namespaces: the whole host (bin/dls
// serve, the plugin as its supervised subprocess, the SQLite store) runs
// in one namespace, real DHCP clients (busybox udhcpc, ISC dhclient,
// perfdhcp), dnsmasq and a Go test client in others. They need root;
// without it they skip (and fail when CI is set).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/plugins/protocol/internal/netnstest"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/sys/unix"
)

// lab holds this package's namespaces and built programs.
var lab = &netnstest.Lab{
	Prefix:   "dlst",
	Install:  "apt-get install busybox isc-dhcp-client dnsmasq-base kea-admin",
	Packages: map[string]string{"plugins/dls-protocol-dhcp": "github.com/dls-project/dls/plugins/protocol/dhcp"},
}

func TestMain(m *testing.M) { lab.Main(m) }

const hostHeader = `data_dir   = %q
plugin_dir = %q
http {
  listen = "` + netnstest.HTTPAddr + `"
}
boot {
  url = "http://%s:9180"
}
storage "file" "files" {}
image "lab" {
  storage = "files"
  source  = %q
}
`

// startHost writes a config (the header above, then body) and runs the
// host in ns until the test ends.
func startHost(t *testing.T, ns, serverIP, body string) *netnstest.Host {
	t.Helper()
	return lab.StartHost(t, ns, func(p netnstest.Paths) string {
		return fmt.Sprintf(hostHeader, p.DataDir, p.PluginDir, serverIP, p.Image) + body
	})
}

// fullModeNet is two namespaces on a veth: the server's (10.99.0.1/16 on
// vsrv) and the clients' (vcli, no address).
func fullModeNet(t *testing.T) (srv, cli string) {
	srv, cli = lab.Netns(t, "srv"), lab.Netns(t, "cli")
	lab.Veth(t, srv, "vsrv", cli, "vcli")
	netnstest.Run(t, netnstest.InNS(srv, "ip", "addr", "add", "10.99.0.1/16", "dev", "vsrv")...)
	return srv, cli
}

const fullModeDHCP = `
protocol "dhcp" "lan" {
  config {
    interface = "vsrv"
    mode      = "full"
    server_ip = "10.99.0.1"
    dns       = ["10.99.0.53"]
    pool {
      name       = "lan"
      start      = "10.99.1.10"
      end        = "10.99.63.250"
      netmask    = "255.255.0.0"
      router     = "10.99.0.1"
      lease_time = "1h"
    }
  }
}
`

func TestRealClientsGetAddresses(t *testing.T) {
	lab.NeedRoot(t, "busybox", "dhclient", "perfdhcp")
	srv, cli := fullModeNet(t)
	h := startHost(t, srv, "10.99.0.1", fullModeDHCP)
	dir := t.TempDir()
	inPool := func(s string) bool {
		a, err := netip.ParseAddr(s)
		return err == nil && a.Compare(netip.MustParseAddr("10.99.1.10")) >= 0 && a.Compare(netip.MustParseAddr("10.99.63.250")) <= 0
	}

	// busybox udhcpc: its script prints what it was given.
	script := filepath.Join(dir, "udhcpc.sh")
	out := filepath.Join(dir, "udhcpc.out")
	netnstest.WriteScript(t, script, fmt.Sprintf("#!/bin/sh\necho \"$1 ip=$ip mask=$subnet router=$router dns=$dns lease=$lease\" >> %s\n", out))
	args := netnstest.InNS(cli, "busybox", "udhcpc", "-i", "vcli", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s", script)
	if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("udhcpc: %v\n%s", err, b)
	}
	got := netnstest.ReadFile(t, out)
	m := regexp.MustCompile(`bound ip=(\S+) mask=255.255.0.0 router=10.99.0.1 dns=10.99.0.53 lease=3600`).FindStringSubmatch(got)
	if m == nil || !inPool(m[1]) {
		t.Fatalf("udhcpc got: %s", got)
	}
	udhcpcAddr := m[1]

	// ISC dhclient, same interface (same MAC): the same address back.
	script = filepath.Join(dir, "dhclient.sh")
	out = filepath.Join(dir, "dhclient.out")
	netnstest.WriteScript(t, script, fmt.Sprintf("#!/bin/sh\necho \"$reason ip=$new_ip_address mask=$new_subnet_mask router=$new_routers\" >> %s\n", out))
	pidFile := filepath.Join(dir, "dhclient.pid")
	args = netnstest.InNS(cli, "dhclient", "-1", "-sf", script, "-lf", filepath.Join(dir, "dhclient.leases"), "-pf", pidFile, "vcli")
	cmd := exec.Command(args[0], args[1:]...)
	b, err := netnstest.RunTimeout(cmd, 60*time.Second)
	if pid, perr := os.ReadFile(pidFile); perr == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(pid))); n > 0 {
			_ = syscall.Kill(n, syscall.SIGKILL)
		}
	}
	if err != nil {
		t.Fatalf("dhclient: %v\n%s", err, b)
	}
	got = netnstest.ReadFile(t, out)
	if !strings.Contains(got, "BOUND ip="+udhcpcAddr+" mask=255.255.0.0 router=10.99.0.1") {
		t.Fatalf("dhclient got %q, want BOUND with %s (the MAC's address)", got, udhcpcAddr)
	}

	// A second MAC gets a different address.
	netnstest.Run(t, netnstest.InNS(cli, "ip", "link", "add", "link", "vcli", "name", "mv1", "address", "52:54:00:99:00:01", "type", "macvlan", "mode", "bridge")...)
	netnstest.Run(t, netnstest.InNS(cli, "ip", "link", "set", "mv1", "up")...)
	out = filepath.Join(dir, "udhcpc2.out")
	netnstest.WriteScript(t, filepath.Join(dir, "udhcpc2.sh"), fmt.Sprintf("#!/bin/sh\necho \"$1 ip=$ip\" >> %s\n", out))
	args = netnstest.InNS(cli, "busybox", "udhcpc", "-i", "mv1", "-n", "-q", "-f", "-t", "5", "-T", "2", "-s", filepath.Join(dir, "udhcpc2.sh"))
	if b, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("udhcpc on mv1: %v\n%s", err, b)
	}
	m = regexp.MustCompile(`bound ip=(\S+)`).FindStringSubmatch(netnstest.ReadFile(t, out))
	if m == nil || !inPool(m[1]) || m[1] == udhcpcAddr {
		t.Fatalf("second MAC got %v (first has %s)", m, udhcpcAddr)
	}
	if v := h.Metric(`dls_dhcp_pool_active_leases{plugin="lan",pool="lan"}`); v != 2 {
		t.Errorf("active leases %v, want 2", v)
	}

	// perfdhcp is a relay (giaddr = its address, from port 67): answers
	// must go to giaddr:67 for it to see any.
	netnstest.Run(t, netnstest.InNS(cli, "ip", "addr", "add", "10.99.0.2/16", "dev", "vcli")...)
	args = netnstest.InNS(cli, "perfdhcp", "-4", "-l", "vcli", "-r", "200", "-R", "300", "-p", "3", "10.99.0.1")
	b, err = netnstest.RunTimeout(exec.Command(args[0], args[1:]...), 60*time.Second)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		t.Fatalf("perfdhcp: %v\n%s", err, b)
	}
	recv := regexp.MustCompile(`received packets: (\d+)`).FindAllStringSubmatch(string(b), -1)
	if len(recv) != 2 {
		t.Fatalf("perfdhcp output:\n%s", b)
	}
	for i, r := range recv {
		if n, _ := strconv.Atoi(r[1]); n < 500 {
			t.Errorf("perfdhcp exchange %d: %s answers received, want ~600:\n%s", i, r[1], b)
		}
	}
	t.Logf("udhcpc and dhclient: %s; second MAC: %s; perfdhcp: %s/%s OFFERs/ACKs", udhcpcAddr, m[1], recv[0][1], recv[1][1])
}

// udpIn opens a UDP socket in ns on addr (":68", "10.99.0.2:67"), bound
// to ifname when set, broadcasts allowed.
func udpIn(t *testing.T, ns, ifname, addr string) net.PacketConn {
	t.Helper()
	var conn net.PacketConn
	err := netnstest.EnterNS(ns, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_BROADCAST, 1)
				if serr == nil && ifname != "" {
					serr = unix.BindToDevice(int(fd), ifname)
				}
			})
			return errors.Join(err, serr)
		}}
		var err error
		conn, err = lc.ListenPacket(context.Background(), "udp4", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// collect reads replies for xid until d passes.
func collect(conn net.PacketConn, xid dhcpv4.TransactionID, d time.Duration) []*dhcpv4.DHCPv4 {
	var out []*dhcpv4.DHCPv4
	deadline := time.Now().Add(d)
	buf := make([]byte, 2048)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return out
		}
		p, err := dhcpv4.FromBytes(buf[:n])
		if err == nil && p.OpCode == dhcpv4.OpcodeBootReply && p.TransactionID == xid {
			out = append(out, p)
		}
	}
}

func TestProxyModeBesideDnsmasq(t *testing.T) {
	lab.NeedRoot(t, "dnsmasq")
	// One segment (a bridge in lan): the site's DHCP server (dnsmasq, no
	// PXE options), DLS in proxy mode, and a PXE client.
	lan, site, dls, cli := lab.Netns(t, "lan"), lab.Netns(t, "site"), lab.Netns(t, "dls"), lab.Netns(t, "pxe")
	netnstest.Run(t, netnstest.InNS(lan, "ip", "link", "add", "br0", "type", "bridge")...)
	netnstest.Run(t, netnstest.InNS(lan, "ip", "link", "set", "br0", "up")...)
	for _, p := range []struct{ ns, ifname, port string }{{site, "vsite", "psite"}, {dls, "vdls", "pdls"}, {cli, "vcli", "pcli"}} {
		lab.Veth(t, p.ns, p.ifname, lan, p.port)
		netnstest.Run(t, netnstest.InNS(lan, "ip", "link", "set", p.port, "master", "br0")...)
	}
	const mac = "52:54:00:12:34:56"
	netnstest.Run(t, netnstest.InNS(cli, "ip", "link", "set", "vcli", "address", mac)...)
	netnstest.Run(t, netnstest.InNS(site, "ip", "addr", "add", "10.98.0.1/24", "dev", "vsite")...)
	netnstest.Run(t, netnstest.InNS(dls, "ip", "addr", "add", "10.98.0.2/24", "dev", "vdls")...)

	dir := t.TempDir()
	args := netnstest.InNS(site, "dnsmasq", "--no-daemon", "--port=0", "--interface=vsite", "--bind-interfaces",
		"--dhcp-range=10.98.0.100,10.98.0.150,255.255.255.0,1h", "--dhcp-leasefile="+filepath.Join(dir, "dnsmasq.leases"),
		"--pid-file="+filepath.Join(dir, "dnsmasq.pid"), "--no-resolv", "--no-hosts", "--conf-file=/dev/null")
	dnsmasq := exec.Command(args[0], args[1:]...)
	var dnsmasqLog strings.Builder
	dnsmasq.Stdout, dnsmasq.Stderr = &dnsmasqLog, &dnsmasqLog
	if err := dnsmasq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dnsmasq.Process.Kill(); _ = dnsmasq.Wait() })

	startHost(t, dls, "10.98.0.2", `
client "pc1" {
  mac   = "`+mac+`"
  image = "lab"
}
protocol "dhcp" "pxe" {
  config {
    interface = "vdls"
    mode      = "proxy"
    server_ip = "10.98.0.2"
  }
}
`)
	conn := udpIn(t, cli, "vcli", "0.0.0.0:68")
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: 67}
	uuid := append([]byte{0}, []byte("0123456789abcdef")...)
	pxeMods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid)),
		dhcpv4.WithBroadcast(true),
	}
	disc, _ := dhcpv4.NewDiscovery(hw(mac), pxeMods...)
	var site1, proxy *dhcpv4.DHCPv4
	for try := 0; try < 10 && (site1 == nil || proxy == nil); try++ {
		if _, err := conn.WriteTo(disc.ToBytes(), bcast); err != nil {
			t.Fatal(err)
		}
		for _, r := range collect(conn, disc.TransactionID, 2*time.Second) {
			switch sid := r.ServerIdentifier().String(); sid {
			case "10.98.0.1":
				site1 = r
			case "10.98.0.2":
				proxy = r
			}
		}
	}
	if site1 == nil || proxy == nil {
		t.Fatalf("offers: site %v, proxy %v; dnsmasq log:\n%s", site1, proxy, dnsmasqLog.String())
	}
	if site1.YourIPAddr.IsUnspecified() || site1.BootFileName != "" || site1.Options.Get(dhcpv4.OptionClassIdentifier) != nil {
		t.Errorf("site's OFFER: %s", site1.Summary())
	}
	if !proxy.YourIPAddr.IsUnspecified() || proxy.BootFileName != "undionly.kpxe" ||
		string(proxy.Options.Get(dhcpv4.OptionClassIdentifier)) != "PXEClient" || !proxy.ServerIPAddr.Equal(net.ParseIP("10.98.0.2")) ||
		string(proxy.Options.Get(dhcpv4.OptionClientMachineIdentifier)) != string(uuid) {
		t.Errorf("proxy OFFER: %s", proxy.Summary())
	}

	// The address from the site's server...
	req, _ := dhcpv4.NewRequestFromOffer(site1, pxeMods...)
	var ack *dhcpv4.DHCPv4
	for try := 0; try < 5 && ack == nil; try++ {
		_, _ = conn.WriteTo(req.ToBytes(), bcast)
		for _, r := range collect(conn, req.TransactionID, 2*time.Second) {
			if r.MessageType() == dhcpv4.MessageTypeAck && r.ServerIdentifier().Equal(net.ParseIP("10.98.0.1")) {
				ack = r
			}
			if r.ServerIdentifier().Equal(net.ParseIP("10.98.0.2")) {
				t.Errorf("DLS answered a REQUEST for the site's server: %s", r.Summary())
			}
		}
	}
	if ack == nil {
		t.Fatalf("no ACK from dnsmasq; log:\n%s", dnsmasqLog.String())
	}
	addr := ack.YourIPAddr.String()
	netnstest.Run(t, netnstest.InNS(cli, "ip", "addr", "add", addr+"/24", "dev", "vcli")...)

	// ...then the boot file from DLS on port 4011.
	preq, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw(mac)), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(ack.YourIPAddr), pxeMods[0], pxeMods[1], pxeMods[2])
	var pack *dhcpv4.DHCPv4
	for try := 0; try < 5 && pack == nil; try++ {
		_, _ = conn.WriteTo(preq.ToBytes(), &net.UDPAddr{IP: net.ParseIP("10.98.0.2"), Port: 4011})
		if rs := collect(conn, preq.TransactionID, 2*time.Second); len(rs) > 0 {
			pack = rs[0]
		}
	}
	if pack == nil || pack.MessageType() != dhcpv4.MessageTypeAck || pack.BootFileName != "undionly.kpxe" || !pack.YourIPAddr.IsUnspecified() {
		t.Fatalf("proxyDHCP ACK on 4011: %v", pack)
	}

	// iPXE (user class iPXE) gets the URL of its own script.
	ip, _ := dhcpv4.NewDiscovery(hw(mac), append(pxeMods, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))...)
	var script string
	for try := 0; try < 5 && script == ""; try++ {
		_, _ = conn.WriteTo(ip.ToBytes(), bcast)
		for _, r := range collect(conn, ip.TransactionID, 2*time.Second) {
			if r.ServerIdentifier().Equal(net.ParseIP("10.98.0.2")) {
				script = string(r.Options.Get(dhcpv4.OptionBootfileName))
			}
		}
	}
	if script != "http://10.98.0.2:9180/boot/52-54-00-12-34-56.ipxe" {
		t.Errorf("iPXE got boot file %q", script)
	}
	t.Logf("address %s from dnsmasq; boot file %s from DLS; iPXE script %s", addr, proxy.BootFileName, script)
}

// relayClient runs DHCP exchanges as a relay (from port 67, giaddr set),
// as perfdhcp does, and records every ACK.
type relayClient struct {
	conn   net.PacketConn
	giaddr net.IP
	server *net.UDPAddr

	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	acked   map[string]string // address → MAC, every ACK seen
	byMAC   map[string]string // MAC → address
	double  []string
}

func newRelayClient(conn net.PacketConn, giaddr, server string) *relayClient {
	c := &relayClient{
		conn: conn, giaddr: net.ParseIP(giaddr).To4(), server: &net.UDPAddr{IP: net.ParseIP(server), Port: 67},
		waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}, acked: map[string]string{}, byMAC: map[string]string{},
	}
	go c.read()
	return c
}

func (c *relayClient) read() {
	buf := make([]byte, 2048)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || p.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		if p.MessageType() == dhcpv4.MessageTypeAck {
			c.record(p.ClientHWAddr.String(), p.YourIPAddr.String())
		}
		c.mu.Lock()
		ch := c.waiting[p.TransactionID]
		c.mu.Unlock()
		if ch != nil {
			select {
			case ch <- p:
			default:
			}
		}
	}
}

func (c *relayClient) record(mac, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.acked[addr]; ok && prev != mac {
		c.double = append(c.double, fmt.Sprintf("%s ACKed to %s and %s", addr, prev, mac))
	}
	c.acked[addr] = mac
	c.byMAC[mac] = addr
}

// exchange sends p and waits up to d for the answer.
func (c *relayClient) exchange(p *dhcpv4.DHCPv4, d time.Duration) *dhcpv4.DHCPv4 {
	p.GatewayIPAddr, p.HopCount = c.giaddr, 1
	ch := make(chan *dhcpv4.DHCPv4, 1)
	c.mu.Lock()
	c.waiting[p.TransactionID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, p.TransactionID)
		c.mu.Unlock()
	}()
	if _, err := c.conn.WriteTo(p.ToBytes(), c.server); err != nil {
		return nil
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		return nil
	}
}

// dora gets an address for mac; "" when the server did not answer.
func (c *relayClient) dora(mac net.HardwareAddr) string {
	d, _ := dhcpv4.NewDiscovery(mac)
	offer := c.exchange(d, 500*time.Millisecond)
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		return ""
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	ack := c.exchange(req, 2*time.Second)
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		return ""
	}
	return ack.YourIPAddr.String()
}

func TestACKedLeasesSurviveKill9(t *testing.T) {
	lab.NeedRoot(t)
	srv, cli := fullModeNet(t)
	netnstest.Run(t, netnstest.InNS(cli, "ip", "addr", "add", "10.99.0.2/16", "dev", "vcli")...)
	h := startHost(t, srv, "10.99.0.1", fullModeDHCP)
	c := newRelayClient(udpIn(t, cli, "", "10.99.0.2:67"), "10.99.0.2", "10.99.0.1")

	// Load: workers take new MACs and run DORA exchanges without pause.
	var next atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var answered atomic.Int64
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := next.Add(1)
				mac := net.HardwareAddr{0x02, 0xd1, 0, byte(n >> 16), byte(n >> 8), byte(n)}
				if c.dora(mac) != "" {
					answered.Add(1)
				}
			}
		}()
	}
	waitFor := func(what string, n int64) {
		t.Helper()
		target := answered.Load() + n
		deadline := time.Now().Add(90 * time.Second)
		for answered.Load() < target {
			if time.Now().After(deadline) {
				_, m := h.Get("/metrics")
				var dhcp []string
				for _, l := range strings.Split(m, "\n") {
					if strings.HasPrefix(l, "dls_dhcp_") && !strings.HasSuffix(l, " 0") && !strings.Contains(l, "_bucket") {
						dhcp = append(dhcp, l)
					}
				}
				t.Fatalf("%s: only %d ACKs; metrics:\n%s", what, answered.Load(), strings.Join(dhcp, "\n"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("before the kills", 300)

	// kill -9 of the plugin under load: the supervisor restarts it.
	pid := h.PluginPid("dls-protocol-d")
	if pid == 0 {
		t.Fatal("plugin process not found")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor("after the plugin's kill -9", 300)
	if p := h.PluginPid("dls-protocol-d"); p == 0 || p == pid {
		t.Fatalf("plugin not restarted (pid %d, was %d)", p, pid)
	}

	// kill -9 of the host under load (the plugin dies with it), restart.
	h.Kill9()
	time.Sleep(300 * time.Millisecond)
	h.Start()
	waitFor("after the host's kill -9", 300)
	close(stop)
	wg.Wait()

	c.mu.Lock()
	double := append([]string(nil), c.double...)
	acked := make(map[string]string, len(c.acked))
	for a, m := range c.acked {
		acked[a] = m
	}
	byMAC := make(map[string]string, len(c.byMAC))
	for m, a := range c.byMAC {
		byMAC[m] = a
	}
	c.mu.Unlock()
	if len(double) > 0 {
		t.Fatalf("addresses ACKed to two MACs: %v", double)
	}

	// Every address ever ACKed is leased to its MAC in the store. (Read
	// after the host stops: one process at a time on the file.)
	sample := make([]string, 0, 20)
	for m := range byMAC {
		if len(sample) < cap(sample) {
			sample = append(sample, m)
		}
	}
	h.Stop()
	st, err := sqlite.Open(context.Background(), filepath.Join(h.DataDir(), "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	leases, err := st.LoadLeases(context.Background(), "")
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{}
	for _, l := range leases {
		if l.State == "bound" && time.Until(l.Expires) > 30*time.Minute {
			stored[l.Address.String()] = l.MAC
		}
	}
	var lost []string
	for a, m := range acked {
		if stored[a] != m {
			lost = append(lost, fmt.Sprintf("%s (ACKed to %s, stored %q)", a, m, stored[a]))
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d ACKed leases not in the store: %v", len(lost), len(acked), lost[:min(len(lost), 10)])
	}

	// And the server still knows them: a returning MAC gets its address.
	h.Start()
	rand.Shuffle(len(sample), func(i, j int) { sample[i], sample[j] = sample[j], sample[i] })
	for _, m := range sample {
		mac, _ := net.ParseMAC(m)
		var got string
		for try := 0; try < 3 && got == ""; try++ {
			got = c.dora(mac)
		}
		if got != byMAC[m] {
			t.Errorf("after the restarts %s got %q, want its %s", m, got, byMAC[m])
		}
	}
	t.Logf("%d leases ACKed across kill -9 of the plugin and of the host; all stored, none doubled", len(acked))
}

func TestProbeSkipsAnAddressInUse(t *testing.T) {
	lab.NeedRoot(t)
	srv, cli := fullModeNet(t)
	// A machine with a static address inside the pool, which no lease
	// tells about: it answers the probe's ping.
	netnstest.Run(t, netnstest.InNS(cli, "ip", "addr", "add", "10.99.0.2/16", "dev", "vcli")...)
	netnstest.Run(t, netnstest.InNS(cli, "ip", "addr", "add", "10.99.1.10/16", "dev", "vcli")...)
	h := startHost(t, srv, "10.99.0.1", `
protocol "dhcp" "lan" {
  config {
    interface     = "vsrv"
    server_ip     = "10.99.0.1"
    probe_timeout = "300ms"
    pool {
      name    = "lan"
      start   = "10.99.1.10"
      end     = "10.99.1.20"
      netmask = "255.255.0.0"
    }
  }
}
`)
	c := newRelayClient(udpIn(t, cli, "", "10.99.0.2:67"), "10.99.0.2", "10.99.0.1")
	var got string
	for try := 0; try < 4 && got == ""; try++ {
		got = c.dora(net.HardwareAddr{0x02, 0, 0, 0, 0, 1})
	}
	if got != "10.99.1.11" {
		t.Fatalf("got %q, want 10.99.1.11 (10.99.1.10 answers pings)", got)
	}
	if v := h.Metric(`dls_dhcp_errors_total{plugin="lan",reason="address_in_use"}`); v != 1 {
		t.Errorf("address_in_use = %v, want 1", v)
	}
}
