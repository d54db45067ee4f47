package tftpd

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/pin/tftp/v3"
)

// TestPinClient fetches files with an independent Go implementation,
// github.com/pin/tftp/v3's client, at the block sizes boot firmware uses.
func TestPinClient(t *testing.T) {
	for _, mode := range []bool{false, true} {
		t.Run(fmt.Sprintf("single_port=%v", mode), func(t *testing.T) {
			s := startTFTP(t, map[string]any{"single_port": mode})
			files := map[string][]byte{
				"undionly.kpxe":   s.file(t, "undionly.kpxe", 74213),
				"exact.bin":       s.file(t, "exact.bin", 1468*20),
				"empty":           s.file(t, "empty", 0),
				"efi/x64/ipxe.ef": s.file(t, "efi/x64/ipxe.ef", 300000),
			}
			for name, want := range files {
				for _, blksize := range []int{0, 512, 1468, 65464} {
					c, err := tftp.NewClient(s.addr.String())
					if err != nil {
						t.Fatal(err)
					}
					c.SetTimeout(2 * time.Second)
					c.SetBlockSize(blksize)
					c.RequestTSize(true)
					wt, err := c.Receive(name, "octet")
					if err != nil {
						t.Fatalf("%s blksize %d: %v", name, blksize, err)
					}
					if blksize != 0 {
						if size, ok := wt.(tftp.IncomingTransfer).Size(); !ok || size != int64(len(want)) {
							t.Errorf("%s: tsize %d, %v; want %d", name, size, ok, len(want))
						}
					}
					var got bytes.Buffer
					if _, err := wt.WriteTo(&got); err != nil {
						t.Fatalf("%s blksize %d: %v", name, blksize, err)
					}
					if !bytes.Equal(got.Bytes(), want) {
						t.Fatalf("%s blksize %d: got %d bytes, want %d identical", name, blksize, got.Len(), len(want))
					}
				}
			}
		})
	}
}

