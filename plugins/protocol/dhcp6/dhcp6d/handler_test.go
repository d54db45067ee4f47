package dhcp6d

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/leaseslot"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// env is a server with no socket: packets go in through handle, replies
// come out on sent; the host is a FakeHost.
type env struct {
	t    *testing.T
	srv  *server
	host *plugintest.FakeHost
	sent chan reply
}

// syncEvents reports each event at once, so tests need not wait for a
// batcher.
type syncEvents struct{ h *plugintest.FakeHost }

func (s syncEvents) Emit(e host.Event) { _ = s.h.Report(context.Background(), []host.Event{e}) }

var (
	serverMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	serverIP6 = netip.MustParseAddr("fd00:99::1")
)

func baseConfig() *Config {
	c := defaultConfig()
	c.Interface = "test0"
	c.ServerIP = serverIP6.String()
	c.DNS = []string{"fd00:99::53"}
	c.DomainSearch = []string{"lab.example"}
	c.Pools = []Pool{{Start: "fd00:99::1:0", End: "fd00:99::1:9"}}
	return c
}

func newEnv(t *testing.T, mutate func(c *Config)) *env {
	t.Helper()
	c := baseConfig()
	if mutate != nil {
		mutate(c)
	}
	return newEnvWith(t, c, plugintest.NewFakeHost())
}

func newEnvWith(t *testing.T, c *Config, fh *plugintest.FakeHost) *env {
	t.Helper()
	set, err := check(*c)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	hs := fh.Services()
	e := &env{t: t, host: fh, sent: make(chan reply, 4096)}
	duid := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: serverMAC}
	e.srv = newServer(context.Background(), set, duid, set.serverIP, hs, newMetrics(metrics.NewRegistry()), hclog.NewNullLogger())
	e.srv.out = func(r reply) error { e.sent <- r; return nil }
	e.srv.events = syncEvents{fh}
	t.Cleanup(func() { _ = e.srv.commits.Close(context.Background()) })
	stored, err := hs.Leases.Load(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	e.srv.table.load(stored)
	return e
}

// linkLocal is the EUI-64 link-local address of mac, from which a client
// on the link sends.
func linkLocal(mac string) netip.AddrPort {
	hw, _ := net.ParseMAC(mac)
	b := [16]byte{0xfe, 0x80, 8: hw[0] ^ 2, 9: hw[1], 10: hw[2], 11: 0xff, 12: 0xfe, 13: hw[3], 14: hw[4], 15: hw[5]}
	return netip.AddrPortFrom(netip.AddrFrom16(b).WithZone("test0"), 546)
}

// msg builds a client message of type mt from mac (a DUID-LLT of it, one
// IA_NA with IAID 1) with mods applied.
func msg(t *testing.T, mt dhcpv6.MessageType, mac string, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dhcpv6.NewMessage(dhcpv6.WithClientID(&dhcpv6.DUIDLLT{HWType: iana.HWTypeEthernet, Time: 1000, LinkLayerAddr: hw}),
		dhcpv6.WithIAID([4]byte{0, 0, 0, 1}))
	if err != nil {
		t.Fatal(err)
	}
	m.MessageType = mt
	for _, mod := range mods {
		mod(m)
	}
	return m
}

func withServerID(m dhcpv6.DHCPv6) {
	m.UpdateOption(dhcpv6.OptServerID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: serverMAC}))
}

func withAddr(a string) dhcpv6.Modifier {
	return func(d dhcpv6.DHCPv6) {
		m := d.(*dhcpv6.Message)
		ia := m.Options.OneIANA()
		ia.Options.Update(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(a)})
		m.UpdateOption(ia)
	}
}

func vendorClass(s string) dhcpv6.Modifier {
	return dhcpv6.WithOption(&dhcpv6.OptVendorClass{EnterpriseNumber: 343, Data: [][]byte{[]byte(s)}})
}

func pxe(a iana.Arch) []dhcpv6.Modifier {
	return []dhcpv6.Modifier{dhcpv6.WithArchType(a), vendorClass("PXEClient:Arch:00007:UNDI:003016")}
}

// in handles m as sent from mac's link-local address.
func (e *env) in(m dhcpv6.DHCPv6, mac string) {
	e.inFrom(m, packetInfo{src: linkLocal(mac), ifIndex: 1})
}

func (e *env) inFrom(m dhcpv6.DHCPv6, in packetInfo) {
	in.at = time.Now()
	e.srv.handle(context.Background(), m.ToBytes(), in)
}

