package daemon

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// dhcpPlugin builds the real DHCP plugin once for the tests that need it.
var dhcpPlugin = sync.OnceValues(func() (string, error) {
	out := filepath.Join(pluginDir, "dls-protocol-dhcp-real")
	cmd := exec.Command("go", "build", "-o", out, "github.com/dls-project/dls/plugins/protocol/dhcp")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the dhcp plugin: %v\n%s", err, b)
	}
	return out, nil
})

func freeUDP(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// dhcpPeer is a DHCP client on loopback: it has an address (ciaddr), so
// the plugin answers it by unicast on client_port.
type dhcpPeer struct {
	t      *testing.T
	conn   net.PacketConn
	addr   net.IP
	server *net.UDPAddr
}

func newDHCPPeer(t *testing.T, addr string, port, cport int) *dhcpPeer {
	t.Helper()
	c, err := net.ListenPacket("udp4", fmt.Sprintf("%s:%d", addr, cport))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &dhcpPeer{t: t, conn: c, addr: net.ParseIP(addr), server: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
}

// discover sends boot firmware's DISCOVER for mac.
func (p *dhcpPeer) send(mac net.HardwareAddr) {
	d, err := dhcpv4.New(dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(dhcpv4.MessageTypeDiscover),
		dhcpv4.WithClientIP(p.addr), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)))
	if err != nil {
		p.t.Error(err)
		return
	}
	_, _ = p.conn.WriteTo(d.ToBytes(), p.server)
}

// offer sends a DISCOVER for mac and returns the OFFER's address and boot
// file.
func (p *dhcpPeer) offer(mac net.HardwareAddr) (yiaddr, file string) {
	p.t.Helper()
	p.send(mac)
	buf := make([]byte, 1500)
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := p.conn.ReadFrom(buf)
		if err != nil {
			p.t.Fatalf("no OFFER for %s: %v", mac, err)
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || r.ClientHWAddr.String() != mac.String() {
			continue // an answer to an earlier packet
		}
		return r.YourIPAddr.String(), r.BootFileName
	}
}

