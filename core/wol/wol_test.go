package wol

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestMagicPacket(t *testing.T) {
	p, err := MagicPacket("AA-BB-CC-DD-EE-01")
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{0xff}, 6)
	for range 16 {
		want = append(want, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0x01)
	}
	if !bytes.Equal(p, want) || len(p) != PacketSize {
		t.Fatalf("packet = % x", p)
	}
	for _, bad := range []string{"", "zz:bb:cc:dd:ee:ff", "00:00:00:00:fe:80:00:00"} {
		if _, err := MagicPacket(bad); err == nil {
			t.Errorf("MagicPacket(%q): no error", bad)
		}
	}
}

func TestWakeSendsPacketOnLoopback(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s := &Sender{Broadcast: pc.LocalAddr().String(), Copies: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Wake(ctx, "52:54:00:12:34:56", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	want, _ := MagicPacket("52:54:00:12:34:56")
	buf := make([]byte, 1500)
	for i := range 2 {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("copy %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("copy %d = % x", i, buf[:n])
		}
	}
}

func TestTarget(t *testing.T) {
	s := &Sender{Segments: []netip.Prefix{netip.MustParsePrefix("10.0.5.7/24"), netip.MustParsePrefix("192.168.0.0/16")}}
	cases := map[string]string{
		"10.0.5.20":    "10.0.5.255:9",
		"192.168.77.1": "192.168.255.255:9",
		"172.16.0.1":   "255.255.255.255:9",
		"":             "255.255.255.255:9",
	}
	for in, want := range cases {
		var a netip.Addr
		if in != "" {
			a = netip.MustParseAddr(in)
		}
		if got := s.Target(a); got != want {
			t.Errorf("Target(%s) = %s, want %s", in, got, want)
		}
	}
	s.Broadcast, s.Port = "10.9.9.255:7", 7
	if got := s.Target(netip.MustParseAddr("10.0.5.1")); got != "10.0.5.255:7" {
		t.Errorf("port: %s", got)
	}
	if got := s.Target(netip.Addr{}); got != "10.9.9.255:7" {
		t.Errorf("default: %s", got)
	}
}