// reply returns the next reply sent, parsed, and where it went.
func (e *env) reply() (dhcpv6.DHCPv6, reply) {
	e.t.Helper()
	select {
	case r := <-e.sent:
		p, err := dhcpv6.FromBytes(r.b)
		if err != nil {
			e.t.Fatalf("reply does not parse: %v", err)
		}
		return p, r
	case <-time.After(5 * time.Second):
		e.t.Fatal("no reply")
	}
	return nil, reply{}
}

func (e *env) message() *dhcpv6.Message {
	e.t.Helper()
	p, _ := e.reply()
	m, ok := p.(*dhcpv6.Message)
	if !ok {
		e.t.Fatalf("reply is a %s, not a message", p.Type())
	}
	return m
}

func (e *env) noReply() {
	e.t.Helper()
	select {
	case r := <-e.sent:
		p, _ := dhcpv6.FromBytes(r.b)
		e.t.Fatalf("unexpected reply: %v", p)
	case <-time.After(50 * time.Millisecond):
	}
}

func (e *env) errors(reason string) float64 {
	return testutil.ToFloat64(e.srv.m.errors.WithLabelValues(reason))
}

func (e *env) requests(typ, result string) float64 {
	return testutil.ToFloat64(e.srv.m.requests.WithLabelValues(typ, result))
}

// addrOf is the address of m's first IA_NA, invalid when it has none.
func addrOf(t *testing.T, m *dhcpv6.Message) netip.Addr {
	t.Helper()
	ia := m.Options.OneIANA()
	if ia == nil {
		t.Fatalf("%s without IA_NA: %v", m.Type(), m)
	}
	ao := ia.Options.OneAddress()
	if ao == nil {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(ao.IPv6Addr)
	return a
}

// iaStatus is the status code inside m's first IA_NA (Success when none).
func iaStatus(m *dhcpv6.Message) iana.StatusCode {
	if ia := m.Options.OneIANA(); ia != nil {
		if st := ia.Options.Status(); st != nil {
			return st.StatusCode
		}
	}
	return iana.StatusSuccess
}

// sarr runs Solicit, Advertise, Request, Reply for mac and returns the
// Reply.
func (e *env) sarr(mac string, mods ...dhcpv6.Modifier) *dhcpv6.Message {
	e.t.Helper()
	e.in(msg(e.t, dhcpv6.MessageTypeSolicit, mac, mods...), mac)
	adv := e.message()
	if adv.Type() != dhcpv6.MessageTypeAdvertise {
		e.t.Fatalf("%s: got %s, want ADVERTISE", mac, adv.Type())
	}
	a := addrOf(e.t, adv)
	e.in(msg(e.t, dhcpv6.MessageTypeRequest, mac, append(mods, withServerID, withAddr(a.String()))...), mac)
	rep := e.message()
	if rep.Type() != dhcpv6.MessageTypeReply {
		e.t.Fatalf("%s: got %s, want REPLY", mac, rep.Type())
	}
	if got := addrOf(e.t, rep); got != a {
		e.t.Fatalf("%s: Reply of %s for an Advertise of %s", mac, got, a)
	}
	return rep
}

func known(fh *plugintest.FakeHost, mac, name string) {
	fh.SetClient(mac, host.Decision{Client: name, ScriptURL: "http://10.0.0.1:9184/boot/" + mac + ".ipxe"})
}

func TestSolicitRequestReplyStoresLease(t *testing.T) {
	e := newEnv(t, nil)
	const mac = "52:54:00:00:00:01"
	rep := e.sarr(mac)
	a := addrOf(t, rep)
	if a != netip.MustParseAddr("fd00:99::1:0") {
		t.Errorf("first address %s, want fd00:99::1:0 (the pool's first)", a)
	}
	ia := rep.Options.OneIANA()
	ao := ia.Options.OneAddress()
	if ao.ValidLifetime != time.Hour || ao.PreferredLifetime != time.Hour || ia.T1 != 30*time.Minute || ia.T2 != 48*time.Minute {
		t.Errorf("lifetimes valid %s preferred %s T1 %s T2 %s", ao.ValidLifetime, ao.PreferredLifetime, ia.T1, ia.T2)
	}
	if sid := rep.Options.ServerID(); sid == nil || !sid.Equal(e.srv.duid) {
		t.Errorf("server id %v, want %v", sid, e.srv.duid)
	}
	if cid := rep.Options.ClientID(); cid == nil || cid.DUIDType() != dhcpv6.DUID_LLT {
		t.Errorf("client id not echoed: %v", cid)
	}
	if dns := rep.Options.DNS(); len(dns) != 1 || !dns[0].Equal(net.ParseIP("fd00:99::53")) {
		t.Errorf("DNS %v", dns)
	}
	ls := e.host.Leases()
	if len(ls) != 1 || ls[0].Address != a.String() || ls[0].MAC != mac || ls[0].State != host.LeaseBound || ls[0].Pool != "fd00:99::1:0-fd00:99::1:9" {
		t.Fatalf("stored leases %+v, want %s bound to %s", ls, a, mac)
	}
	if got := e.requests("request", resultReplied); got != 1 {
		t.Errorf("requests{request,replied} = %v, want 1", got)
	}
	// The same client soliciting again gets its address back.
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac), mac)
	if got := addrOf(t, e.message()); got != a {
		t.Errorf("second Solicit got %s, want its lease %s", got, a)
	}
	// Another client gets another address.
	if b := addrOf(t, e.sarr("52:54:00:00:00:02")); b == a {
		t.Errorf("two clients share %s", a)
	}
}

