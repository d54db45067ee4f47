package dhcpd

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/leaseslot"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// env is a server with no sockets: packets go in through handle, replies
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

func baseConfig() *Config {
	c := defaultConfig()
	c.ServerIP = "10.0.0.1"
	c.DNS = []string{"10.0.0.53"}
	c.Domain = "lab.example"
	c.NTP = []string{"10.0.0.123"}
	c.MTU = 1400
	c.Pools = []Pool{{Start: "10.0.0.100", End: "10.0.0.109", Netmask: "255.255.255.0", Router: "10.0.0.1"}}
	return c
}

func newEnv(t *testing.T, mutate func(c *Config)) *env {
	t.Helper()
	c := baseConfig()
	if mutate != nil {
		mutate(c)
	}
	return newEnvWith(t, c, plugintest.NewFakeHost(), nil)
}

func newEnvWith(t *testing.T, c *Config, fh *plugintest.FakeHost, leases host.Leases) *env {
	t.Helper()
	set, err := check(*c)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	hs := fh.Services()
	if leases != nil {
		hs.Leases = leases
	}
	e := &env{t: t, host: fh, sent: make(chan reply, 4096)}
	e.srv = newServer(context.Background(), set, set.serverIP, hs, newMetrics(metrics.NewRegistry()), hclog.NewNullLogger())
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

// in handles p as arriving from src (zero: a client without an address)
// on the server port.
func (e *env) in(p *dhcpv4.DHCPv4) { e.inFrom(p, packetInfo{}) }

func (e *env) inFrom(p *dhcpv4.DHCPv4, in packetInfo) {
	in.at = time.Now()
	e.srv.handle(context.Background(), p.ToBytes(), in)
}

// reply returns the next reply sent, parsed, and where it went.
func (e *env) reply() (*dhcpv4.DHCPv4, reply) {
	e.t.Helper()
	select {
	case r := <-e.sent:
		p, err := dhcpv4.FromBytes(r.b)
		if err != nil {
			e.t.Fatalf("reply does not parse: %v", err)
		}
		return p, r
	case <-time.After(5 * time.Second):
		e.t.Fatal("no reply")
	}
	return nil, reply{}
}

func (e *env) noReply() {
	e.t.Helper()
	select {
	case r := <-e.sent:
		p, _ := dhcpv4.FromBytes(r.b)
		e.t.Fatalf("unexpected reply: %v", p)
	case <-time.After(50 * time.Millisecond):
	}
}

func (e *env) errors(reason string) float64 {
	return testutil.ToFloat64(e.srv.m.errors.WithLabelValues(reason))
}

// dora runs DISCOVER, OFFER, REQUEST, ACK for mac and returns the ACK.
func (e *env) dora(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	e.t.Helper()
	e.in(discover(mac, mods...))
	offer, _ := e.reply()
	if offer.MessageType() != dhcpv4.MessageTypeOffer {
		e.t.Fatalf("%s: got %s, want OFFER", mac, offer.MessageType())
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.in(req)
	ack, _ := e.reply()
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		e.t.Fatalf("%s: got %s, want ACK", mac, ack.MessageType())
	}
	if !ack.YourIPAddr.Equal(offer.YourIPAddr) {
		e.t.Fatalf("%s: ACK of %s for an OFFER of %s", mac, ack.YourIPAddr, offer.YourIPAddr)
	}
	return ack
}

func hw(mac string) net.HardwareAddr {
	a, err := net.ParseMAC(mac)
	if err != nil {
		panic(err)
	}
	return a
}

func discover(mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	p, err := dhcpv4.NewDiscovery(hw(mac), mods...)
	if err != nil {
		panic(err)
	}
	return p
}

// pxe makes a request look like a PXE ROM's of arch.
func pxe(arch iana.Arch) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) {
		d.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:" + pad5(int(arch)) + ":UNDI:002001"))
		d.UpdateOption(dhcpv4.OptClientArch(arch))
		d.UpdateOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, make([]byte, 16)...)))
	}
}

