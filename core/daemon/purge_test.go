package daemon

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPurgeRequest(t *testing.T) {
	now := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	got := purgeRequest(now, 90*24*time.Hour)
	want := store.PurgeRequest{
		SessionsBefore: time.Date(2026, 8, 28, 4, 0, 0, 0, time.UTC),
		TokensBefore:   time.Date(2026, 11, 19, 4, 0, 0, 0, time.UTC),
	}
	if got != want {
		t.Errorf("purgeRequest(90 days) = %+v, want %+v", got, want)
	}
	// session_history = "0": sessions are kept forever, tokens still go.
	if got := purgeRequest(now, 0); !got.SessionsBefore.IsZero() || !got.TokensBefore.Equal(want.TokensBefore) {
		t.Errorf("purgeRequest(0) = %+v, want no SessionsBefore and TokensBefore %v", got, want.TokensBefore)
	}
}

// fakePurger records the purges asked of it and answers with res and err.
type fakePurger struct {
	mu   sync.Mutex
	reqs []store.PurgeRequest
	res  store.PurgeResult
	err  error
}

func (f *fakePurger) Purge(_ context.Context, p store.PurgeRequest) (store.PurgeResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, p)
	return f.res, f.err
}

func (f *fakePurger) set(res store.PurgeResult, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res, f.err = res, err
}

func (f *fakePurger) requests() []store.PurgeRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.PurgeRequest(nil), f.reqs...)
}

// lockedBuffer is a log output the test reads while the purger writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns what was logged since the last take.
func (b *lockedBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}

// TestPurgerRuns runs the purge loop on synctest's fake clock: the first
// purge a minute after the start, then one an hour, each with the session
// history of the moment, counted, logged when it deleted something, and
// none once stopped.
func TestPurgerRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakePurger{}
		var (
			mu      sync.Mutex
			history = 90 * 24 * time.Hour
		)
		reg := prometheus.NewPedanticRegistry()
		logs := &lockedBuffer{}
		p, err := newPurger(fake, func() time.Duration { mu.Lock(); defer mu.Unlock(); return history }, reg,
			hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}))
		if err != nil {
			t.Fatal(err)
		}
		if n, err := testutil.GatherAndCount(reg, "dls_store_purged_total"); err != nil || n != 2 {
			t.Errorf("dls_store_purged_total has %d series (%v), want sessions and tokens from the start", n, err)
		}

		started := time.Now()
		fake.set(store.PurgeResult{Sessions: 3, Tokens: 2}, nil)
		stop := p.start(t.Context())
		time.Sleep(purgeFirst - time.Second)
		synctest.Wait()
		if reqs := fake.requests(); len(reqs) != 0 {
			t.Fatalf("purged %d times before purgeFirst", len(reqs))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		reqs := fake.requests()
		if want := purgeRequest(started.Add(purgeFirst), history); len(reqs) != 1 || reqs[0] != want {
			t.Fatalf("first purge: %+v, want [%+v]", reqs, want)
		}
		if testutil.ToFloat64(p.sessions) != 3 || testutil.ToFloat64(p.tokens) != 2 {
			t.Errorf("counted %v sessions and %v tokens, want 3 and 2", testutil.ToFloat64(p.sessions), testutil.ToFloat64(p.tokens))
		}
		if l := logs.take(); !strings.Contains(l, "[INFO]  state store purged: sessions=3") || !strings.Contains(l, "tokens=2") {
			t.Errorf("first purge logged %q", l)
		}

		// A reload changed the history; this purge deletes nothing, and
		// says nothing.
		mu.Lock()
		history = 0
		mu.Unlock()
		fake.set(store.PurgeResult{}, nil)
		time.Sleep(purgeEvery)
		synctest.Wait()
		reqs = fake.requests()
		if want := purgeRequest(started.Add(purgeFirst+purgeEvery), 0); len(reqs) != 2 || reqs[1] != want {
			t.Fatalf("second purge: %+v, want %+v", reqs, want)
		}
		if l := logs.take(); l != "" {
			t.Errorf("a purge that deleted nothing logged %q", l)
		}

		// A failure is logged; what was deleted before it is counted.
		fake.set(store.PurgeResult{Sessions: 1}, errors.New("purge sessions: disk I/O error"))
		time.Sleep(purgeEvery)
		synctest.Wait()
		if testutil.ToFloat64(p.sessions) != 4 {
			t.Errorf("sessions counted after a failed purge: %v, want 4", testutil.ToFloat64(p.sessions))
		}
		if l := logs.take(); !strings.Contains(l, "[ERROR] state store purge failed") || !strings.Contains(l, "disk I/O error") {
			t.Errorf("failed purge logged %q", l)
		}

		stop()
		time.Sleep(10 * purgeEvery)
		synctest.Wait()
		if n := len(fake.requests()); n != 3 {
			t.Errorf("%d purges, want 3: the purger went on after stop", n)
		}
	})
}

// TestPurgerStopsWithContext: the loop ends when the daemon's context
// does, without waiting for the next purge.
func TestPurgerStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakePurger{}
		p, err := newPurger(fake, func() time.Duration { return 0 }, prometheus.NewRegistry(), hclog.NewNullLogger())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		stop := p.start(ctx)
		cancel()
		synctest.Wait() // the loop has returned: stop must not block
		stop()
		if n := len(fake.requests()); n != 0 {
			t.Errorf("%d purges after the context ended before the first", n)
		}
	})
}