func TestReplyGoesToTheClientLinkLocal(t *testing.T) {
	e := newEnv(t, nil)
	const mac = "52:54:00:00:00:03"
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac), mac)
	_, r := e.reply()
	if r.dst != linkLocal(mac) || r.ifIndex != 1 {
		t.Errorf("Advertise to %s (if %d), want %s", r.dst, r.ifIndex, linkLocal(mac))
	}
}

func TestRapidCommit(t *testing.T) {
	e := newEnv(t, nil)
	const mac = "52:54:00:00:00:04"
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac, dhcpv6.WithRapidCommit), mac)
	rep := e.message()
	if rep.Type() != dhcpv6.MessageTypeReply || rep.GetOneOption(dhcpv6.OptionRapidCommit) == nil {
		t.Fatalf("got %s (rapid commit %v), want a REPLY with rapid commit", rep.Type(), rep.GetOneOption(dhcpv6.OptionRapidCommit))
	}
	if ls := e.host.Leases(); len(ls) != 1 || ls[0].Address != addrOf(t, rep).String() {
		t.Errorf("stored %+v", ls)
	}
	// Off: an Advertise, nothing stored.
	e = newEnv(t, func(c *Config) { c.RapidCommit = false })
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac, dhcpv6.WithRapidCommit), mac)
	if m := e.message(); m.Type() != dhcpv6.MessageTypeAdvertise {
		t.Errorf("rapid_commit off: got %s", m.Type())
	}
	if ls := e.host.Leases(); len(ls) != 0 {
		t.Errorf("an Advertise stored %+v", ls)
	}
}

