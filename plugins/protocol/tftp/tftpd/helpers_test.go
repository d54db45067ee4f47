package tftpd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/plugintest"
)

// served is a plugin under test, serving root on addr.
type served struct {
	h    *plugintest.Harness
	addr netip.AddrPort
	root string
}

// startTFTP serves a fresh root (filled by the caller) through the real
// plugin path: plugintest's gRPC harness, then Protocol Start.
func startTFTP(t *testing.T, cfg map[string]any, opts ...plugintest.Option) *served {
	t.Helper()
	root := t.TempDir()
	full := map[string]any{"listen": "127.0.0.1:0", "root": root, "timeout": "200ms"}
	for k, v := range cfg {
		full[k] = v
	}
	h := plugintest.Start(t, New(), append(opts, plugintest.WithConfig(full))...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Protocol().Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := h.Protocol().Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Serving || len(st.Listeners) != 1 || !strings.HasPrefix(st.Listeners[0], "udp ") {
		t.Fatalf("status %+v: want one udp listener", st)
	}
	addr, err := netip.ParseAddrPort(strings.TrimPrefix(st.Listeners[0], "udp "))
	if err != nil {
		t.Fatal(err)
	}
	return &served{h: h, addr: addr, root: root}
}

// file writes a file of size pseudo-random bytes under root.
func (s *served) file(t *testing.T, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	s.write(t, name, data)
	return data
}

func (s *served) write(t *testing.T, name string, data []byte) {
	t.Helper()
	path := filepath.Join(s.root, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// errorsOf returns dls_tftp_errors_total{reason}.
func (s *served) errorsOf(t *testing.T, reason string) float64 {
	t.Helper()
	return s.h.MetricValue(t, "dls_tftp_errors_total", reason)
}

// fetchOpts shape what the test client does.
type fetchOpts struct {
	mode    string   // default octet
	options []string // option name, value pairs
	// dropData ignores the attempt-th arrival (from 1) of a DATA block, as
	// if the network lost it; dropACK does not send the attempt-th ACK of
	// a block.
	dropData func(block int64, attempt int) bool
	dropACK  func(block int64, attempt int) bool
	// stopAfter returns once this block arrived, acknowledging nothing more.
	stopAfter int64
	// dally keeps answering after the last block, as RFC 1350 asks.
	dally time.Duration
	// raw is sent instead of a request built from the fields above.
	raw []byte
}

// fetchResult is what the test client saw.
type fetchResult struct {
	data    []byte
	oack    map[string]string
	from    map[netip.AddrPort]int // packets by source address
	errCode int                    // the server's ERROR code, -1 for none
	errMsg  string
	blocks  int // DATA packets received
}

var errNoReply = errors.New("no reply from the server")

// fetch is a small TFTP client with hooks for losing packets. It follows
// RFC 1350 as a receiver (every DATA acknowledged, a duplicate too) and
// RFC 7440 when a windowsize is accepted (one ACK per window, an ACK of
// the last block in order when one is missing).
func fetch(t *testing.T, server netip.AddrPort, name string, o fetchOpts) (fetchResult, error) {
	t.Helper()
	local := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}
	if server.Addr().Is6() && !server.Addr().Is4In6() {
		local = &net.UDPAddr{IP: net.IPv6loopback}
	}
	conn, err := net.ListenUDP("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	if o.stopAfter > 0 {
		// A client that went silent, not one whose port is closed (that
		// is an ICMP error, which ends the transfer at once).
		t.Cleanup(func() { conn.Close() })
	} else {
		defer conn.Close()
	}
	res := fetchResult{errCode: -1, from: map[netip.AddrPort]int{}}
	pkt := o.raw
	if pkt == nil {
		if o.mode == "" {
			o.mode = modeOctet
		}
		pkt = rrq(append([]string{name, o.mode}, o.options...)...)
	}
	if _, err := conn.WriteToUDPAddrPort(pkt, server); err != nil {
		t.Fatal(err)
	}
	var (
		peer       netip.AddrPort
		blksize    = DefaultBlksize
		window     = 1
		expect     = int64(1)
		inWindow   int
		dataSeen   = map[int64]int{}
		ackSent    = map[int64]int{}
		buf        = make([]byte, 70000)
		doneAt     time.Time
		readPeriod = 5 * time.Second
	)
	ack := func(block int64) {
		ackSent[block]++
		if o.dropACK != nil && o.dropACK(block, ackSent[block]) {
			return
		}
		b := binary.BigEndian.AppendUint16(nil, opACK)
		b = binary.BigEndian.AppendUint16(b, uint16(block))
		_, _ = conn.WriteToUDPAddrPort(b, peer)
	}
	for {
		if !doneAt.IsZero() {
			readPeriod = time.Until(doneAt.Add(o.dally))
			if readPeriod <= 0 {
				return res, nil
			}
		}
		_ = conn.SetReadDeadline(time.Now().Add(readPeriod))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !doneAt.IsZero() {
				return res, nil
			}
			return res, errNoReply
		}
		res.from[from]++
		if !peer.IsValid() {
			peer = from
		}
		if n < 4 {
			t.Fatalf("short packet from the server: % x", buf[:n])
		}
		switch binary.BigEndian.Uint16(buf) {
		case opERROR:
			res.errCode = int(binary.BigEndian.Uint16(buf[2:]))
			res.errMsg = strings.TrimRight(string(buf[4:n]), "\x00")
			return res, nil
		case opOACK:
			fields := strings.Split(strings.TrimSuffix(string(buf[2:n]), "\x00"), "\x00")
			res.oack = map[string]string{}
			for i := 0; i+1 < len(fields); i += 2 {
				res.oack[fields[i]] = fields[i+1]
			}
			if v, ok := res.oack["blksize"]; ok {
				blksize, _ = strconv.Atoi(v)
			}
			if v, ok := res.oack["windowsize"]; ok {
				window, _ = strconv.Atoi(v)
			}
			ack(0)
		case opDATA:
			block := binary.BigEndian.Uint16(buf[2:])
			if block != uint16(expect) {
				// A duplicate (our ACK was lost) or a block past a lost one.
				ack(expect - 1)
				inWindow = 0
				continue
			}
			dataSeen[expect]++
			if o.dropData != nil && o.dropData(expect, dataSeen[expect]) {
				continue
			}
			res.blocks++
			res.data = append(res.data, buf[4:n]...)
			if o.stopAfter > 0 && expect == o.stopAfter {
				return res, nil
			}
			last := n-4 < blksize
			inWindow++
			if last || inWindow == window {
				ack(expect)
				inWindow = 0
			}
			expect++
			if last && doneAt.IsZero() {
				doneAt = time.Now()
				if o.dally == 0 {
					return res, nil
				}
			}
		default:
			t.Fatalf("unexpected packet from the server: % x", buf[:n])
		}
	}
}

// mustFetch fetches name and fails unless the data is want.
func mustFetch(t *testing.T, server netip.AddrPort, name string, want []byte, o fetchOpts) fetchResult {
	t.Helper()
	res, err := fetch(t, server, name, o)
	if err != nil {
		t.Fatalf("fetch %s: %v", name, err)
	}
	if res.errCode >= 0 {
		t.Fatalf("fetch %s: error %d %q", name, res.errCode, res.errMsg)
	}
	if !bytes.Equal(res.data, want) {
		t.Fatalf("fetch %s: got %d bytes, want %d (identical)", name, len(res.data), len(want))
	}
	return res
}
