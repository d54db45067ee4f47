package dhcpd

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandle feeds the packet handler arbitrary bytes, in every mode: it
// must never panic, and whatever it answers must be a BOOTREPLY.
func FuzzHandle(f *testing.F) {
	seeds := []*dhcpv4.DHCPv4{
		discover("52:54:00:00:00:01"),
		discover("52:54:00:00:00:02", pxe(iana.EFI_X86_64), ipxe),
		discover("52:54:00:00:00:03", relayed("10.0.0.1")),
	}
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:00:04")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.100"))))
	inf, _ := dhcpv4.NewInform(hw("52:54:00:00:00:05"), net.ParseIP("10.0.0.42"))
	seeds = append(seeds, req, inf)
	for _, s := range seeds {
		f.Add(s.ToBytes(), uint8(0))
	}
	f.Add([]byte{1, 1, 6, 0}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, mode uint8) {
		fh := plugintest.NewFakeHost()
		known(fh, "52:54:00:00:00:02", "pc-2", "10.0.0.20")
		c := baseConfig()
		c.RateLimit = 0
		c.Mode = []string{modeFull, modeProxy, modeReservation}[mode%3]
		e := newEnvWith(t, c, fh, nil)
		e.srv.handle(context.Background(), b, packetInfo{at: time.Now(), proxy: len(b)%2 == 0})
		for len(e.sent) > 0 {
			r := <-e.sent
			if len(r.b) < minPacket || r.b[0] != byte(dhcpv4.OpcodeBootReply) {
				t.Fatalf("reply is not a BOOTREPLY: % x", r.b[:min(len(r.b), 16)])
			}
		}
	})
}