func TestRenewRebindReleaseDeclineConfirm(t *testing.T) {
	e := newEnv(t, nil)
	const mac = "52:54:00:00:00:05"
	a := addrOf(t, e.sarr(mac)).String()

	e.in(msg(t, dhcpv6.MessageTypeRenew, mac, withServerID, withAddr(a)), mac)
	if m := e.message(); addrOf(t, m).String() != a || iaStatus(m) != iana.StatusSuccess {
		t.Errorf("Renew: %v", m)
	}
	// Renew of an address it does not hold: NoBinding.
	e.in(msg(t, dhcpv6.MessageTypeRenew, mac, withServerID, withAddr("fd00:99::1:7")), mac)
	if m := e.message(); iaStatus(m) != iana.StatusNoBinding {
		t.Errorf("Renew of another address: status %s, want NoBinding", iaStatus(m))
	}
	// Rebind of an address of no pool here: lifetimes 0.
	e.in(msg(t, dhcpv6.MessageTypeRebind, mac, withAddr("2001:db8::5")), mac)
	m := e.message()
	if ao := m.Options.OneIANA().Options.OneAddress(); ao == nil || ao.ValidLifetime != 0 || ao.PreferredLifetime != 0 {
		t.Errorf("Rebind off-link: %v, want the address with lifetimes 0", m)
	}
	// Confirm: on-link, and not.
	e.in(msg(t, dhcpv6.MessageTypeConfirm, mac, withAddr(a)), mac)
	if st := e.message().Options.Status(); st == nil || st.StatusCode != iana.StatusSuccess {
		t.Errorf("Confirm on-link: %v", st)
	}
	e.in(msg(t, dhcpv6.MessageTypeConfirm, mac, withAddr("2001:db8::5")), mac)
	if st := e.message().Options.Status(); st == nil || st.StatusCode != iana.StatusNotOnLink {
		t.Errorf("Confirm off-link: %v", st)
	}
	// Release: Success, and the stored lease is released.
	e.in(msg(t, dhcpv6.MessageTypeRelease, mac, withServerID, withAddr(a)), mac)
	if st := e.message().Options.Status(); st == nil || st.StatusCode != iana.StatusSuccess {
		t.Errorf("Release: %v", st)
	}
	waitLease(t, e.host, a, host.LeaseReleased)
	// Rebind of its released address, free: bound again.
	e.in(msg(t, dhcpv6.MessageTypeRebind, mac, withAddr(a)), mac)
	if m := e.message(); addrOf(t, m).String() != a || iaStatus(m) != iana.StatusSuccess {
		t.Errorf("Rebind of a free address: %v", m)
	}
	waitLease(t, e.host, a, host.LeaseBound)
	// Decline: quarantined; the next Solicit gets another address.
	e.in(msg(t, dhcpv6.MessageTypeDecline, mac, withServerID, withAddr(a)), mac)
	e.message()
	waitLease(t, e.host, a, host.LeaseDeclined)
	if m, st, exp, ok := e.srv.table.lease(netip.MustParseAddr(a)); !ok || st != leaseslot.Declined || m != macBytes(mac) || time.Until(exp) < 9*time.Minute {
		t.Errorf("declined slot: %x %d %s %v", m, st, exp, ok)
	}
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac), mac)
	if got := addrOf(t, e.message()).String(); got == a {
		t.Errorf("declined address %s advertised again", a)
	}
}

func waitLease(t *testing.T, fh *plugintest.FakeHost, addr, state string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, l := range fh.Leases() {
			if l.Address == addr && l.State == state {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("lease of %s never %s: %+v", addr, state, fh.Leases())
}

func TestServerIdentifierRules(t *testing.T) {
	e := newEnv(t, nil)
	const mac = "52:54:00:00:00:06"
	other := dhcpv6.OptServerID(&dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{2, 9, 9, 9, 9, 9}})
	e.in(msg(t, dhcpv6.MessageTypeRequest, mac, dhcpv6.WithOption(other), withAddr("fd00:99::1:1")), mac)
	e.noReply()
	if e.errors(reasonOtherServer) != 1 {
		t.Errorf("Request to another server not counted")
	}
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac, withServerID), mac)
	e.noReply()
	if e.errors(reasonNotForUs) != 1 {
		t.Errorf("Solicit with a server id not counted")
	}
	e.in(msg(t, dhcpv6.MessageTypeRequest, mac, withAddr("fd00:99::1:1")), mac)
	e.noReply()
	if e.errors(reasonMalformed) != 1 || e.requests("request", resultDropped) != 2 {
		t.Errorf("Request without server id: malformed %v, dropped %v", e.errors(reasonMalformed), e.requests("request", resultDropped))
	}
}

func TestMACSources(t *testing.T) {
	uuid := &dhcpv6.DUIDUUID{UUID: [16]byte{1, 2, 3}}
	cases := []struct {
		name string
		duid dhcpv6.DUID
		src  netip.AddrPort
		want string // "" when it must be dropped
	}{
		{"DUID-LL", &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x52, 0x54, 0, 0, 1, 1}},
			netip.MustParseAddrPort("[fe80::1%test0]:546"), "52:54:00:00:01:01"},
		{"DUID-UUID from an EUI-64 link-local", uuid, linkLocal("52:54:00:00:01:02"), "52:54:00:00:01:02"},
		{"DUID-UUID from a stable-privacy link-local", uuid, netip.MustParseAddrPort("[fe80::1c2d:3e4f:5a6b:7c8d%test0]:546"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			m, _ := dhcpv6.NewMessage(dhcpv6.WithClientID(tc.duid), dhcpv6.WithIAID([4]byte{0, 0, 0, 1}))
			e.inFrom(m, packetInfo{src: tc.src})
			if tc.want == "" {
				e.noReply()
				if e.errors(reasonNoMAC) != 1 {
					t.Errorf("no_mac not counted")
				}
				return
			}
			e.message()
			e.srv.table.mu.Lock()
			_, ok := e.srv.table.pools[0].byMAC[macBytes(tc.want)]
			e.srv.table.mu.Unlock()
			if !ok {
				t.Errorf("address not held for %s", tc.want)
			}
		})
	}
}

