package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// loginFrom posts a login as user from source (host:port) and returns the
// status; safe from any goroutine.
func (e *env) loginFrom(source, user, password string) int {
	b, _ := json.Marshal(map[string]string{"username": user, "password": password})
	r := httptest.NewRequest("POST", Prefix+"/auth/login", bytes.NewReader(b))
	r.RemoteAddr = source
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w.Code
}

// heapPeak samples the heap in use until stop is closed; the API runs in
// the test's process, so its memory is this process's heap.
func heapPeak(stop <-chan struct{}) <-chan uint64 {
	out := make(chan uint64, 1)
	go func() {
		var peak uint64
		var ms runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				out <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// TestAbuseAPILoginBruteForce: one address hammers alice's password, and
// 400 others guess it a few times each, while alice logs in from the
// workstation she used before. Alice is never refused; the attackers are
// refused before any authenticator runs once over their limits, and every
// refusal is counted.
func TestAbuseAPILoginBruteForce(t *testing.T) {
	e := newEnv(t)
	const workstation = "192.0.2.10:40000"
	if code := e.loginFrom(workstation, "alice", "alice-pw"); code != http.StatusOK {
		t.Fatalf("alice before the attack: %d", code)
	}
	callsBefore := e.auth.calls.Load()

	stop := make(chan struct{})
	peak := heapPeak(stop)
	var attempts, limited atomic.Int64
	guess := func(source string, i int) {
		code := e.loginFrom(source, "alice", fmt.Sprintf("guess-%d", i))
		attempts.Add(1)
		switch code {
		case http.StatusTooManyRequests:
			limited.Add(1)
		case http.StatusUnauthorized:
		default:
			t.Errorf("guess from %s: status %d", source, code)
		}
	}
	var wg sync.WaitGroup
	for w := range 8 { // one address, many connections
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 250 {
				guess("203.0.113.5:5000", w*1000+i)
			}
		}()
	}
	for w := range 8 { // a botnet: 400 addresses, 5 guesses each
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range 50 {
				src := fmt.Sprintf("198.18.%d.%d:6000", w, n)
				for i := range 5 {
					guess(src, i)
				}
			}
		}()
	}
	attackDone := make(chan struct{})
	go func() { wg.Wait(); close(attackDone) }()

	// Alice keeps logging in from her workstation during the attack.
	var aliceOK, aliceTries int
	for done := false; !done; {
		select {
		case <-attackDone:
			done = true
		default:
		}
		aliceTries++
		if code := e.loginFrom(workstation, "alice", "alice-pw"); code == http.StatusOK {
			aliceOK++
		} else {
			t.Errorf("alice refused during the attack (try %d, after %d guesses): %d", aliceTries, attempts.Load(), code)
		}
	}
	close(stop)
	heap := <-peak

	// The account-wide limit holds for addresses alice never used: the
	// botnet's next guess, and even the right password from a new one.
	if code := e.loginFrom("198.51.100.99:1", "alice", "alice-pw"); code != http.StatusTooManyRequests {
		t.Errorf("alice from a new address after %d botnet guesses: %d, want 429", attempts.Load(), code)
	}
	// Other accounts are untouched.
	if code := e.loginFrom("198.51.100.99:1", "oscar", "oscar-pw"); code != http.StatusOK {
		t.Errorf("oscar during alice's attack: %d", code)
	}

	total := attempts.Load()
	verified := e.auth.calls.Load() - callsBefore - int64(aliceTries) - 1 // oscar
	bad := e.failures("bad_credentials")
	switch {
	case total != 8*250+400*5:
		t.Fatalf("%d guesses made", total)
	case float64(verified) != bad:
		t.Errorf("%d guesses reached the authenticator, %v counted bad_credentials", verified, bad)
	case verified > 100:
		// The account limit (100 per 15 minutes) bounds the guesses
		// checked, from however many addresses.
		t.Errorf("%d guesses reached the authenticator, want at most 100", verified)
	case e.failures("rate_limited") != float64(limited.Load()+1):
		t.Errorf("rate_limited counted %v, refused %d", e.failures("rate_limited"), limited.Load()+1)
	case limited.Load()+verified != total:
		t.Errorf("%d guesses: %d refused, %d checked", total, limited.Load(), verified)
	}
	t.Logf("%d guesses: %d checked (bad_credentials), %d refused (rate_limited); alice logged in %d/%d times during the attack; peak heap in use %.1f MiB (API in the test process)",
		total, verified, limited.Load(), aliceOK, aliceTries, float64(heap)/(1<<20))
}
