package dhcp6d

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// BenchmarkFirstContact is one new client's Solicit and Request through
// handle (the FakeHost stores the lease): the plugin's CPU per 4-way
// exchange, without sockets.
func BenchmarkFirstContact(b *testing.B) {
	c := baseConfig()
	c.Pools = []Pool{{Prefix: "fd00:99:0:1::/64"}}
	t := &testing.T{}
	e := newEnvWith(t, c, plugintest.NewFakeHost())
	e.srv.out = func(reply) error { return nil }
	solicits := make([][]byte, b.N)
	requests := make([][]byte, b.N)
	srcs := make([]netip.AddrPort, b.N)
	for i := range b.N {
		mac := net.HardwareAddr{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
		m, _ := dhcpv6.NewMessage(dhcpv6.WithClientID(&dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 1, LinkLayerAddr: mac}),
			dhcpv6.WithIAID([4]byte{0, 0, 0, 1}))
		solicits[i] = m.ToBytes()
		m.MessageType = dhcpv6.MessageTypeRequest
		withServerID(m)
		requests[i] = m.ToBytes()
		srcs[i] = linkLocal(mac.String())
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e.srv.handle(ctx, solicits[i], packetInfo{src: srcs[i], at: time.Now()})
		e.srv.handle(ctx, requests[i], packetInfo{src: srcs[i], at: time.Now()})
	}
}
