package dhcpd

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestPluginOverGRPCOnLoopback runs the plugin as the host does (through
// plugintest's gRPC path) with real sockets on loopback ports above 1024:
// no root needed. A renewing client (it has an address, so it is answered
// by unicast) gets its ACK only once the lease is in the host's store.
func TestPluginOverGRPCOnLoopback(t *testing.T) {
	port, cport := freeUDPPort(t), freeUDPPort(t)
	fh := plugintest.NewFakeHost()
	fh.PutLease(host.Lease{Pool: "lo", Address: "127.0.0.160", MAC: "52:54:00:00:01:60", State: host.LeaseBound, Expires: time.Now().Add(time.Hour)})
	h := plugintest.Start(t, New(), plugintest.WithHost(fh), plugintest.WithInstance("lan"), plugintest.WithConfig(map[string]any{
		"server_ip": "127.0.0.1", "port": port, "client_port": cport, "workers": 4,
		"pool": []any{map[string]any{"name": "lo", "start": "127.0.0.100", "end": "127.0.0.199", "lease_time": "10m"}},
	}))
	ctx := context.Background()
	if err := h.Protocol().Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := h.Protocol().Status(ctx)
	if err != nil || !st.Serving || len(st.Listeners) != 1 || !strings.Contains(st.Listeners[0], fmt.Sprint(port)) {
		t.Fatalf("status %+v %v", st, err)
	}

	client, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.150:%d", cport))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	exchange := func(p *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		t.Helper()
		if _, err := client.WriteTo(p.ToBytes(), server); err != nil {
			t.Fatal(err)
		}
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1500)
		n, _, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	renew, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:01:50")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("127.0.0.150")))
	ack := exchange(renew)
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "127.0.0.150" {
		t.Fatalf("renewal answer: %s", ack.Summary())
	}
	var stored bool
	for _, l := range fh.Leases() {
		stored = stored || (l.Address == "127.0.0.150" && l.MAC == "52:54:00:00:01:50" && l.Pool == "lo")
	}
	if !stored {
		t.Fatalf("ACKed lease not stored: %+v", fh.Leases())
	}
	// The loaded lease of another MAC is not handed out.
	steal, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:01:50")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("127.0.0.150")), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("127.0.0.160"))))
	if _, err := client.WriteTo(steal.ToBytes(), server); err != nil {
		t.Fatal(err)
	}

	h.WaitMetricValue(t, 2, "dls_dhcp_requests_total", "request")
	if v := h.MetricValue(t, "dls_dhcp_pool_addresses", "lo"); v != 100 {
		t.Errorf("pool size = %v, want 100", v)
	}
	if v := h.MetricValue(t, "dls_dhcp_pool_active_leases", "lo"); v != 2 {
		t.Errorf("active leases = %v, want 2", v)
	}
	h.WaitMetric(t, func(s metrics.Sample) bool { return s.Count == 1 }, "dls_dhcp_reply_duration_seconds", "ack")
	if err := h.Protocol().Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// Restart on the same store: the ACKed lease is still that MAC's.
	if err := h.Protocol().Start(ctx); err != nil {
		t.Fatal(err)
	}
	other, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:01:99")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("127.0.0.150")))
	if _, err := client.WriteTo(other.ToBytes(), server); err != nil {
		t.Fatal(err)
	}
	// Two address_taken: the stolen and the restarted.
	h.WaitMetricValue(t, 2, "dls_dhcp_errors_total", reasonAddressTaken)
}

func TestModeOffServesNothing(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithConfig(map[string]any{"mode": "off"}))
	if err := h.Protocol().Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := h.Protocol().Status(context.Background())
	if st.Serving || len(st.Listeners) != 0 {
		t.Errorf("mode off: %+v", st)
	}
}

func TestConfigErrorsReachTheHost(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"server_ip": "10.0.0.1", "pool": []any{map[string]any{"start": "10.0.0.9", "end": "10.0.0.1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Path != "pool[0].end" {
		t.Errorf("errors %v", errs)
	}
}
