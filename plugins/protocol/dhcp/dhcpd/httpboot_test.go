package dhcpd

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// TestHTTPBootDecision: what a UEFI HTTP boot client (vendor class
// HTTPClient) is told to boot, for each architecture the plugin maps, with
// and without option 93, with the config's and the client's own files.
func TestHTTPBootDecision(t *testing.T) {
	d := host.Decision{Known: true, Client: "pc-1", BootFile: "undionly.kpxe", ScriptURL: "http://10.0.0.1:9184/boot/52:54:00:00:00:01.ipxe"}
	cases := []struct {
		name   string
		vc     string
		arch   int // option 93; -1: not sent
		mutate func(c *Config)
		dec    func(d *host.Decision)
		want   string
	}{
		{name: "x64, option 93", vc: "HTTPClient:Arch:00016:UNDI:003000", arch: 16, want: "http://10.0.0.1:9184/boot/files/ipxe.efi"},
		{name: "x64, vendor class only", vc: "HTTPClient:Arch:00016:UNDI:003000", arch: -1, want: "http://10.0.0.1:9184/boot/files/ipxe.efi"},
		{name: "ia32", vc: "HTTPClient:Arch:00015:UNDI:003000", arch: 15, want: "http://10.0.0.1:9184/boot/files/ipxe.efi"},
		{name: "ebc", vc: "HTTPClient:Arch:00017:UNDI:003000", arch: -1, want: "http://10.0.0.1:9184/boot/files/ipxe.efi"},
		{name: "arm32", vc: "HTTPClient:Arch:00018:UNDI:003000", arch: 18, want: "http://10.0.0.1:9184/boot/files/snp.efi"},
		{name: "arm64", vc: "HTTPClient:Arch:00019:UNDI:003000", arch: -1, want: "http://10.0.0.1:9184/boot/files/snp.efi"},
		{name: "config's x64 file", vc: "HTTPClient:Arch:00016:UNDI:003000", arch: 16,
			mutate: func(c *Config) { c.BootFiles = map[string]string{"efi_x64": "ipxe/snponly.efi"} },
			want:   "http://10.0.0.1:9184/boot/files/ipxe/snponly.efi"},
		{name: "http_boot_url", vc: "HTTPClient:Arch:00016", arch: 16,
			mutate: func(c *Config) { c.HTTPBootURL = "http://[fd00::1]:8080/firmware/" },
			want:   "http://[fd00::1]:8080/firmware/ipxe.efi"},
		{name: "client's own file", vc: "HTTPClient:Arch:00016", arch: 16,
			dec:  func(d *host.Decision) { d.BootFile = "/pc-1/shimx64.efi" },
			want: "http://10.0.0.1:9184/boot/files/pc-1/shimx64.efi"},
		{name: "client's own URL", vc: "HTTPClient:Arch:00016", arch: 16,
			dec:  func(d *host.Decision) { d.BootFile = "http://10.0.0.9/x.efi" },
			want: "http://10.0.0.9/x.efi"},
		{name: "no boot URL to derive from", vc: "HTTPClient:Arch:00016", arch: 16,
			dec:  func(d *host.Decision) { d.ScriptURL = "" },
			want: ""},
		{name: "PXE firmware gets a TFTP name", vc: "PXEClient:Arch:00007:UNDI:003000", arch: 7, want: "ipxe.efi"},
		{name: "iPXE after HTTP boot gets its script", vc: "PXEClient:Arch:00007:UNDI:003010", arch: 7,
			dec:  func(d *host.Decision) {},
			want: "http://10.0.0.1:9184/boot/52:54:00:00:00:01.ipxe"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			set, err := check(*c)
			if err != nil {
				t.Fatal(err)
			}
			mods := []dhcpv4.Modifier{dhcpv4.WithOption(dhcpv4.OptClassIdentifier(tc.vc))}
			if tc.arch >= 0 {
				mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(tc.arch))))
			}
			if tc.name == "iPXE after HTTP boot gets its script" {
				mods = append(mods, ipxe)
			}
			cl := clientOf(discover("52:54:00:00:00:01", mods...))
			if !cl.firmware() {
				t.Fatalf("client %+v not taken for firmware", cl)
			}
			dd := d
			if tc.dec != nil {
				tc.dec(&dd)
			}
			if got := set.bootFile(cl, dd); got != tc.want {
				t.Errorf("boot file %q, want %q", got, tc.want)
			}
		})
	}
}