// relayed wraps m in a Relay-forward from a relay at fd00:98::1 for the
// client at peer, carrying the client's link-layer address when lla is
// set, and an interface id.
func relayed(t *testing.T, m *dhcpv6.Message, peer string, lla net.HardwareAddr) *dhcpv6.RelayMessage {
	t.Helper()
	r, err := dhcpv6.EncapsulateRelay(m, dhcpv6.MessageTypeRelayForward, net.ParseIP("fd00:99::fe"), net.ParseIP(peer))
	if err != nil {
		t.Fatal(err)
	}
	r.AddOption(dhcpv6.OptInterfaceID([]byte("port7")))
	if lla != nil {
		r.AddOption(dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, lla))
	}
	return r
}

func TestRelayed(t *testing.T) {
	e := newEnv(t, nil)
	uuid, _ := dhcpv6.NewMessage(dhcpv6.WithClientID(&dhcpv6.DUIDUUID{UUID: [16]byte{9}}), dhcpv6.WithIAID([4]byte{0, 0, 0, 1}))
	lla := net.HardwareAddr{0x52, 0x54, 0, 0, 2, 1}
	relay := netip.MustParseAddrPort("[fd00:98::1]:547")
	e.inFrom(relayed(t, uuid, "fe80::abcd", lla), packetInfo{src: relay})
	p, r := e.reply()
	if r.dst != relay {
		t.Errorf("Relay-reply to %s, want the relay %s", r.dst, relay)
	}
	rr, ok := p.(*dhcpv6.RelayMessage)
	if !ok || rr.Type() != dhcpv6.MessageTypeRelayReply {
		t.Fatalf("got %v, want a RELAY-REPL", p)
	}
	if id := rr.Options.InterfaceID(); string(id) != "port7" {
		t.Errorf("interface id %q not echoed", id)
	}
	inner, err := rr.GetInnerMessage()
	if err != nil || inner.Type() != dhcpv6.MessageTypeAdvertise || !addrOf(t, inner).IsValid() {
		t.Fatalf("inner %v, %v", inner, err)
	}
	e.srv.table.mu.Lock()
	_, held := e.srv.table.pools[0].byMAC[string(lla)]
	e.srv.table.mu.Unlock()
	if !held {
		t.Errorf("the relay's client link-layer address (RFC 6939) did not key the client")
	}
	// Nine relays: over the hop limit.
	var d dhcpv6.DHCPv6 = uuid
	for range maxRelays + 1 {
		d, _ = dhcpv6.EncapsulateRelay(d, dhcpv6.MessageTypeRelayForward, net.IPv6zero, net.ParseIP("fe80::1"))
	}
	e.inFrom(d, packetInfo{src: relay})
	e.noReply()
	if e.errors(reasonRelayDepth) != 1 {
		t.Errorf("relay depth not counted")
	}
}

func TestBootAnswers(t *testing.T) {
	const mac = "52:54:00:00:03:01"
	cases := []struct {
		name   string
		mods   []dhcpv6.Modifier
		url    string
		vendor string
	}{
		{"uefi x64 pxe", pxe(iana.EFI_X86_64), "tftp://[fd00:99::1]/ipxe.efi", "PXEClient"},
		{"uefi http", []dhcpv6.Modifier{dhcpv6.WithArchType(iana.EFI_X86_64_HTTP), vendorClass("HTTPClient:Arch:00016:UNDI:003001")},
			"http://[fd00:99::1]:9184/boot/files/ipxe.efi", "HTTPClient"},
		{"ipxe", append(pxe(iana.EFI_X86_64), dhcpv6.WithUserClass([]byte("iPXE"))),
			"http://[fd00:99::1]:9184/boot/" + mac + ".ipxe", "PXEClient"},
		{"os client", nil, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.BootURL = "http://[fd00:99::1]:9184" })
			known(e.host, mac, "pc-1")
			rep := e.sarr(mac, tc.mods...)
			if got := rep.Options.BootFileURL(); got != tc.url {
				t.Errorf("boot file URL %q, want %q", got, tc.url)
			}
			var vc string
			if vcs := rep.Options.VendorClasses(); len(vcs) > 0 && len(vcs[0].Data) > 0 {
				vc = string(vcs[0].Data[0])
				if vcs[0].EnterpriseNumber != enterpriseIntel {
					t.Errorf("vendor class enterprise %d", vcs[0].EnterpriseNumber)
				}
			}
			if vc != tc.vendor {
				t.Errorf("vendor class %q, want %q", vc, tc.vendor)
			}
			if tc.url != "" {
				ev := e.host.WaitEvent(t, host.EventDHCPAck, time.Second)
				if ev.Client != "pc-1" || ev.Attrs[AttrFamily] != "ipv6" || ev.Address != addrOf(t, rep).String() {
					t.Errorf("ack event %+v", ev)
				}
			}
		})
	}
	// An unknown machine gets an address and nothing to boot.
	e := newEnv(t, nil)
	if rep := e.sarr("52:54:00:00:03:02", pxe(iana.EFI_X86_64)...); rep.Options.BootFileURL() != "" {
		t.Errorf("unknown machine told to boot %s", rep.Options.BootFileURL())
	}
}