func pad5(n int) string {
	s := "00000" + itoa(n)
	return s[len(s)-5:]
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func ipxe(d *dhcpv4.DHCPv4) { d.UpdateOption(dhcpv4.OptUserClass("iPXE")) }

func relayed(gi string) dhcpv4.Modifier {
	return func(d *dhcpv4.DHCPv4) { d.GatewayIPAddr = net.ParseIP(gi).To4(); d.HopCount = 1 }
}

// known registers mac with the host as the real host answers: the boot
// file of the arch, the script URL, next server.
func known(fh *plugintest.FakeHost, mac, name, reserved string) {
	fh.SetClient(mac, host.Decision{
		Client: name, BootFile: "undionly.kpxe", NextServer: "10.0.0.2",
		ScriptURL:       "http://10.0.0.1:9180/boot/" + mac + ".ipxe",
		ReservedAddress: reserved,
	})
}

func TestDORAGivesAnAddressWithItsOptions(t *testing.T) {
	e := newEnv(t, nil)
	e.in(discover("52:54:00:00:00:01"))
	offer, r := e.reply()
	if got := offer.YourIPAddr.String(); got != "10.0.0.100" {
		t.Errorf("offered %s, want 10.0.0.100", got)
	}
	if r.dst.String() != "255.255.255.255:68" {
		t.Errorf("OFFER sent to %s, want the broadcast", r.dst)
	}
	checks := map[string]bool{
		"server id":  offer.ServerIdentifier().Equal(net.ParseIP("10.0.0.1")),
		"lease time": offer.IPAddressLeaseTime(0) == time.Hour,
		"renew":      offer.IPAddressRenewalTime(0) == 30*time.Minute,
		"rebind":     offer.IPAddressRebindingTime(0) == 52*time.Minute+30*time.Second,
		"netmask":    net.IP(offer.SubnetMask()).Equal(net.ParseIP("255.255.255.0").To4()),
		"router":     len(offer.Router()) == 1 && offer.Router()[0].Equal(net.ParseIP("10.0.0.1")),
		"dns":        len(offer.DNS()) == 1 && offer.DNS()[0].Equal(net.ParseIP("10.0.0.53")),
		"domain":     offer.DomainName() == "lab.example",
		"ntp":        len(offer.NTPServers()) == 1 && offer.NTPServers()[0].Equal(net.ParseIP("10.0.0.123")),
		"mtu":        slices.Equal(offer.Options.Get(dhcpv4.OptionInterfaceMTU), []byte{0x05, 0x78}),
		"no boot":    offer.BootFileName == "" && offer.Options.Get(dhcpv4.OptionBootfileName) == nil,
	}
	for what, ok := range checks {
		if !ok {
			t.Errorf("OFFER: wrong %s: %s", what, offer.Summary())
		}
	}
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	e.in(req)
	ack, _ := e.reply()
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.YourIPAddr.String() != "10.0.0.100" {
		t.Fatalf("ACK: %s", ack.Summary())
	}
	ls := e.host.Leases()
	if len(ls) != 1 || ls[0].Address != "10.0.0.100" || ls[0].MAC != "52:54:00:00:00:01" || ls[0].State != host.LeaseBound {
		t.Fatalf("stored leases: %+v", ls)
	}
	if d := time.Until(ls[0].Expires); d < 59*time.Minute || d > time.Hour {
		t.Errorf("lease expires in %s, want 1h", d)
	}
	// Renewal: unicast from the client's address, answered to it.
	renew, _ := dhcpv4.NewRenewFromAck(ack)
	e.in(renew)
	ack2, r2 := e.reply()
	if ack2.MessageType() != dhcpv4.MessageTypeAck || r2.dst.String() != "10.0.0.100:68" {
		t.Fatalf("renewal: %s to %s", ack2.MessageType(), r2.dst)
	}
}

func TestAddressesAreDistinctAndReturningMACGetsItsAddress(t *testing.T) {
	e := newEnv(t, nil)
	seen := map[string]string{}
	for i := 1; i <= 5; i++ {
		mac := "52:54:00:00:00:0" + itoa(i)
		a := e.dora(mac).YourIPAddr.String()
		if other, dup := seen[a]; dup {
			t.Fatalf("%s given to %s and %s", a, other, mac)
		}
		seen[a] = mac
	}
	// A returning client (a new DISCOVER after a reboot) gets its
	// address back, also after releasing it.
	ack := e.dora("52:54:00:00:00:03")
	if ack.YourIPAddr.String() != "10.0.0.102" {
		t.Errorf("returning MAC got %s, want 10.0.0.102", ack.YourIPAddr)
	}
	rel, _ := dhcpv4.NewReleaseFromACK(ack)
	e.in(rel)
	e.noReply()
	if _, st, _, _ := e.srv.table.lease(ip4From(netip.MustParseAddr("10.0.0.102"))); st != leaseslot.Released {
		t.Errorf("state after RELEASE: %d, want released", st)
	}
	if got := e.dora("52:54:00:00:00:09").YourIPAddr.String(); got != "10.0.0.105" {
		t.Errorf("a new MAC got %s, want a never-used address 10.0.0.105", got)
	}
	if got := e.dora("52:54:00:00:00:03").YourIPAddr.String(); got != "10.0.0.102" {
		t.Errorf("MAC that released got %s, want its 10.0.0.102 back", got)
	}
}

func TestExpiredLeasesAreReusedAndExhaustionAnswersNothing(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Pools[0].End = "10.0.0.101"; c.LeaseTime = time.Second })
	e.dora("52:54:00:00:00:01")
	e.dora("52:54:00:00:00:02")
	e.in(discover("52:54:00:00:00:03"))
	e.noReply()
	if n := e.errors(reasonExhausted); n != 1 {
		t.Errorf("pool_exhausted = %v, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond) // both leases expired
	ack := e.dora("52:54:00:00:00:03")
	if a := ack.YourIPAddr.String(); a != "10.0.0.100" && a != "10.0.0.101" {
		t.Fatalf("got %s", a)
	}
	// The store agrees: the other MAC's expired lease was replaced.
	for _, l := range e.host.Leases() {
		if l.Address == ack.YourIPAddr.String() && l.MAC != "52:54:00:00:00:03" {
			t.Errorf("store: %+v", l)
		}
	}
}

func TestReservation(t *testing.T) {
	fh := plugintest.NewFakeHost()
	known(fh, "52:54:00:00:00:21", "pc-21", "10.0.0.21")  // in the subnet, outside the range
	known(fh, "52:54:00:00:00:22", "pc-22", "10.0.0.100") // inside the range
	e := newEnvWith(t, baseConfig(), fh, nil)
	if got := e.dora("52:54:00:00:00:21").YourIPAddr.String(); got != "10.0.0.21" {
		t.Errorf("reserved client got %s, want 10.0.0.21", got)
	}
	if got := e.dora("52:54:00:00:00:22").YourIPAddr.String(); got != "10.0.0.100" {
		t.Errorf("reserved client got %s, want 10.0.0.100", got)
	}
	// Nobody else gets a reserved address, even asking for it.
	e.in(discover("52:54:00:00:00:99", dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.21")))))
	other, _ := e.reply()
	if a := other.YourIPAddr.String(); a == "10.0.0.21" || a == "10.0.0.100" {
		t.Errorf("another MAC got reserved %s", a)
	}
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:00:98")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.21"))))
	e.in(req)
	if nak, _ := e.reply(); nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Errorf("INIT-REBOOT for another's reserved address: %s, want NAK", nak.MessageType())
	}
}