// ovmfHTTPDiscover is a DHCPDISCOVER as OVMF's HttpBootDxe sends it (edk2
// HttpBootDhcp4.c): option 60 HTTPClient:Arch:00016:UNDI:003000, option
// 93 16, option 94 (UNDI 3.0), option 97 (the machine's GUID) and a
// parameter request list asking for the boot file name and class id.
// Built byte by byte: what the wire carries, not what the library writes.
func ovmfHTTPDiscover(mac net.HardwareAddr, xid uint32) []byte {
	b := make([]byte, 240)
	b[0], b[1], b[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, hlen
	binary.BigEndian.PutUint32(b[4:], xid)
	binary.BigEndian.PutUint16(b[10:], 0x8000) // broadcast
	copy(b[28:], mac)
	copy(b[236:], []byte{99, 130, 83, 99})
	opt := func(code byte, v ...byte) { b = append(append(b, code, byte(len(v))), v...) }
	opt(53, 1)
	opt(57, 0x05, 0xc0) // max message size 1472
	opt(55, 1, 3, 6, 12, 13, 15, 17, 28, 43, 60, 66, 67, 97, 119)
	opt(93, 0, 16)
	opt(94, 1, 3, 0)
	opt(97, append([]byte{0}, []byte("0123456789abcdef")...)...)
	opt(60, []byte("HTTPClient:Arch:00016:UNDI:003000")...)
	b = append(b, 255)
	return b
}

// TestHTTPBootPackets: an OVMF HTTP boot DISCOVER gets, in full mode, an
// OFFER and (after its REQUEST) an ACK with an address, option 60
// HTTPClient and the absolute URL of iPXE under /boot/files/ as option 67
// and file field, and nothing that names TFTP (no siaddr, no option 66);
// in proxy mode an OFFER without an address carrying the same.
func TestHTTPBootPackets(t *testing.T) {
	const mac = "52:54:00:00:00:61"
	const want = "http://10.0.0.1:9180/boot/files/ipxe.efi"
	check := func(t *testing.T, what string, p *dhcpv4.DHCPv4) {
		t.Helper()
		if got := string(p.Options.Get(dhcpv4.OptionClassIdentifier)); got != "HTTPClient" {
			t.Errorf("%s: option 60 %q, want HTTPClient", what, got)
		}
		if got := string(p.Options.Get(dhcpv4.OptionBootfileName)); got != want {
			t.Errorf("%s: option 67 %q, want %q", what, got, want)
		}
		if p.BootFileName != want {
			t.Errorf("%s: file field %q, want %q", what, p.BootFileName, want)
		}
		if p.Options.Has(dhcpv4.OptionTFTPServerName) || !p.ServerIPAddr.IsUnspecified() {
			t.Errorf("%s names a TFTP server: siaddr %s, option 66 %q", what, p.ServerIPAddr, p.TFTPServerName())
		}
		if p.Options.Has(dhcpv4.OptionVendorSpecificInformation) {
			t.Errorf("%s carries option 43 (PXE discovery control), meaningless to HTTP boot", what)
		}
		if got := p.Options.Get(dhcpv4.OptionClientMachineIdentifier); string(got) != "\x000123456789abcdef" {
			t.Errorf("%s: option 97 %q, want the client's echoed", what, got)
		}
	}

	t.Run("full", func(t *testing.T) {
		fh := plugintest.NewFakeHost()
		known(fh, mac, "pc-61", "")
		e := newEnvWith(t, baseConfig(), fh, nil)
		e.srv.handle(t.Context(), ovmfHTTPDiscover(hw(mac), 0x61), packetInfo{})
		offer, _ := e.reply()
		if offer.MessageType() != dhcpv4.MessageTypeOffer || offer.YourIPAddr.IsUnspecified() {
			t.Fatalf("got %s", offer.Summary())
		}
		check(t, "OFFER", offer)
		disc, err := dhcpv4.FromBytes(ovmfHTTPDiscover(hw(mac), 0x61))
		if err != nil {
			t.Fatal(err)
		}
		req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(string(disc.Options.Get(dhcpv4.OptionClassIdentifier)))),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 16})),
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, disc.Options.Get(dhcpv4.OptionClientMachineIdentifier))))
		if err != nil {
			t.Fatal(err)
		}
		e.in(req)
		ack, _ := e.reply()
		if ack.MessageType() != dhcpv4.MessageTypeAck || !ack.YourIPAddr.Equal(offer.YourIPAddr) {
			t.Fatalf("got %s", ack.Summary())
		}
		check(t, "ACK", ack)
		// The session sees firmware: the DISCOVER event says HTTPClient and arch 16.
		ev := fh.WaitEvent(t, host.EventDHCPDiscover, time.Second)
		if ev.Attrs[host.AttrVendorClass] != "HTTPClient:Arch:00016:UNDI:003000" || ev.Attrs[host.AttrArch] != "16" {
			t.Errorf("discover event attrs %v", ev.Attrs)
		}
	})

	t.Run("proxy", func(t *testing.T) {
		fh := plugintest.NewFakeHost()
		known(fh, mac, "pc-61", "")
		c := baseConfig()
		c.Mode = modeProxy
		c.Pools = nil
		e := newEnvWith(t, c, fh, nil)
		e.srv.handle(t.Context(), ovmfHTTPDiscover(hw(mac), 0x62), packetInfo{})
		offer, r := e.reply()
		if offer.MessageType() != dhcpv4.MessageTypeOffer || !offer.YourIPAddr.IsUnspecified() {
			t.Fatalf("proxy answer %s: want an OFFER without an address", offer.Summary())
		}
		if offer.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
			t.Errorf("proxy OFFER carries a lease time")
		}
		if r.dst.Port() != 68 {
			t.Errorf("proxy OFFER sent to %s, want port 68", r.dst)
		}
		check(t, "proxy OFFER", offer)
	})
}