func TestBootFilesConfigured(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.BootFiles = map[string]string{"efi_x64": "shimx64.efi"} })
	known(e.host, "52:54:00:00:03:03", "pc-3")
	rep := e.sarr("52:54:00:00:03:03", pxe(iana.EFI_X86_64)...)
	if got := rep.Options.BootFileURL(); got != "tftp://[fd00:99::1]/shimx64.efi" {
		t.Errorf("boot file URL %q", got)
	}
}

func TestProxyMode(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Mode = modeProxy; c.Pools = nil })
	const mac = "52:54:00:00:04:01"
	known(e.host, mac, "pc-4")
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac, pxe(iana.EFI_X86_64)...), mac)
	adv := e.message()
	if adv.Type() != dhcpv6.MessageTypeAdvertise || adv.Options.OneIANA() != nil {
		t.Fatalf("proxy Advertise: %v (want no IA_NA)", adv)
	}
	if got := adv.Options.BootFileURL(); got != "tftp://[fd00:99::1]/ipxe.efi" {
		t.Errorf("boot file URL %q", got)
	}
	// The host learns of the proxy answer before it leaves.
	if ev := e.host.WaitEvent(t, host.EventDHCPOffer, time.Second); ev.Attrs[host.AttrProxy] != "true" {
		t.Errorf("offer event %+v", ev)
	}
	// UEFI then asks this server by Request.
	e.in(msg(t, dhcpv6.MessageTypeRequest, mac, append(pxe(iana.EFI_X86_64), withServerID)...), mac)
	if rep := e.message(); rep.Type() != dhcpv6.MessageTypeReply || rep.Options.BootFileURL() == "" {
		t.Errorf("proxy Reply: %v", rep)
	}
	// An OS's client, a renewal, an unknown machine: not ours.
	e.in(msg(t, dhcpv6.MessageTypeSolicit, mac), mac)
	e.in(msg(t, dhcpv6.MessageTypeRenew, mac, withServerID, withAddr("fd00:99::5")), mac)
	e.in(msg(t, dhcpv6.MessageTypeSolicit, "52:54:00:00:04:02", pxe(iana.EFI_X86_64)...), "52:54:00:00:04:02")
	e.noReply()
	if e.errors(reasonNotPXE) != 1 || e.errors(reasonProxyMode) != 1 || e.errors(reasonUnknown) != 1 {
		t.Errorf("not_firmware %v proxy_mode %v unknown %v", e.errors(reasonNotPXE), e.errors(reasonProxyMode), e.errors(reasonUnknown))
	}
	if ls := e.host.Leases(); len(ls) != 0 {
		t.Errorf("proxy mode stored leases %+v", ls)
	}
}

func TestInformationRequest(t *testing.T) {
	e := newEnv(t, nil)
	const mac = "52:54:00:00:05:01"
	known(e.host, mac, "pc-5")
	m := msg(t, dhcpv6.MessageTypeInformationRequest, mac, append(pxe(iana.EFI_X86_64), dhcpv6.WithUserClass([]byte("iPXE")))...)
	m.Options.Del(dhcpv6.OptionIANA)
	e.in(m, mac)
	rep := e.message()
	if rep.Type() != dhcpv6.MessageTypeReply || rep.Options.OneIANA() != nil || len(rep.Options.DNS()) != 1 {
		t.Fatalf("Reply %v", rep)
	}
	if got := rep.Options.BootFileURL(); got != "http://10.0.0.1:9184/boot/"+mac+".ipxe" {
		t.Errorf("iPXE script URL %q", got)
	}
}