func TestReservationMode(t *testing.T) {
	fh := plugintest.NewFakeHost()
	known(fh, "52:54:00:00:00:21", "pc-21", "10.0.0.21")
	known(fh, "52:54:00:00:00:22", "pc-22", "")
	c := baseConfig()
	c.Mode = modeReservation
	e := newEnvWith(t, c, fh, nil)
	if got := e.dora("52:54:00:00:00:21").YourIPAddr.String(); got != "10.0.0.21" {
		t.Errorf("got %s, want 10.0.0.21", got)
	}
	e.in(discover("52:54:00:00:00:22"))
	e.in(discover("52:54:00:00:00:23"))
	e.noReply()
	if e.errors(reasonNoReservation) != 1 || e.errors(reasonUnknownClient) != 1 {
		t.Errorf("no_reservation %v, unknown_client %v, want 1 and 1", e.errors(reasonNoReservation), e.errors(reasonUnknownClient))
	}
}

func TestPXEBootFiles(t *testing.T) {
	fh := plugintest.NewFakeHost()
	known(fh, "52:54:00:00:00:31", "pc-31", "")
	fh.SetClient("52:54:00:00:00:32", host.Decision{Client: "pc-32", BootFile: "custom.efi", NextServer: "10.0.0.2"})
	// A client booting through shim; the host's BootFile is iPXE's, as a
	// pushed decision's is empty: the loader decides for EFI x64 alone.
	fh.SetClient("52:54:00:00:00:33", host.Decision{Client: "pc-33", BootFile: "ipxe.efi", NextServer: "10.0.0.2",
		ScriptURL: "http://10.0.0.1:9180/boot/52:54:00:00:00:33.ipxe", Loader: host.LoaderShim})
	c := baseConfig()
	c.BootFiles = map[string]string{"efi_arm64": "arm/snp.efi"}
	e := newEnvWith(t, c, fh, nil)
	cases := []struct {
		name, mac string
		mods      []dhcpv4.Modifier
		file      string
		class     string
	}{
		{"bios", "52:54:00:00:00:31", []dhcpv4.Modifier{pxe(iana.INTEL_X86PC)}, "undionly.kpxe", "PXEClient"},
		{"uefi x64", "52:54:00:00:00:31", []dhcpv4.Modifier{pxe(iana.EFI_X86_64)}, "ipxe.efi", "PXEClient"},
		{"arm64 (config)", "52:54:00:00:00:31", []dhcpv4.Modifier{pxe(iana.EFI_ARM64)}, "arm/snp.efi", "PXEClient"},
		{"per client", "52:54:00:00:00:32", []dhcpv4.Modifier{pxe(iana.EFI_X86_64)}, "custom.efi", "PXEClient"},
		{"ipxe", "52:54:00:00:00:31", []dhcpv4.Modifier{pxe(iana.INTEL_X86PC), ipxe}, "http://10.0.0.1:9180/boot/52:54:00:00:00:31.ipxe", "PXEClient"},
		{"shim, uefi x64", "52:54:00:00:00:33", []dhcpv4.Modifier{pxe(iana.EFI_X86_64)}, "shimx64.efi", "PXEClient"},
		{"shim, bios: ipxe", "52:54:00:00:00:33", []dhcpv4.Modifier{pxe(iana.INTEL_X86PC)}, "undionly.kpxe", "PXEClient"},
		{"shim, arm64: config's ipxe", "52:54:00:00:00:33", []dhcpv4.Modifier{pxe(iana.EFI_ARM64)}, "arm/snp.efi", "PXEClient"},
		{"shim, ipxe running: its script", "52:54:00:00:00:33", []dhcpv4.Modifier{pxe(iana.EFI_X86_64), ipxe}, "http://10.0.0.1:9180/boot/52:54:00:00:00:33.ipxe", "PXEClient"},
		{"shim, http boot", "52:54:00:00:00:33", []dhcpv4.Modifier{func(d *dhcpv4.DHCPv4) {
			d.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001"))
			d.UpdateOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))
		}}, "http://10.0.0.1:9180/boot/files/shimx64.efi", "HTTPClient"},
		{"http boot", "52:54:00:00:00:31", []dhcpv4.Modifier{func(d *dhcpv4.DHCPv4) {
			d.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001"))
			d.UpdateOption(dhcpv4.OptClientArch(iana.EFI_X86_64_HTTP))
		}}, "http://10.0.0.1:9180/boot/files/ipxe.efi", "HTTPClient"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			ack := e.dora(tc.mac, tc.mods...)
			if got := ack.Options.Get(dhcpv4.OptionBootfileName); string(got) != tc.file {
				t.Errorf("option 67 %q, want %q", got, tc.file)
			}
			if ack.BootFileName != tc.file {
				t.Errorf("file %q, want %q", ack.BootFileName, tc.file)
			}
			if got := string(ack.Options.Get(dhcpv4.OptionClassIdentifier)); got != tc.class {
				t.Errorf("option 60 %q, want %q", got, tc.class)
			}
			if tc.class == "HTTPClient" {
				// A URL to fetch: no TFTP server named (TestHTTPBootPackets).
				if !ack.ServerIPAddr.IsUnspecified() || ack.TFTPServerName() != "" {
					t.Errorf("HTTP boot answer names siaddr %s, option 66 %q", ack.ServerIPAddr, ack.TFTPServerName())
				}
			} else if !ack.ServerIPAddr.Equal(net.ParseIP("10.0.0.2")) || ack.TFTPServerName() != "10.0.0.2" {
				t.Errorf("siaddr %s, option 66 %q, want 10.0.0.2", ack.ServerIPAddr, ack.TFTPServerName())
			}
			if tc.class == "PXEClient" && len(ack.Options.Get(dhcpv4.OptionClientMachineIdentifier)) != 17 {
				t.Errorf("option 97 not echoed")
			}
			// UEFI's PXE needs discovery control 8 in full mode too.
			if o43 := ack.Options.Get(dhcpv4.OptionVendorSpecificInformation); tc.class == "PXEClient" && !slices.Equal(o43, []byte{6, 1, 8, 255}) {
				t.Errorf("option 43 %v, want discovery control 8", o43)
			}
		})
	}
	// Events: the firmware's DISCOVER carries what tells it from an OS.
	ev := fh.WaitEvent(t, host.EventDHCPDiscover, time.Second)
	if ev.Client != "pc-31" || ev.Attrs[host.AttrVendorClass] == "" || ev.Attrs[host.AttrArch] != "0" {
		t.Errorf("discover event %+v", ev)
	}
	if ack := fh.WaitEvent(t, host.EventDHCPAck, time.Second); ack.Address == "" {
		t.Errorf("ack event without address: %+v", ack)
	}
	// An unknown machine's firmware gets an address and nothing to boot.
	ack := e.dora("52:54:00:00:00:39", pxe(iana.INTEL_X86PC))
	if ack.BootFileName != "" || ack.Options.Get(dhcpv4.OptionBootfileName) != nil {
		t.Errorf("unknown firmware got a boot file: %s", ack.Summary())
	}
}

