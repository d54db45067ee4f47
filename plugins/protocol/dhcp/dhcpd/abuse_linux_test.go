package dhcpd

// Abuse as root in network namespaces (skipped without root, failed under
// CI): the whole host, the plugin as its real subprocess.

import (
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/dls-project/dls/plugins/protocol/internal/netnstest"
)

func randomMAC() net.HardwareAddr {
	m := net.HardwareAddr{0x02, 0xba, 0xd0, 0, 0, 0}
	n := rand.Uint32()
	m[3], m[4], m[5] = byte(n>>16), byte(n>>8), byte(n)
	return m
}

// TestAbuseDHCPStarvation: a relay floods the server with DISCOVERs and
// REQUESTs from random MACs, and runs whole exchanges for others, enough
// to take every address of the pool. With unknown_leases = 30 the unknown
// MACs hold 30 of the pool's 50 addresses at most, so machines the host
// knows (one dynamic, one reserved) still get their leases during the
// flood; the refusals are counted as unknown_limit.
func TestAbuseDHCPStarvation(t *testing.T) {
	lab.NeedRoot(t)
	srv, cli := fullModeNet(t)
	netnstest.Run(t, netnstest.InNS(cli, "ip", "addr", "add", "10.99.0.2/16", "dev", "vcli")...)
	netnstest.Run(t, netnstest.InNS(cli, "ip", "addr", "add", "10.99.0.3/16", "dev", "vcli")...)
	h := startHost(t, srv, "10.99.0.1", `
client "pc1" {
  mac   = "52:54:00:ab:00:01"
  image = "lab"
}
client "pc2" {
  mac     = "52:54:00:ab:00:02"
  image   = "lab"
  address = "10.99.2.2"
}
protocol "dhcp" "lan" {
  config {
    interface      = "vsrv"
    server_ip      = "10.99.0.1"
    unknown_leases = 30
    pool {
      name    = "lan"
      start   = "10.99.1.10"
      end     = "10.99.1.59"
      netmask = "255.255.0.0"
    }
  }
}
`)
	legit := newRelayClient(udpIn(t, cli, "", "10.99.0.2:67"), "10.99.0.2", "10.99.0.1")
	flood := newRelayClient(udpIn(t, cli, "", "10.99.0.3:67"), "10.99.0.3", "10.99.0.1")
	server := &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: 67}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, exchanges atomic.Int64
	// Blasters: DISCOVERs, and REQUESTs for pool addresses never
	// offered, 2,000 packets a second in all.
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				var p *dhcpv4.DHCPv4
				if i%2 == 0 {
					p, _ = dhcpv4.NewDiscovery(randomMAC())
				} else {
					want := net.IPv4(10, 99, 1, byte(10+rand.IntN(50)))
					p, _ = dhcpv4.New(dhcpv4.WithHwAddr(randomMAC()), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
						dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(want)))
				}
				p.GatewayIPAddr, p.HopCount = flood.giaddr, 1
				if _, err := flood.conn.WriteTo(p.ToBytes(), server); err == nil {
					sent.Add(1)
				}
			}
		}()
	}
	// Whole exchanges from random MACs: these would bind every address.
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if flood.dora(randomMAC()) != "" {
					exchanges.Add(1)
				}
				sent.Add(2)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	// Let the flood take what it can, then the known machines ask, again
	// and again, as machines booting and renewing would.
	time.Sleep(2 * time.Second)
	lease := func(mac string) string {
		hw, _ := net.ParseMAC(mac)
		for try := 0; try < 4; try++ { // a client retries a lost exchange
			if a := legit.dora(hw); a != "" {
				return a
			}
		}
		return ""
	}
	var pc1 string
	end := time.Now().Add(6 * time.Second)
	for n := 1; time.Now().Before(end); n++ {
		a1 := lease("52:54:00:ab:00:01")
		a2 := lease("52:54:00:ab:00:02")
		if a1 == "" || (pc1 != "" && a1 != pc1) {
			t.Fatalf("round %d of the flood: known pc1 got %q (before: %q)", n, a1, pc1)
		}
		if a2 != "10.99.2.2" {
			t.Fatalf("round %d of the flood: reserved pc2 got %q, want 10.99.2.2", n, a2)
		}
		pc1 = a1
		time.Sleep(200 * time.Millisecond)
	}

	refused := h.Metric(`dls_dhcp_errors_total{plugin="lan",reason="unknown_limit"}`)
	active := h.Metric(`dls_dhcp_pool_active_leases{plugin="lan",pool="lan"}`)
	hwm := plugintest.PeakRSSKiB(h.PluginPid("dls-protocol-d"))
	switch {
	case exchanges.Load() == 0:
		t.Fatal("the flood got no lease at all: it did not reach the pool")
	case refused <= 0:
		t.Errorf("unknown_limit refusals %v, want > 0", refused)
	case active > 31:
		// 30 unknown MACs and pc1 (pc2's address is outside the range).
		t.Errorf("%v active leases in the pool, want at most 31", active)
	}
	t.Logf("flood: %d packets from random MACs, %d of their exchanges leased; %v refused (unknown_limit); pool: %v active leases of 50; pc1 %s, pc2 10.99.2.2 throughout; plugin peak RSS (VmHWM) %d KiB",
		sent.Load(), exchanges.Load(), refused, active, pc1, hwm)
}