func TestLeasesSurviveRestart(t *testing.T) {
	fh := plugintest.NewFakeHost()
	e := newEnvWith(t, baseConfig(), fh)
	const mac = "52:54:00:00:06:01"
	a := addrOf(t, e.sarr(mac))
	e2 := newEnvWith(t, baseConfig(), fh)
	e2.in(msg(t, dhcpv6.MessageTypeSolicit, mac), mac)
	if got := addrOf(t, e2.message()); got != a {
		t.Errorf("after a restart: %s, want its stored %s", got, a)
	}
	// And another MAC cannot take it.
	e2.in(msg(t, dhcpv6.MessageTypeRebind, "52:54:00:00:06:02", withAddr(a.String())), "52:54:00:00:06:02")
	if m := e2.message(); iaStatus(m) != iana.StatusNoBinding {
		t.Errorf("Rebind of another's address: %v", m)
	}
}

func TestPoolExhausted(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Pools = []Pool{{Start: "fd00:99::2:0", End: "fd00:99::2:1"}} })
	e.sarr("52:54:00:00:07:01")
	e.sarr("52:54:00:00:07:02")
	e.in(msg(t, dhcpv6.MessageTypeSolicit, "52:54:00:00:07:03"), "52:54:00:00:07:03")
	e.noReply()
	if e.errors(reasonExhausted) != 1 {
		t.Errorf("exhaustion not counted")
	}
}

func TestMalformedCounted(t *testing.T) {
	e := newEnv(t, nil)
	for _, b := range [][]byte{{1}, {1, 2, 3, 4, 0, 1, 0, 9, 1}, {12, 0, 1, 2, 3}, make([]byte, maxPacket+1)} {
		e.srv.handle(context.Background(), b, packetInfo{at: time.Now()})
	}
	e.noReply()
	if got := e.errors(reasonMalformed) + e.errors(reasonTruncated) + e.errors(reasonOversized); got != 4 {
		t.Errorf("bad packets counted %v, want 4", got)
	}
	if e.errors(reasonTruncated) != 1 || e.errors(reasonOversized) != 1 {
		t.Errorf("truncated %v oversized %v", e.errors(reasonTruncated), e.errors(reasonOversized))
	}
	if got := e.requests(typeOther, resultDropped) + e.requests("solicit", resultDropped); got != 4 {
		t.Errorf("dropped requests %v, want 4", got)
	}
}

func TestConfigCheck(t *testing.T) {
	bad := map[string]func(c *Config){
		"interface":         func(c *Config) { c.Interface = "" },
		"pool[0].end":       func(c *Config) { c.Pools = []Pool{{Start: "fd00:99::1", End: "fd00:98::1"}} },
		"pool[0].prefix":    func(c *Config) { c.Pools = []Pool{{Prefix: "fd00:99::/48"}} },
		"boot_url":          func(c *Config) { c.BootURL = "http://[fd00::1]:9184/boot" },
		"server_ip":         func(c *Config) { c.ServerIP = "10.0.0.1" },
		"mode":              func(c *Config) { c.Mode = "reservation" },
		"boot_files[\"x\"]": func(c *Config) { c.BootFiles = map[string]string{"x": "a"} },
		"pool[1].start": func(c *Config) {
			c.Pools = []Pool{{Prefix: "fd00:99::/64"}, {Start: "fd00:99::5", End: "fd00:99::6"}}
		},
	}
	for path, mutate := range bad {
		c := baseConfig()
		mutate(c)
		if _, err := check(*c); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v", path, err)
		}
	}
	c := baseConfig()
	c.Pools = []Pool{{Prefix: "fd00:99:0:1::/64"}}
	s, err := check(*c)
	if err != nil {
		t.Fatal(err)
	}
	p := s.pools[0]
	if p.start != netip.MustParseAddr("fd00:99:0:1::1") || p.size != 1<<64-1 || p.name != "fd00:99:0:1::/64" {
		t.Errorf("prefix pool %+v", p)
	}
	if a := p.addr(p.last()); a != netip.MustParseAddr("fd00:99:0:1:ffff:ffff:ffff:ffff") {
		t.Errorf("last address %s", a)
	}
}

func testCounter(c interface{ Desc() *prometheus.Desc }) float64 {
	return testutil.ToFloat64(c.(prometheus.Collector))
}