func TestProxyMode(t *testing.T) {
	fh := plugintest.NewFakeHost()
	known(fh, "52:54:00:00:00:41", "pc-41", "")
	c := baseConfig()
	c.Mode = modeProxy
	c.Pools = nil
	e := newEnvWith(t, c, fh, nil)
	e.in(discover("52:54:00:00:00:41")) // an OS: the site's server answers it
	e.in(discover("52:54:00:00:00:49", pxe(iana.INTEL_X86PC)))
	e.noReply()
	if e.errors(reasonNotPXE) != 1 || e.errors(reasonUnknownClient) != 1 {
		t.Errorf("not_pxe %v, unknown_client %v", e.errors(reasonNotPXE), e.errors(reasonUnknownClient))
	}
	e.in(discover("52:54:00:00:00:41", pxe(iana.INTEL_X86PC)))
	offer, r := e.reply()
	if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.IsUnspecified() {
		t.Fatalf("proxy OFFER: %s", offer.Summary())
	}
	if offer.BootFileName != "undionly.kpxe" || string(offer.Options.Get(dhcpv4.OptionClassIdentifier)) != "PXEClient" ||
		!slices.Equal(offer.Options.Get(dhcpv4.OptionVendorSpecificInformation), []byte{6, 1, 8, 255}) {
		t.Errorf("proxy OFFER options: %s", offer.Summary())
	}
	if offer.Options.Get(dhcpv4.OptionIPAddressLeaseTime) != nil {
		t.Errorf("proxy OFFER carries a lease time")
	}
	if r.dst.Port() != 68 {
		t.Errorf("proxy OFFER to %s", r.dst)
	}
	// After its address from the site's server, the ROM asks the proxy
	// on port 4011.
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:00:41")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("10.0.0.77")), pxe(iana.INTEL_X86PC))
	src := netip.MustParseAddrPort("10.0.0.77:4011")
	e.inFrom(req, packetInfo{proxy: true, src: src})
	ack, r := e.reply()
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != "undionly.kpxe" || r.dst != src {
		t.Errorf("proxy ACK %s to %s", ack.Summary(), r.dst)
	}
	if len(e.host.Leases()) != 0 {
		t.Errorf("proxy mode stored leases: %+v", e.host.Leases())
	}
}