// TestPathSafety sends every kind of name that must not be served and
// checks each refusal on the wire and in dls_tftp_errors_total.
func TestPathSafety(t *testing.T) {
	s := startTFTP(t, nil)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	inside := s.file(t, "inside.bin", 1000)
	s.file(t, "sub/file", 10)
	for _, l := range []struct{ target, name string }{
		{outside, "escape"}, // a directory symlink leaving root
		{filepath.Join(outside, "secret"), "secret-link"},  // a file symlink leaving root
		{"../../../../../../" + outside[1:], "rel-escape"}, // a relative one
		{"inside.bin", "inside-link"},                      // a symlink within root: served
	} {
		if err := os.Symlink(l.target, filepath.Join(s.root, l.name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(filepath.Join(s.root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	wrq := append([]byte{0, 2}, rrq("upload.bin", "octet")[2:]...)
	for _, tc := range []struct {
		name   string
		raw    []byte
		code   int
		reason string
	}{
		{"../secret", nil, 2, reasonAccessDenied},
		{"sub/../../secret", nil, 2, reasonAccessDenied},
		{"..", nil, 2, reasonAccessDenied},
		{"//etc/passwd", nil, 1, reasonNotFound}, // read under root, as tftp-hpa -s does
		{"/../secret", nil, 2, reasonAccessDenied},
		{"escape/secret", nil, 2, reasonAccessDenied},
		{"secret-link", nil, 2, reasonAccessDenied},
		{"rel-escape/secret", nil, 2, reasonAccessDenied},
		{"sub", nil, 2, reasonAccessDenied},  // a directory
		{"fifo", nil, 2, reasonAccessDenied}, // not a regular file, and no hang
		{"/etc/passwd", nil, 1, reasonNotFound},
		{"/", nil, 2, reasonAccessDenied}, // root, a directory
		{"missing.bin", nil, 1, reasonNotFound},
		{"sub/file/x", nil, 1, reasonNotFound},
		{"NUL in name", rrq("inside.bin", "../../etc/passwd", "octet"), 4, reasonBadRequest},
		{"name too long", rrq(strings.Repeat("a", 256), "octet"), 4, reasonBadRequest},
		{"mail mode", rrq("inside.bin", "mail"), 4, reasonBadRequest},
		{"garbage", []byte{0, 1, 'x'}, 4, reasonBadRequest},
		{"write request", wrq, 2, reasonWriteRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.errorsOf(t, tc.reason)
			res, err := fetch(t, s.addr, tc.name, fetchOpts{raw: tc.raw})
			if err != nil {
				t.Fatal(err)
			}
			if res.errCode != tc.code {
				t.Fatalf("got error code %d %q (%d bytes of data), want code %d", res.errCode, res.errMsg, len(res.data), tc.code)
			}
			if res.from[s.addr] == 0 {
				t.Errorf("refusal came from %v, not the listen port %v", res.from, s.addr)
			}
			s.h.WaitMetricValue(t, before+1, "dls_tftp_errors_total", tc.reason)
		})
	}
	mustFetch(t, s.addr, "inside-link", inside, fetchOpts{})
	mustFetch(t, s.addr, "./inside.bin", inside, fetchOpts{})
	mustFetch(t, s.addr, "/inside.bin", inside, fetchOpts{}) // GRUB's absolute names
}

// TestScripts serves the host's per-client iPXE script by MAC to the
// requester the host binds to it, reports script_served, and refuses
// unknown machines and other requesters.
func TestScripts(t *testing.T) {
	fh := plugintest.NewFakeHost()
	script := "#!ipxe\nset initiator-iqn iqn.2026-11.io.dls:initiator:pc-01\nsanboot iscsi:10.0.0.1:::0:iqn.2026-11.io.dls:pc-01\n"
	fh.SetScript("52:54:00:12:34:56", "pc-01", script, "127.0.0.1")
	fh.SetScript("52:54:00:00:00:02", "elsewhere", "#!ipxe\n", "10.9.9.9")
	s := startTFTP(t, nil, plugintest.WithHost(fh))

	for _, name := range []string{
		"mac/52-54-00-12-34-56.ipxe", "mac/52:54:00:12:34:56.ipxe", "./mac//52-54-00-12-34-56.IPXE",
	} {
		mustFetch(t, s.addr, name, []byte(script), fetchOpts{options: []string{"tsize", "0", "blksize", "1432"}})
	}
	ev := fh.WaitEvent(t, host.EventScriptServed, 5*time.Second)
	if ev.MAC != "52:54:00:12:34:56" || ev.Client != "pc-01" || ev.Address != "127.0.0.1" ||
		ev.Attrs[host.AttrFile] != "mac/52-54-00-12-34-56.ipxe" || !strings.HasPrefix(ev.Attrs[host.AttrRemote], "127.0.0.1:") {
		t.Errorf("script_served event %+v", ev)
	}
	if q := fh.ScriptQueries()[0]; q.MAC != "52:54:00:12:34:56" || q.Peer != "127.0.0.1" {
		t.Errorf("script query %+v: want the canonical MAC and the requester's address", q)
	}
	for _, name := range []string{"mac/52-54-00-99-99-99.ipxe", "mac/52-54-00-00-00-02.ipxe"} {
		res, err := fetch(t, s.addr, name, fetchOpts{})
		if err != nil || res.errCode != 1 {
			t.Errorf("%s: got %+v, %v; want file not found", name, res, err)
		}
	}
	// Names under mac/ that are not <mac>.ipxe are files.
	static := []byte("#!ipxe\nchain mac/${mac:hexhyp}.ipxe\n")
	s.write(t, "mac/default.ipxe", static)
	mustFetch(t, s.addr, "mac/default.ipxe", static, fetchOpts{})
	ev = fh.WaitEvent(t, host.EventFileServed, 5*time.Second)
	if ev.Attrs[host.AttrFile] != "mac/default.ipxe" || ev.Address != "127.0.0.1" || ev.MAC != "" {
		t.Errorf("file_served event %+v", ev)
	}
}

// TestScriptsOff: scripts = "" leaves every name to the files.
func TestScriptsOff(t *testing.T) {
	fh := plugintest.NewFakeHost()
	fh.SetScript("52:54:00:12:34:56", "pc-01", "#!ipxe\n")
	s := startTFTP(t, map[string]any{"scripts": ""}, plugintest.WithHost(fh))
	res, err := fetch(t, s.addr, "mac/52-54-00-12-34-56.ipxe", fetchOpts{})
	if err != nil || res.errCode != 1 {
		t.Fatalf("got %+v, %v; want file not found", res, err)
	}
	if n := len(fh.Lookups()); n != 0 {
		t.Errorf("%d host lookups with scripts off", n)
	}
}

// TestRetransmission loses DATA and ACK packets in lock-step and in
// windowed transfers: the file still arrives whole, and the server
// counts what it sent again.
func TestRetransmission(t *testing.T) {
	s := startTFTP(t, map[string]any{"timeout": "50ms", "retries": 5})
	const blocks = 150
	want := s.file(t, "kernel", blocks*1024) // and a last, empty block
	first := func(every int64) func(int64, int) bool {
		return func(b int64, attempt int) bool { return b%every == 0 && attempt == 1 }
	}
	for _, tc := range []struct {
		name string
		o    fetchOpts
	}{
		{"lock-step lost ACKs", fetchOpts{options: []string{"blksize", "1024"}, dropACK: first(7)}},
		{"lock-step lost DATA", fetchOpts{options: []string{"blksize", "1024"}, dropData: first(11)}},
		{"lost OACK ACK", fetchOpts{options: []string{"blksize", "1024"}, dropACK: func(b int64, a int) bool { return b == 0 && a < 3 }}},
		{"lost final ACK", fetchOpts{options: []string{"blksize", "1024"}, dropACK: func(b int64, a int) bool { return b == blocks+1 && a == 1 }, dally: 300 * time.Millisecond}},
		{"window lost DATA", fetchOpts{options: []string{"blksize", "1024", "windowsize", "8"}, dropData: first(13)}},
		{"window lost ACKs", fetchOpts{options: []string{"blksize", "1024", "windowsize", "8"}, dropACK: first(3)}},
		{"no options, lost DATA", fetchOpts{dropData: first(50)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.h.MetricValue(t, "dls_tftp_retransmits_total")
			errs := s.errorsOf(t, reasonTimeout)
			mustFetch(t, s.addr, "kernel", want, tc.o)
			s.h.WaitMetricValue(t, 0, "dls_tftp_active_transfers")
			if after := s.h.MetricValue(t, "dls_tftp_retransmits_total"); after <= before {
				t.Errorf("retransmits %v → %v: want more", before, after)
			}
			if got := s.errorsOf(t, reasonTimeout); got != errs {
				t.Errorf("timeout errors %v → %v", errs, got)
			}
		})
	}
}

// TestTimeout: a client that stops acknowledging is given up after the
// configured retries, with backoff, and counted.
func TestTimeout(t *testing.T) {
	s := startTFTP(t, map[string]any{"timeout": "20ms", "retries": 2})
	s.file(t, "f", 10000)
	start := time.Now()
	if _, err := fetch(t, s.addr, "f", fetchOpts{stopAfter: 3}); err != nil {
		t.Fatal(err)
	}
	s.h.WaitMetricValue(t, 1, "dls_tftp_errors_total", reasonTimeout)
	// 20ms, then 40ms, then 80ms: the third wait ends the transfer.
	if d := time.Since(start); d < 140*time.Millisecond {
		t.Errorf("gave up after %s: want backoff 20+40+80ms", d)
	}
	s.h.WaitMetricValue(t, 0, "dls_tftp_active_transfers")
}

// TestSinglePort sends everything from the listen port and keeps
// concurrent clients apart by address; the default gives each transfer
// a port of its own.
func TestSinglePort(t *testing.T) {
	for _, single := range []bool{true, false} {
		t.Run(fmt.Sprintf("single_port=%v", single), func(t *testing.T) {
			s := startTFTP(t, map[string]any{"single_port": single})
			want := s.file(t, "f", 100*1024)
			var wg sync.WaitGroup
			results := make([]fetchResult, 20)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					o := fetchOpts{options: []string{"blksize", "1468"}}
					if i%2 == 0 {
						o.options = append(o.options, "windowsize", "4")
					}
					results[i] = mustFetch(t, s.addr, "f", want, o)
				}()
			}
			wg.Wait()
			for _, r := range results {
				_, fromListen := r.from[s.addr]
				if len(r.from) != 1 || fromListen != single {
					t.Fatalf("packets came from %v (listen port %v)", r.from, s.addr)
				}
			}
		})
	}
}

// TestOptionsOnTheWire checks the OACK: what is granted, capped,
// switched off and echoed.
func TestOptionsOnTheWire(t *testing.T) {
	s := startTFTP(t, map[string]any{"max_windowsize": 4, "max_blksize": 1432})
	want := s.file(t, "f", 50000)
	res := mustFetch(t, s.addr, "f", want, fetchOpts{options: []string{
		"blksize", "1468", "tsize", "0", "timeout", "7", "windowsize", "16", "multicast", "",
	}})
	if fmt.Sprint(res.oack) != "map[blksize:1432 timeout:7 tsize:50000 windowsize:4]" {
		t.Errorf("OACK %v", res.oack)
	}
	if res.blocks != 50000/1432+1 {
		t.Errorf("%d DATA packets for 50000 bytes at 1432", res.blocks)
	}

	off := startTFTP(t, map[string]any{"tsize": false, "blksize_negotiation": false})
	want = off.file(t, "f", 5000)
	res = mustFetch(t, off.addr, "f", want, fetchOpts{options: []string{"blksize", "1468", "tsize", "0"}})
	if res.oack != nil || res.blocks != 10 {
		t.Errorf("OACK %v and %d blocks with tsize and blksize negotiation off: want no OACK, 512-byte blocks", res.oack, res.blocks)
	}
	res = mustFetch(t, off.addr, "f", want, fetchOpts{options: []string{"blksize", "1468", "timeout", "2"}})
	if fmt.Sprint(res.oack) != "map[timeout:2]" || res.blocks != 10 {
		t.Errorf("OACK %v, %d blocks", res.oack, res.blocks)
	}
}

// TestNetascii converts line ends on the way out (RFC 764).
func TestNetascii(t *testing.T) {
	s := startTFTP(t, nil)
	s.write(t, "menu.txt", []byte("line 1\nline 2\r\nbare\rend\n"))
	mustFetch(t, s.addr, "menu.txt", []byte("line 1\r\nline 2\r\x00\r\nbare\r\x00end\r\n"), fetchOpts{mode: "netascii", options: []string{"tsize", "0"}})
}

// TestDuplicateRequest: a client repeating its RRQ before the first
// answer gets one transfer, not two.
func TestDuplicateRequest(t *testing.T) {
	s := startTFTP(t, nil)
	want := s.file(t, "f", 3000)
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := rrq("f", "octet")
	for range 3 {
		if _, err := conn.WriteToUDPAddrPort(req, s.addr); err != nil {
			t.Fatal(err)
		}
	}
	// The server reads its listen socket in order: once a malformed
	// request sent after the three is refused, all three were seen before
	// the client's first ACK, as a retransmitting client's would be.
	fence, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer fence.Close()
	if _, err := fence.WriteToUDPAddrPort(rrq("no-mode"), s.addr); err != nil {
		t.Fatal(err)
	}
	_ = fence.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := fence.ReadFromUDPAddrPort(make([]byte, 600)); err != nil || n < 2 {
		t.Fatalf("malformed request not refused: %v", err)
	}
	var got []byte
	ports := map[netip.AddrPort]bool{}
	buf := make([]byte, 600)
	for block := uint16(1); ; {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		ports[from] = true
		if binary.BigEndian.Uint16(buf) != opDATA || binary.BigEndian.Uint16(buf[2:]) != block {
			continue
		}
		got = append(got, buf[4:n]...)
		_, _ = conn.WriteToUDPAddrPort([]byte{0, 4, byte(block >> 8), byte(block)}, from)
		if n < 516 {
			break
		}
		block++
	}
	if !bytes.Equal(got, want) || len(ports) != 1 {
		t.Fatalf("got %d bytes from %v", len(got), ports)
	}
	if n := s.h.MetricValue(t, "dls_tftp_requests_total"); n != 2 {
		t.Errorf("requests_total %v, want 2 (the transfer and the malformed one)", n)
	}
}

// TestMaxTransfers drops requests beyond max_transfers and counts them.
func TestMaxTransfers(t *testing.T) {
	s := startTFTP(t, map[string]any{"max_transfers": 1, "timeout": "100ms", "retries": 1})
	s.file(t, "f", 100000)
	// A client that acknowledged block 1, then went silent: it answered
	// once, so a new request does not end its transfer.
	if _, err := fetch(t, s.addr, "f", fetchOpts{stopAfter: 2}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort(rrq("f", "octet"), s.addr); err != nil {
		t.Fatal(err)
	}
	s.h.WaitMetricValue(t, 1, "dls_tftp_errors_total", reasonBusy)
	// Once the stalled transfer is given up, requests are served again.
	s.h.WaitMetricValue(t, 1, "dls_tftp_errors_total", reasonTimeout)
	mustFetch(t, s.addr, "f", func() []byte { b, _ := os.ReadFile(filepath.Join(s.root, "f")); return b }(), fetchOpts{})
}

// TestMetrics: every family is declared, and a transfer moves them.
func TestMetrics(t *testing.T) {
	s := startTFTP(t, nil)
	want := s.file(t, "f", 10000)
	mustFetch(t, s.addr, "f", want, fetchOpts{})
	s.h.WaitMetricValue(t, 1, "dls_tftp_requests_total")
	s.h.WaitMetricValue(t, 10000, "dls_tftp_sent_bytes_total")
	s.h.WaitMetricValue(t, 0, "dls_tftp_active_transfers")
	h, ok := s.h.MetricSample(t, "dls_tftp_transfer_duration_seconds")
	if !ok || h.Count != 1 {
		t.Errorf("duration histogram %+v", h)
	}
	for _, r := range reasons {
		if _, ok := s.h.MetricSample(t, "dls_tftp_errors_total", r); !ok {
			t.Errorf("no dls_tftp_errors_total{reason=%q} series", r)
		}
	}
}

// TestStopAbortsAtGrace: Stop lets transfers run until the grace period
// ends, then aborts them.
func TestStopAbortsAtGrace(t *testing.T) {
	s := startTFTP(t, map[string]any{"timeout": "2s"})
	s.file(t, "f", 100000)
	if _, err := fetch(t, s.addr, "f", fetchOpts{stopAfter: 1}); err != nil {
		t.Fatal(err)
	}
	s.h.WaitMetricValue(t, 1, "dls_tftp_active_transfers")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.h.Base.Stop(ctx, 200*time.Millisecond); err == nil {
		t.Error("Stop with a transfer aborted returned no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %s with a 200ms grace", d)
	}
	st, err := s.h.Protocol().Status(ctx)
	if err != nil || st.Serving {
		t.Errorf("status after stop: %+v, %v", st, err)
	}
	s.h.WaitMetricValue(t, 1, "dls_tftp_errors_total", reasonShutdown)
	// Start again on the same config (a reload).
	if err := s.h.Protocol().Start(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestConfigErrors: bad values are reported at their attribute.
func TestConfigErrors(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{
		"max_blksize": 4, "max_windowsize": 0, "timeout": "0s", "retries": 0,
		"max_transfers": 0, "scripts": "../mac", "root": "", "read_buffer": -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	want := "root scripts max_blksize max_windowsize timeout retries max_transfers read_buffer"
	if strings.Join(paths, " ") != want {
		t.Errorf("errors at %v, want %s", paths, want)
	}
	// The example block works with its defaults.
	errs, err = h.Configure(map[string]any{"listen": "127.0.0.1:6970", "root": "tftp"})
	if err != nil || len(errs) > 0 {
		t.Errorf("example config: %v %v", errs, err)
	}
}

// TestNetpollerWaits serves with every transfer waiting in the netpoller,
// as under a boot storm (link.go), losing packets and aborting at
// shutdown.
func TestNetpollerWaits(t *testing.T) {
	dir := t.TempDir()
	want := bytes.Repeat([]byte("0123456789abcdef"), 6400)
	if err := os.WriteFile(filepath.Join(dir, "f"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	set := testSettings()
	set.Listen, set.Timeout, set.threadWaits = "127.0.0.1:0", 50*time.Millisecond, -1
	m := NewMetrics(metrics.NewRegistry())
	s, err := Listen(t.Context(), set, ServerOptions{Root: dir, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().(*net.UDPAddr).AddrPort()
	lost := func(b int64, attempt int) bool { return b%9 == 0 && attempt == 1 }
	mustFetch(t, addr, "f", want, fetchOpts{options: []string{"blksize", "1024"}, dropData: lost})
	mustFetch(t, addr, "f", want, fetchOpts{options: []string{"blksize", "1024"}, dropACK: lost})
	mustFetch(t, addr, "f", want, fetchOpts{options: []string{"blksize", "1024", "windowsize", "8"}, dropData: lost})
	if _, err := fetch(t, addr, "f", fetchOpts{stopAfter: 1}); err != nil {
		t.Fatal(err)
	}
	for s.Active() == 0 {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err == nil {
		t.Error("shutdown with a stalled transfer: no error")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("shutdown took %s", d)
	}
}

// TestDualStack serves IPv4 and IPv6 clients from a wildcard listen
// address, each transfer from a socket of the client's family.
func TestDualStack(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	s := startTFTP(t, map[string]any{"listen": "[::]:0"})
	want := s.file(t, "f", 5000)
	port := s.addr.Port()
	res := mustFetch(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), "f", want, fetchOpts{})
	for from := range res.from {
		if !from.Addr().Is4() {
			t.Errorf("IPv4 client answered from %v", from)
		}
	}
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort(rrq("f", "octet"), netip.AddrPortFrom(netip.IPv6Loopback(), port)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 600)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil || n != 516 || binary.BigEndian.Uint16(buf) != opDATA || !from.Addr().Is6() {
		t.Fatalf("IPv6 client: %d bytes from %v, %v", n, from, err)
	}
}

// TestRootReplaced: the root is opened per request, so a folder replaced
// under the plugin is served at once; a missing one makes it unhealthy.
func TestRootReplaced(t *testing.T) {
	s := startTFTP(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.file(t, "f", 100)
	if err := s.h.Base.Health(ctx); err != nil {
		t.Fatalf("healthy plugin: %v", err)
	}
	if err := os.RemoveAll(s.root); err != nil {
		t.Fatal(err)
	}
	if err := s.h.Base.Health(ctx); err == nil {
		t.Error("root removed: still healthy")
	}
	res, err := fetch(t, s.addr, "f", fetchOpts{})
	if err != nil || res.errCode != 0 {
		t.Errorf("root removed: got %+v, %v; want error 0", res, err)
	}
	want := s.file(t, "f", 200) // a new folder at the same path
	mustFetch(t, s.addr, "f", want, fetchOpts{})
	if err := s.h.Base.Health(ctx); err != nil {
		t.Errorf("root back: %v", err)
	}
}
