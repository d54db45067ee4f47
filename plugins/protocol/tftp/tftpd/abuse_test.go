package tftpd

import (
	"bytes"
	"fmt"
	"github.com/dls-project/dls/sdk/plugintest"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAbuseTFTPFlood: while a machine fetches its boot file again and
// again, the server gets read requests for that file that are never
// acknowledged (1,000 source ports of one address, then 1,000 addresses),
// plus malformed requests, requests for missing files and write requests.
// One address is held to max_transfers_per_client; the requests of many
// addresses make the oldest silent transfers give way at max_transfers.
// The machine's every fetch completes, every refusal is counted, and the
// heap stays small.
func TestAbuseTFTPFlood(t *testing.T) {
	const maxTransfers, perClient = 100, 8
	s := startTFTP(t, map[string]any{"max_transfers": maxTransfers, "max_transfers_per_client": perClient})
	want := s.file(t, "boot.bin", 1<<20)

	var mu sync.Mutex
	var socks []*net.UDPConn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range socks {
			c.Close()
		}
	}()
	// from sends b from a new port of addr, kept open (a closed port
	// would end the transfer at the first DATA, with an ICMP error).
	from := func(addr string, b []byte) bool {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
		if err != nil {
			t.Errorf("attacker socket on %s: %v", addr, err)
			return false
		}
		mu.Lock()
		socks = append(socks, c)
		mu.Unlock()
		_, err = c.WriteToUDPAddrPort(b, s.addr)
		return err == nil
	}
	big := rrq("boot.bin", "octet", "blksize", "65464")
	var sent [4]atomic.Int64 // one address, many addresses, bad requests, missing files + writes
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // 1,000 ports of 127.0.0.2
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			if from("127.0.0.2", big) {
				sent[0].Add(1)
			}
			if i%4 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	go func() { // 1,000 addresses
		defer wg.Done()
		for i := 0; i < 1000; i++ {
			if from(fmt.Sprintf("127.0.%d.%d", 10+i/250, 1+i%250), big) {
				sent[1].Add(1)
			}
			if i%4 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	go func() { // garbage, missing files, writes, from one socket
		defer wg.Done()
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		for i := 0; i < 1000; i++ {
			pkts := [][]byte{
				{0, 1, 'x'}, // no NUL: malformed
				rrq("boot.bin", "mail"),
				rrq(fmt.Sprintf("missing-%d", i), "octet"),
				append([]byte{0, 2}, rrq(fmt.Sprintf("upload-%d", i), "octet")[2:]...),
			}
			for k, p := range pkts {
				if _, err := c.WriteToUDPAddrPort(p, s.addr); err == nil {
					sent[2+k/2].Add(1)
				}
			}
			if i%4 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	attackDone := make(chan struct{})
	go func() { wg.Wait(); close(attackDone) }()

	var heapPeak uint64
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapPeak = max(heapPeak, ms.HeapInuse)
	}
	fetches, retries := 0, 0
	for attacking := true; attacking || fetches < 3; fetches++ {
		select {
		case <-attackDone:
			attacking = false
		default:
		}
		var err error
		var res fetchResult
		for try := 0; try < 3; try++ { // a client asks again when unanswered
			if res, err = fetch(t, s.addr, "boot.bin", fetchOpts{options: []string{"blksize", "1468"}}); err == nil {
				break
			}
			retries++
		}
		if err != nil || res.errCode >= 0 || !bytes.Equal(res.data, want) {
			t.Fatalf("fetch %d during the flood: %v (error %d %q, %d of %d bytes)", fetches, err, res.errCode, res.errMsg, len(res.data), len(want))
		}
		sample()
	}

	// Every request is answered or counted: the one address's beyond its
	// share, the many addresses' silent transfers that gave way, the bad,
	// the missing and the writes.
	errs := func(r string) float64 { return s.errorsOf(t, r) }
	if v := errs(reasonClientBusy); v < float64(sent[0].Load())/2 {
		t.Errorf("client_busy %v, want most of the %d requests of one address", v, sent[0].Load())
	}
	if v := errs(reasonEvicted); v < float64(sent[1].Load()-maxTransfers)/2 {
		t.Errorf("evicted %v, want most of the %d requests of many addresses past %d", v, sent[1].Load(), maxTransfers)
	}
	for _, c := range []struct {
		reason string
		sent   int64
	}{{reasonBadRequest, sent[2].Load()}, {reasonNotFound, sent[3].Load() / 2}, {reasonWriteRefused, sent[3].Load() / 2}} {
		// The counters of the listen loop; nearly all reach it on
		// loopback (its receive buffer is 4 MiB).
		if v := errs(c.reason); v < float64(c.sent)*0.9 {
			t.Errorf("%s %v, want about %d", c.reason, v, c.sent)
		}
	}
	if heapPeak > 128<<20 {
		t.Errorf("peak heap in use %d MiB under the flood, want it bounded by max_transfers (< 128 MiB)", heapPeak>>20)
	}
	t.Logf("flood: %d+%d unacknowledged requests, %d bad, %d missing/write; counted client_busy %v, evicted %v, busy %v, bad_request %v, not_found %v, write_refused %v; %d fetches of 1 MiB completed (%d retried); peak heap in use %.1f MiB, VmHWM %d KiB (server and attackers in the test process)",
		sent[0].Load(), sent[1].Load(), sent[2].Load(), sent[3].Load(), errs(reasonClientBusy), errs(reasonEvicted), errs(reasonBusy),
		errs(reasonBadRequest), errs(reasonNotFound), errs(reasonWriteRefused), fetches, retries, float64(heapPeak)/(1<<20), plugintest.PeakRSSKiB(os.Getpid()))
}