func TestRelayedRequestsAreAnsweredToTheRelay(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Pools = append(c.Pools, Pool{Name: "far", Start: "10.9.0.10", End: "10.9.0.20", Netmask: "255.255.255.0", Router: "10.9.0.1"})
	})
	e.in(discover("52:54:00:00:00:51", relayed("10.9.0.1")))
	offer, r := e.reply()
	if offer.YourIPAddr.String() != "10.9.0.10" || r.dst.String() != "10.9.0.1:67" || r.ifIndex != 0 {
		t.Fatalf("relayed OFFER of %s to %s", offer.YourIPAddr, r.dst)
	}
	if !offer.GatewayIPAddr.Equal(net.ParseIP("10.9.0.1")) {
		t.Errorf("giaddr not kept: %s", offer.GatewayIPAddr)
	}
	e.in(discover("52:54:00:00:00:52", relayed("10.8.0.1")))
	e.noReply()
	if e.errors(reasonNoPool) != 1 {
		t.Errorf("no_pool = %v", e.errors(reasonNoPool))
	}
}

func TestRequestForAnotherServerFreesTheOffer(t *testing.T) {
	e := newEnv(t, nil)
	e.in(discover("52:54:00:00:00:61"))
	offer, _ := e.reply()
	req, _ := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.250"))))
	e.in(req)
	e.noReply()
	if e.errors(reasonOtherServer) != 1 {
		t.Errorf("other_server = %v", e.errors(reasonOtherServer))
	}
	if got := e.dora("52:54:00:00:00:62").YourIPAddr.String(); got != "10.0.0.101" {
		// .100 stays the first MAC's (returning MAC), but is no longer held.
		t.Logf("second MAC got %s", got)
	}
}

