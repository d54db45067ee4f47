package dhcp6d

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandle feeds the packet handler arbitrary bytes, in both modes and
// from a link-local or a relay's address: it must never panic, every
// packet must be counted once (replied or dropped), and whatever it
// answers must parse as an Advertise, a Reply or a Relay-reply.
func FuzzHandle(f *testing.F) {
	t := &testing.T{}
	const mac = "52:54:00:00:00:02"
	seeds := []dhcpv6.DHCPv6{
		msg(t, dhcpv6.MessageTypeSolicit, "52:54:00:00:00:01"),
		msg(t, dhcpv6.MessageTypeSolicit, mac, append(pxe(iana.EFI_X86_64), dhcpv6.WithRapidCommit)...),
		msg(t, dhcpv6.MessageTypeRequest, mac, withServerID, withAddr("fd00:99::1:1")),
		msg(t, dhcpv6.MessageTypeRenew, mac, withServerID, withAddr("fd00:99::1:1")),
		msg(t, dhcpv6.MessageTypeConfirm, mac, withAddr("fd00:99::1:1")),
		msg(t, dhcpv6.MessageTypeInformationRequest, mac, dhcpv6.WithUserClass([]byte("iPXE"))),
	}
	r, _ := dhcpv6.EncapsulateRelay(seeds[1], dhcpv6.MessageTypeRelayForward, net.ParseIP("fd00:99::fe"), net.ParseIP("fe80::1"))
	r.AddOption(dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, net.HardwareAddr{2, 0, 0, 0, 0, 9}))
	seeds = append(seeds, r)
	for _, s := range seeds {
		f.Add(s.ToBytes(), uint8(0))
	}
	f.Add([]byte{12, 0, 1, 2, 3}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, mode uint8) {
		fh := plugintest.NewFakeHost()
		known(fh, mac, "pc-2")
		c := baseConfig()
		if mode%2 == 1 {
			c.Mode, c.Pools = modeProxy, nil
		}
		e := newEnvWith(t, c, fh)
		in := packetInfo{at: time.Now(), src: linkLocal(mac), ifIndex: 1}
		if mode&2 != 0 {
			in.src = linkLocal("52:54:00:00:00:09")
		}
		e.srv.handle(context.Background(), b, in)
		_ = e.srv.commits.Close(context.Background()) // Replies waiting for their commit leave
		counted := 0.0
		for _, pair := range e.srv.m.done {
			counted += testCounter(pair[0]) + testCounter(pair[1])
		}
		if counted != 1 {
			t.Fatalf("packet counted %v times, want once", counted)
		}
		for len(e.sent) > 0 {
			r := <-e.sent
			p, err := dhcpv6.FromBytes(r.b)
			if err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			switch p.Type() {
			case dhcpv6.MessageTypeAdvertise, dhcpv6.MessageTypeReply, dhcpv6.MessageTypeRelayReply:
			default:
				t.Fatalf("answered with a %s", p.Type())
			}
		}
	})
}