// TestDHCPAnswersFromThePushedTable is the acceptance test of first
// contact: the real DHCP plugin, under a burst of DISCOVERs from
// never-seen MACs, answers them and the known client without one host
// Lookup; each change committed to the client (image, then its address,
// through the store every writer uses) reaches the plugin as the next
// version, and the client's next DISCOVER sees it. Then a restarted
// plugin (kill -9), with a change made while it was down, answers the
// client correctly from its first packet, again without a Lookup.
func TestDHCPAnswersFromThePushedTable(t *testing.T) {
	bin, err := dhcpPlugin()
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	port, cport := freeUDP(t), freeUDP(t)
	const mac = "52:54:00:00:0f:01"
	h := start(t, fmt.Sprintf(`
protocol "dhcp" "lan" {
  source = %q
  config {
    server_ip   = "127.0.0.1"
    port        = %d
    client_port = %d
    workers     = 4
    rate_limit  = 0
    pool {
      name    = "lo"
      start   = "127.0.0.100"
      end     = "127.0.0.199"
      netmask = "255.255.255.0"
    }
  }
}
storage "probe" "disks" {}
image "lab" {
  storage = "disks"
  source  = %q
}
image "lab2" {
  storage = "disks"
  source  = %q
}
client "pc1" {
  mac     = %q
  image   = "lab"
  address = "127.0.0.20"
}
`, bin, port, cport, img, img, mac))
	h.waitFor(30*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	gauge := func(name string) float64 {
		_, body := h.get("/metrics")
		v, _ := metric(body, name+`{plugin="lan"}`)
		return v
	}
	h.waitFor(10*time.Second, "pc1 in the plugin's table", func() bool { return gauge("dls_dhcp_client_table_clients") == 1 })

	pc1, _ := net.ParseMAC(mac)
	known := newDHCPPeer(t, "127.0.0.150", port, cport)
	if a, file := known.offer(pc1); a != "127.0.0.20" || file == "" {
		t.Fatalf("pc1 offered %s with %q, want 127.0.0.20 with a boot file", a, file)
	}

	// The burst: never-seen MACs, as fast as the senders go, from another
	// address (their answers are drained there).
	storm := newDHCPPeer(t, "127.0.0.151", port, cport)
	ctx, stopStorm := context.WithCancel(context.Background())
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				storm.send(net.HardwareAddr{0x02, 0x42, byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256))})
				if sent.Add(1)%64 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	go func() {
		buf := make([]byte, 1500)
		for ctx.Err() == nil {
			_ = storm.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _, _ = storm.conn.ReadFrom(buf)
		}
	}()
	defer func() { stopStorm(); wg.Wait() }()

	st := h.d.store
	put := func(image, addr string) uint64 {
		t.Helper()
		c, err := st.GetClient(t.Context(), "pc1")
		if err != nil {
			t.Fatal(err)
		}
		c.Image, c.Address = image, netip.MustParseAddr(addr)
		if err := st.PutClient(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		return h.d.feed.Version()
	}
	var worst time.Duration
	pushed := func(v uint64) {
		t.Helper()
		took := h.waitFor(5*time.Second, fmt.Sprintf("table version %d in the plugin", v), func() bool {
			return gauge("dls_dhcp_client_table_version") >= float64(v)
		})
		worst = max(worst, took)
	}
	images := []string{"lab2", "lab"}
	for i := range 6 {
		addr := fmt.Sprintf("127.0.0.%d", 21+i)
		// An image change: no DHCP answer shows it, but it is a
		// committed change, so it is pushed as the next version.
		v := put(images[i%2], fmt.Sprintf("127.0.0.%d", 20+i))
		pushed(v)
		// An address change: the next DISCOVER sees it.
		v = put(images[i%2], addr)
		pushed(v)
		if a, _ := known.offer(pc1); a != addr {
			t.Fatalf("change %d: pc1 offered %s after version %d reached the plugin, want %s", i, a, v, addr)
		}
	}
	_, body := h.get("/metrics")
	discovers, _ := metric(body, `dls_dhcp_requests_total{plugin="lan",type="discover"}`)
	lookups, _ := metric(body, `dls_dhcp_host_lookups_total{plugin="lan"}`)
	t.Logf("burst: %d DISCOVERs sent, %.0f received by the plugin, %.0f host lookups; slowest push seen %v (metrics polling included)", sent.Load(), discovers, lookups, worst)
	if discovers < 1000 {
		t.Errorf("only %.0f DISCOVERs reached the plugin: not a burst", discovers)
	}
	if lookups != 0 {
		t.Errorf("%.0f host lookups during first contact, want 0 (answered from the table)", lookups)
	}
	stopStorm()
	wg.Wait()

	// Restart: kill -9 the plugin, change pc1 while it is down; its first
	// packet after the restart gets the change, from the table.
	_, pid, _, _ := h.plugin("lan")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	put("lab2", "127.0.0.40")
	h.waitFor(10*time.Second, "lan running with a new pid", func() bool {
		s, np, _, _ := h.plugin("lan")
		return s == "running" && np != pid && np != 0
	})
	if a, file := known.offer(pc1); a != "127.0.0.40" || file == "" {
		t.Fatalf("restarted plugin's first answer to pc1: %s %q, want 127.0.0.40 with a boot file", a, file)
	}
	_, body = h.get("/metrics")
	if v, _ := metric(body, `dls_dhcp_host_lookups_total{plugin="lan"}`); v != 0 {
		t.Errorf("restarted plugin made %.0f host lookups, want 0 (it waited for the snapshot)", v)
	}
	if v, _ := metric(body, `dls_dhcp_client_table_live{plugin="lan"}`); v != 1 {
		t.Errorf("restarted plugin's table not live: %v", v)
	}
}