func TestDeclineQuarantines(t *testing.T) {
	e := newEnv(t, nil)
	ack := e.dora("52:54:00:00:00:71")
	dec, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:00:71")), dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr)), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.0.0.1"))))
	e.in(dec)
	e.noReply()
	if got := e.dora("52:54:00:00:00:71").YourIPAddr; got.Equal(ack.YourIPAddr) {
		t.Errorf("declined address %s offered again", got)
	}
	if got := e.dora("52:54:00:00:00:72").YourIPAddr; got.Equal(ack.YourIPAddr) {
		t.Errorf("quarantined address %s offered to another", got)
	}
	var declined bool
	for _, l := range e.host.Leases() {
		declined = declined || (l.Address == ack.YourIPAddr.String() && l.State == host.LeaseDeclined)
	}
	if !declined {
		t.Errorf("store has no declined lease: %+v", e.host.Leases())
	}
}

func TestInform(t *testing.T) {
	e := newEnv(t, nil)
	inf, _ := dhcpv4.NewInform(hw("52:54:00:00:00:81"), net.ParseIP("10.0.0.42"))
	e.in(inf)
	ack, r := e.reply()
	if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.IsUnspecified() || r.dst.String() != "10.0.0.42:68" {
		t.Fatalf("INFORM answer %s to %s", ack.Summary(), r.dst)
	}
	if ack.Options.Get(dhcpv4.OptionIPAddressLeaseTime) != nil || len(ack.DNS()) != 1 {
		t.Errorf("INFORM answer options: %s", ack.Summary())
	}
}

func TestConflictWithAnotherHostIsNAKed(t *testing.T) {
	e := newEnv(t, nil)
	e.in(discover("52:54:00:00:00:91"))
	offer, _ := e.reply()
	// Another DLS host sharing the store leased the address meanwhile.
	e.host.PutLease(host.Lease{Pool: "10.0.0.100-10.0.0.109", Address: offer.YourIPAddr.String(), MAC: "52:54:00:ff:ff:ff",
		State: host.LeaseBound, Expires: time.Now().Add(time.Hour)})
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	e.in(req)
	if nak, _ := e.reply(); nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("got %s, want NAK", nak.MessageType())
	}
	if e.errors(reasonConflict) != 1 {
		t.Errorf("lease_conflict = %v", e.errors(reasonConflict))
	}
	if got := e.dora("52:54:00:00:00:91").YourIPAddr; got.Equal(offer.YourIPAddr) {
		t.Errorf("offered the other host's %s again", got)
	}
}

func TestLeasesLoadedAtStart(t *testing.T) {
	fh := plugintest.NewFakeHost()
	fh.PutLease(host.Lease{Pool: "x", Address: "10.0.0.105", MAC: "52:54:00:00:00:a1", State: host.LeaseBound, Expires: time.Now().Add(time.Hour)})
	fh.PutLease(host.Lease{Pool: "x", Address: "10.0.0.100", MAC: "52:54:00:00:00:a2", State: host.LeaseBound, Expires: time.Now().Add(time.Hour)})
	e := newEnvWith(t, baseConfig(), fh, nil)
	if got := e.dora("52:54:00:00:00:a1").YourIPAddr.String(); got != "10.0.0.105" {
		t.Errorf("got %s, want the stored 10.0.0.105", got)
	}
	if got := e.dora("52:54:00:00:00:a3").YourIPAddr.String(); got != "10.0.0.101" {
		t.Errorf("got %s, want 10.0.0.101 (10.0.0.100 is stored as another's)", got)
	}
}

