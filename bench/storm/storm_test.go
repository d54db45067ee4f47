//go:build linux

package main

import (
	"bytes"
	"math"
	"net"
	"testing"
	"time"

	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/e2e/lab"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, c := range []struct {
		vals []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond}, // nearest rank: ceil(0.5*4) = 2nd
		{ms(1, 2, 3, 4), 90, 4 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 90, 90 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
	} {
		if got := percentile(c.vals, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.vals, c.p, got, c.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Unix(1000, 0)
	outs := []*outcome{
		{Done: true, Started: t0, Ended: t0.Add(2 * time.Second), Stages: map[string]time.Duration{stageDHCP: time.Millisecond}},
		{Done: true, Started: t0.Add(time.Second), Ended: t0.Add(5 * time.Second), Stages: map[string]time.Duration{stageDHCP: 3 * time.Millisecond}, Reboots: 2},
		{Started: t0, Ended: t0.Add(3 * time.Second), Err: "dhcp: no answer", Stages: map[string]time.Duration{}},
	}
	s := summarize("x", outs)
	if s.Done != 2 || s.Machines != 3 || s.Total != 5*time.Second || s.Reboots != 2 {
		t.Errorf("summary %+v", s)
	}
	if d := s.Stages[stageDHCP]; d.OK != 2 || d.P50 != time.Millisecond || d.P99 != 3*time.Millisecond {
		t.Errorf("dhcp stage %+v", d)
	}
	if s.Errors["dhcp: no answer"] != 1 {
		t.Errorf("errors %v", s.Errors)
	}
}

func TestErrorKind(t *testing.T) {
	a := errorKind(`script: Get "http://10.99.0.1:9180/boot/02-53-00-00-03-ec.ipxe": EOF`)
	b := errorKind(`script: Get "http://10.99.0.1:9180/boot/02-53-00-00-00-01.ipxe": EOF`)
	if a != b || a != `script: Get "http://N:N/boot/N.ipxe": EOF` {
		t.Errorf("%q, %q", a, b)
	}
	if k := errorKind("iscsi login iqn.2026-11.io.dls:m0042: EOF"); k != "iscsi login iqn.N-N.io.dls:N: EOF" {
		t.Errorf("%q", k)
	}
}

func TestRelayPackets(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x53, 0, 0, 0x01, 0x02}
	giaddr := net.IPv4(10, 99, 0, 2)
	xid := dhcpv4.TransactionID{1, 2, 3, 4}
	d, err := discover(mac, xid, giaddr)
	if err != nil {
		t.Fatal(err)
	}
	// Through the wire format, as the server sees it.
	d, err = dhcpv4.FromBytes(d.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	if d.MessageType() != dhcpv4.MessageTypeDiscover || d.OpCode != dhcpv4.OpcodeBootRequest {
		t.Errorf("type %s op %s", d.MessageType(), d.OpCode)
	}
	if !d.GatewayIPAddr.Equal(giaddr) || d.HopCount != 1 || d.IsBroadcast() {
		t.Errorf("relay fields: giaddr %s hops %d broadcast %v", d.GatewayIPAddr, d.HopCount, d.IsBroadcast())
	}
	if !bytes.Equal(d.ClientHWAddr, mac) || d.TransactionID != xid {
		t.Errorf("chaddr %s xid %s", d.ClientHWAddr, d.TransactionID)
	}
	if a := d.ClientArch(); len(a) != 1 || a[0] != iana.INTEL_X86PC {
		t.Errorf("option 93 %v", a)
	}
	if vc := d.ClassIdentifier(); vc != "PXEClient:Arch:00000:UNDI:002001" {
		t.Errorf("option 60 %q", vc)
	}

	offer, err := dhcpv4.NewReplyFromRequest(d, dhcpv4.WithMessageType(dhcpv4.MessageTypeOffer),
		dhcpv4.WithYourIP(net.IPv4(10, 99, 1, 7)), dhcpv4.WithServerIP(net.IPv4(10, 99, 0, 1)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(10, 99, 0, 1))))
	if err != nil {
		t.Fatal(err)
	}
	r, err := request(offer, giaddr)
	if err != nil {
		t.Fatal(err)
	}
	r, err = dhcpv4.FromBytes(r.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	if r.MessageType() != dhcpv4.MessageTypeRequest || r.TransactionID != xid || !r.GatewayIPAddr.Equal(giaddr) || r.HopCount != 1 {
		t.Errorf("request: type %s xid %s giaddr %s hops %d", r.MessageType(), r.TransactionID, r.GatewayIPAddr, r.HopCount)
	}
	if !r.RequestedIPAddress().Equal(net.IPv4(10, 99, 1, 7)) || !r.ServerIdentifier().Equal(net.IPv4(10, 99, 0, 1)) {
		t.Errorf("request: option 50 %s, option 54 %s", r.RequestedIPAddress(), r.ServerIdentifier())
	}
}

func TestBackoff(t *testing.T) {
	got := backoff(time.Second, 10*time.Second, 6)
	want := []time.Duration{1, 2, 4, 8, 10, 10}
	for i := range want {
		if got[i] != want[i]*time.Second {
			t.Fatalf("backoff = %v", got)
		}
	}
}

func TestParseScript(t *testing.T) {
	sc, err := parseScript([]byte("#!ipxe\n# DLS: m0001\nset initiator-iqn iqn.2026-11.io.dls:initiator:m0001\nsanboot iscsi:10.99.0.1:::0:iqn.2026-11.io.dls:m0001\n"))
	if err != nil {
		t.Fatal(err)
	}
	if sc != (script{Initiator: "iqn.2026-11.io.dls:initiator:m0001", Portal: "10.99.0.1:3260", LUN: 0, Target: "iqn.2026-11.io.dls:m0001"}) {
		t.Errorf("%+v", sc)
	}
	sc, err = parseScript([]byte("set initiator-iqn i\nsanhook iscsi:10.0.0.1:6:3261:1:t\n"))
	if err != nil || sc.Portal != "10.0.0.1:3261" || sc.LUN != 1 || sc.Target != "t" {
		t.Errorf("%+v %v", sc, err)
	}
	if _, err := parseScript([]byte("#!ipxe\nchain http://x/y\n")); err == nil {
		t.Error("a script without sanboot parsed")
	}
}

// The storm's machines read CHAP from DLS's own rendered scripts (the
// template's set username / password / reverse-* lines) and log in with
// it; a script without a password logs in without CHAP.
func TestParseScriptCHAP(t *testing.T) {
	d := bootscript.ScriptData{
		Client: "m0001", MAC: "02:53:00:00:00:00",
		InitiatorIQN: "iqn.2026-11.io.dls:initiator:m0001", TargetIQN: "iqn.2026-11.io.dls:m0001",
		Server: "10.99.0.1", BootURL: "http://10.99.0.1:9180", Image: "storm",
		CHAPUser: "iqn.2026-11.io.dls:initiator:m0001", CHAPSecret: "Ab3dEf6hIj9kLm2nOp",
	}
	text, err := bootscript.Render(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := parseScript([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if sc.CHAP != (chapCreds{User: d.CHAPUser, Secret: d.CHAPSecret}) {
		t.Errorf("one-way CHAP parsed as %+v from\n%s", sc.CHAP, text)
	}
	cfg := loginConfig("10.99.1.7", sc.Portal, sc.Initiator, sc.Target, sc.CHAP)
	if cfg.LocalAddr != "10.99.1.7" || cfg.CHAPUser != d.CHAPUser || cfg.CHAPSecret != d.CHAPSecret || cfg.MutualSecret != "" {
		t.Errorf("login config %+v", cfg)
	}

	d.CHAPMutualUser, d.CHAPMutualSecret = d.TargetIQN, "Zy9xWv8uTs7rQp6o"
	if text, err = bootscript.Render(d, nil); err != nil {
		t.Fatal(err)
	}
	if sc, err = parseScript([]byte(text)); err != nil {
		t.Fatal(err)
	}
	cfg = loginConfig("10.99.1.7", sc.Portal, sc.Initiator, sc.Target, sc.CHAP)
	if cfg.MutualUser != d.TargetIQN || cfg.MutualSecret != d.CHAPMutualSecret {
		t.Errorf("mutual CHAP: login config %+v from\n%s", cfg, text)
	}

	d.CHAPUser, d.CHAPSecret, d.CHAPMutualUser, d.CHAPMutualSecret = "", "", "", ""
	if text, err = bootscript.Render(d, nil); err != nil {
		t.Fatal(err)
	}
	if sc, err = parseScript([]byte(text)); err != nil {
		t.Fatal(err)
	}
	if cfg = loginConfig("", sc.Portal, sc.Initiator, sc.Target, sc.CHAP); cfg.CHAPSecret != "" || cfg.CHAPUser != "" || cfg.LocalAddr != "" {
		t.Errorf("no CHAP in the script, yet login config %+v", cfg)
	}
	// A password without a username answers as the initiator IQN, as iPXE does.
	sc, err = parseScript([]byte("set initiator-iqn iqn.x:i\nset password two words\nsanboot iscsi:10.0.0.1:::0:iqn.x:t\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg = loginConfig("", sc.Portal, sc.Initiator, sc.Target, sc.CHAP); cfg.CHAPUser != "iqn.x:i" || cfg.CHAPSecret != "two words" {
		t.Errorf("login config %+v", cfg)
	}
}

func TestWriteBlock(t *testing.T) {
	a, b := writeBlock("r1", "02:53:00:00:00:01", 7), writeBlock("r1", "02:53:00:00:00:01", 8)
	if len(a) != writeSize || bytes.Equal(a, b) || !bytes.Equal(a, writeBlock("r1", "02:53:00:00:00:01", 7)) {
		t.Error("write blocks are not unique per nonce and reproducible")
	}
	if !bytes.HasPrefix(a, []byte("dls-storm run=r1 mac=02:53:00:00:00:01 nonce=0000000000000007\n")) {
		t.Errorf("header %q", a[:64])
	}
}

func TestSAMLUN(t *testing.T) {
	if samLUN(0) != 0 || samLUN(1) != 1<<48 || samLUN(300) != (0x4000|300)<<48 {
		t.Errorf("samLUN: %#x %#x %#x", samLUN(0), samLUN(1), samLUN(300))
	}
}

func TestDuplicateLeases(t *testing.T) {
	outs := []*outcome{
		{Acks: []ack{{MAC: "a", Addr: "10.0.0.1"}, {MAC: "a", Addr: "10.0.0.1"}}},
		{Acks: []ack{{MAC: "b", Addr: "10.0.0.2"}}},
	}
	if d := duplicateLeases(outs); len(d) != 0 {
		t.Errorf("no duplicates expected: %v", d)
	}
	outs = append(outs, &outcome{Acks: []ack{{MAC: "c", Addr: "10.0.0.1"}}})
	if d := duplicateLeases(outs); len(d) != 1 || len(d["10.0.0.1"]) != 2 {
		t.Errorf("duplicate of 10.0.0.1 expected: %v", d)
	}
}

func TestACKUnderIO(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	outs := []*outcome{
		// Its ACK (10-14 ms) waited while the second machine's disk work
		// (5-20 ms) ran: counted.
		{ACKWait: span{at(10), at(14)}, DiskIO: span{at(100), at(200)}},
		// Its ACK (1-3 ms) came before anyone's disk work: not counted.
		{ACKWait: span{at(1), at(3)}, DiskIO: span{at(5), at(20)}},
		// Its ACK (250-260 ms) overlapped only its own disk work: not counted.
		{ACKWait: span{at(250), at(260)}, DiskIO: span{at(250), at(300)}},
		// No ACK (DHCP failed): not counted.
		{},
	}
	s := ackUnderIO(outs)
	if s.OK != 1 || s.P50 != 4*time.Millisecond || s.P99 != 4*time.Millisecond {
		t.Errorf("ack under io %+v, want one ACK of 4 ms", s)
	}
	if (span{at(0), at(5)}).overlaps(span{at(5), at(6)}) {
		t.Error("spans that only touch overlap")
	}
	if (span{at(0), at(5)}).overlaps(span{}) {
		t.Error("a zero span overlaps")
	}
}

// TestHistogramQuantile: the target's login histogram reads as
// Prometheus's histogram_quantile would.
func TestHistogramQuantile(t *testing.T) {
	m := lab.Metrics{
		`dls_iscsi_login_duration_seconds_bucket{plugin="disks",step="total",le="0.01"}`:  10,
		`dls_iscsi_login_duration_seconds_bucket{plugin="disks",step="total",le="0.1"}`:   90,
		`dls_iscsi_login_duration_seconds_bucket{plugin="disks",step="total",le="1"}`:     100,
		`dls_iscsi_login_duration_seconds_bucket{plugin="disks",step="total",le="+Inf"}`:  100,
		`dls_iscsi_login_duration_seconds_bucket{plugin="disks",step="attach",le="0.01"}`: 100,
	}
	h := buckets(m, "dls_iscsi_login_duration_seconds_bucket", `step="total"`)
	if len(h) != 4 {
		t.Fatalf("buckets %v", h)
	}
	for q, want := range map[float64]float64{0.05: 0.005, 0.5: 0.01 + 0.09*40/80, 0.95: 0.1 + 0.9*5/10} {
		if got := h.quantile(q); math.Abs(got-want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
}
