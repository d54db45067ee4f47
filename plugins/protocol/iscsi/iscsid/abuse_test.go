package iscsid

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/iscsi/initiator"
	"github.com/dls-project/dls/sdk/plugintest"
)

// openFDs is the number of file descriptors this process has open.
func openFDs() int {
	fds, _ := os.ReadDir("/proc/self/fd")
	return len(fds)
}

// TestAbuseISCSIHalfOpen: 3,000 connections to the portal that never log
// in (half send nothing, half half a login PDU), held open, while a client
// logs in again and again and writes and reads its disk. With
// max_login_connections = 128 the target keeps at most 128 of them (the
// oldest idle closed first, counted as login_evicted), so its file
// descriptors stay bounded, well before login_timeout would end them;
// the client is served throughout.
func TestAbuseISCSIHalfOpen(t *testing.T) {
	const attackers, maxLogin = 3000, 128
	pc1 := &client{name: "pc-01", mac: "52:54:00:00:00:01"}
	e := startTarget(t, map[string]any{"max_login_connections": maxLogin}, pc1)
	fdsBefore := openFDs()

	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()
	// Half a login request's header: opcode 0x43, then nothing more.
	half := append([]byte{0x43, 0x87}, make([]byte, 22)...)
	var dialed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dialed.Add(1) <= attackers {
				c, err := net.Dial("tcp", e.addr)
				if err != nil {
					t.Errorf("attacker dial: %v", err)
					return
				}
				if dialed.Load()%2 == 0 {
					_, _ = c.Write(half)
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
				time.Sleep(time.Millisecond) // ~8,000 connections a second
			}
		}()
	}
	attackDone := make(chan struct{})
	go func() { wg.Wait(); close(attackDone) }()

	var heapPeak uint64
	var fdPeak int
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heapPeak = max(heapPeak, ms.HeapInuse)
		fdPeak = max(fdPeak, openFDs())
	}

	// The legitimate machine logs in, writes, reads back, logs out,
	// during the whole attack and a little after.
	ctx := context.Background()
	data := randomBytes(64 << 10)
	rounds, retries := 0, 0
	for attacking := true; attacking || rounds < 3; rounds++ {
		select {
		case <-attackDone:
			attacking = false
		default:
		}
		var s *initiator.Session
		var err error
		for try := 0; try < 3; try++ { // an initiator retries a failed login
			if s, err = e.dial(t, pc1); err == nil {
				break
			}
			retries++
		}
		if err != nil {
			t.Fatalf("round %d (%d attack connections): login: %v", rounds, dialed.Load(), err)
		}
		lba := uint64(rounds%64) * 128
		if err := s.Write(ctx, lba, data, 512, true); err != nil {
			t.Fatalf("round %d: write: %v", rounds, err)
		}
		got := make([]byte, len(data))
		if err := s.Read(ctx, lba, got, 512); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round %d: read back: %v (equal %v)", rounds, err, bytes.Equal(got, data))
		}
		if err := s.Logout(ctx); err != nil {
			t.Fatalf("round %d: logout: %v", rounds, err)
		}
		s.Close()
		sample()
	}
	if t.Failed() {
		return
	}

	// Every attack connection beyond the cap was closed by the target.
	evicted := 0.0
	waitFor(t, func() bool {
		evicted = e.h.MetricValue(t, "dls_iscsi_errors_total", "login_evicted")
		return evicted >= attackers-maxLogin
	}, fmt.Sprintf("login_evicted >= %d", attackers-maxLogin))
	sample()
	// The test's own ends of the 3,000 connections are open; the
	// target's are at most the cap.
	if limit := fdsBefore + attackers + maxLogin + 32; fdPeak > limit {
		t.Errorf("%d file descriptors open at peak, want at most %d (%d before, %d attack connections held, cap %d)",
			fdPeak, limit, fdsBefore, attackers, maxLogin)
	}
	t.Logf("%d idle and half-open connections: %v evicted (login_evicted); %d logins with I/O during the attack (%d retried); peak fds %d (%d before); peak heap in use %.1f MiB, VmHWM %d KiB (target and attacker in the test process)",
		attackers, evicted, rounds, retries, fdPeak, fdsBefore, float64(heapPeak)/(1<<20), plugintest.PeakRSSKiB(os.Getpid()))
}