func TestBadPacketsAreDroppedAndCounted(t *testing.T) {
	e := newEnv(t, nil)
	good := discover("52:54:00:00:00:b1").ToBytes()
	handle := func(b []byte) { e.srv.handle(context.Background(), b, packetInfo{at: time.Now()}) }
	handle(good[:100])
	handle(append(append([]byte(nil), good...), make([]byte, 2000)...))
	wrongOp := append([]byte(nil), good...)
	wrongOp[0] = 2
	handle(wrongOp)
	badCookie := append([]byte(nil), good...)
	badCookie[236] = 0
	handle(badCookie)
	badOpt := append([]byte(nil), good[:240]...)
	handle(append(badOpt, 53, 40, 1)) // option longer than the packet
	tr := discover("52:54:00:00:00:b2")
	tr.HWType = iana.HWTypeIEEE802
	handle(tr.ToBytes())
	bootp := discover("52:54:00:00:00:b3")
	bootp.Options.Del(dhcpv4.OptionDHCPMessageType)
	handle(bootp.ToBytes())
	e.noReply()
	for reason, want := range map[string]float64{
		reasonTruncated: 1, reasonOversized: 1, reasonWrongOp: 1, reasonMalformed: 2, reasonHardware: 1, reasonBOOTP: 1,
	} {
		if got := e.errors(reason); got != want {
			t.Errorf("%s = %v, want %v", reason, got, want)
		}
	}
}

func TestOneMACFloodingCannotDrainThePool(t *testing.T) {
	e := newEnv(t, nil)
	start := time.Now()
	for i := 0; i < 500; i++ {
		p := discover("52:54:00:00:00:c1")
		e.in(p)
	}
	// The bucket refills at rate_limit (10/s) while the flood is fed in:
	// on a loaded machine that takes long enough to earn a token or two.
	allowed := 20 + int(10*time.Since(start).Seconds())
	replies := len(e.sent)
	if replies > allowed || replies == 0 {
		t.Errorf("%d OFFERs for 500 DISCOVERs of one MAC, want at most the burst (20) and what the rate refilled meanwhile (%d in all)", replies, allowed)
	}
	if n := e.errors(reasonRateLimited); n < float64(500-allowed) {
		t.Errorf("rate_limited = %v", n)
	}
	addrs := map[string]bool{}
	for len(e.sent) > 0 {
		r := <-e.sent
		p, _ := dhcpv4.FromBytes(r.b)
		addrs[p.YourIPAddr.String()] = true
	}
	if len(addrs) != 1 {
		t.Errorf("one MAC was offered %d addresses", len(addrs))
	}
	// Random MACs: each gets its own (the limit is per MAC).
	for i := 0; i < 9; i++ {
		e.in(discover("52:54:00:00:01:0" + itoa(i)))
		if o, _ := e.reply(); o.YourIPAddr == nil {
			t.Fatal("no offer")
		}
	}
}

// gatedLeases holds every Commit until the test opens the gate.
type gatedLeases struct {
	*plugintest.FakeHost
	gate    chan struct{}
	mu      sync.Mutex
	batches []int
}

func (g *gatedLeases) Commit(ctx context.Context, ls []host.Lease) ([]host.CommitResult, error) {
	<-g.gate
	g.mu.Lock()
	g.batches = append(g.batches, len(ls))
	g.mu.Unlock()
	return g.FakeHost.Commit(ctx, ls)
}

func TestACKOnlyAfterCommitAndCommitsAreGrouped(t *testing.T) {
	fh := plugintest.NewFakeHost()
	g := &gatedLeases{FakeHost: fh, gate: make(chan struct{})}
	e := newEnvWith(t, baseConfig(), fh, g)
	var reqs []*dhcpv4.DHCPv4
	for i := 0; i < 8; i++ {
		e.in(discover("52:54:00:00:00:d" + itoa(i)))
		offer, _ := e.reply()
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		reqs = append(reqs, req)
	}
	for _, r := range reqs {
		e.in(r)
	}
	e.noReply() // nothing stored yet: no ACK
	close(g.gate)
	for range reqs {
		if ack, _ := e.reply(); ack.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("got %s", ack.MessageType())
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The first batch holds what arrived within its gather window (1 ms,
	// more or fewer under load); everything that waited behind the gate
	// goes in the next one.
	if len(g.batches) > 2 {
		t.Errorf("commit batches %v, want the waiting leases in one batch", g.batches)
	}
	if len(fh.Leases()) != 8 {
		t.Errorf("%d leases stored, want 8", len(fh.Leases()))
	}
}

func TestCommitFailureSendsNoACK(t *testing.T) {
	fh := plugintest.NewFakeHost()
	e := newEnvWith(t, baseConfig(), fh, failingLeases{fh})
	e.in(discover("52:54:00:00:00:e1"))
	offer, _ := e.reply()
	req, _ := dhcpv4.NewRequestFromOffer(offer)
	e.in(req)
	e.noReply()
	deadline := time.Now().Add(2 * time.Second)
	for e.errors(reasonCommitFailed) != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.errors(reasonCommitFailed) != 1 || e.srv.commits.Err() == nil {
		t.Errorf("commit_failed = %v, err %v", e.errors(reasonCommitFailed), e.srv.commits.Err())
	}
}

type failingLeases struct{ *plugintest.FakeHost }

func (failingLeases) Commit(context.Context, []host.Lease) ([]host.CommitResult, error) {
	return nil, context.DeadlineExceeded
}

// TestLeaseCommittedBeforeACK: when an ACK leaves, the host already holds
// its lease, bound to the MAC (the host binds the boot path from it, so
// the machine's first script request finds its binding).
func TestLeaseCommittedBeforeACK(t *testing.T) {
	fh := plugintest.NewFakeHost()
	e := newEnvWith(t, baseConfig(), fh, nil)
	out := e.srv.out
	var mu sync.Mutex
	var acks, missing int
	e.srv.out = func(r reply) error {
		if r.typ == replyAck {
			p, _ := dhcpv4.FromBytes(r.b)
			found := false
			for _, l := range fh.Leases() {
				if l.Address == p.YourIPAddr.String() && l.MAC == p.ClientHWAddr.String() && l.State == host.LeaseBound && l.Expires.After(time.Now()) {
					found = true
				}
			}
			mu.Lock()
			acks++
			if !found {
				missing++
			}
			mu.Unlock()
		}
		return out(r)
	}
	for i := range 5 {
		e.dora("52:54:00:00:01:0" + itoa(i))
	}
	mu.Lock()
	defer mu.Unlock()
	if acks != 5 || missing != 0 {
		t.Errorf("%d ACKs, %d of them sent before their lease was committed", acks, missing)
	}
}

// TestProxyAnswerReportedBeforeItLeaves: in proxy mode the host hears of
// each answer (with the proxy attribute) before it is sent, whatever the
// event batcher's delay.
func TestProxyAnswerReportedBeforeItLeaves(t *testing.T) {
	fh := plugintest.NewFakeHost()
	known(fh, "52:54:00:00:00:42", "pc-42", "")
	c := baseConfig()
	c.Mode = modeProxy
	c.Pools = nil
	e := newEnvWith(t, c, fh, nil)
	e.srv.events = nil // a batcher that would never flush: only the direct report counts
	out := e.srv.out
	var mu sync.Mutex
	var seen []string
	e.srv.out = func(r reply) error {
		n := 0
		for _, ev := range fh.Events() {
			if ev.Attrs[host.AttrProxy] == "true" && ev.MAC == "52:54:00:00:00:42" && ev.Client == "pc-42" {
				n++
			}
		}
		mu.Lock()
		seen = append(seen, r.typ+":"+itoa(n))
		mu.Unlock()
		return out(r)
	}
	e.in(discover("52:54:00:00:00:42", pxe(iana.INTEL_X86PC)))
	e.reply()
	req, _ := dhcpv4.New(dhcpv4.WithHwAddr(hw("52:54:00:00:00:42")), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithClientIP(net.ParseIP("10.0.0.78")), pxe(iana.INTEL_X86PC))
	e.inFrom(req, packetInfo{proxy: true, src: netip.MustParseAddrPort("10.0.0.78:4011")})
	e.reply()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != replyOffer+":1,"+replyAck+":2" {
		t.Errorf("proxy answers sent with %v host-known proxy events, want the offer after 1 and the ACK after 2", seen)
	}
	var types []string
	for _, ev := range fh.Events() {
		if ev.Attrs[host.AttrProxy] == "true" {
			types = append(types, ev.Type)
		}
	}
	if strings.Join(types, ",") != host.EventDHCPOffer+","+host.EventDHCPAck {
		t.Errorf("proxy events %v", types)
	}
}
