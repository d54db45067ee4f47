package leasecommit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
)

// fakeLeases records each Commit's batch; a commit waits on gate when
// set, and answers fail when set.
type fakeLeases struct {
	mu      sync.Mutex
	batches [][]host.Lease
	gate    chan struct{}
	entered chan struct{}
	fail    error
	short   bool // answer one result too few
}

func (f *fakeLeases) Load(context.Context, string) ([]host.Lease, error) { return nil, nil }

func (f *fakeLeases) Commit(ctx context.Context, leases []host.Lease) ([]host.CommitResult, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	f.batches = append(f.batches, append([]host.Lease(nil), leases...))
	f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	res := make([]host.CommitResult, len(leases))
	for i, l := range leases {
		// An odd last digit is held by someone else: each job must get
		// its own lease's result.
		res[i] = host.CommitResult{OK: !strings.HasSuffix(l.Address, "1")}
		if !res[i].OK {
			res[i].Holder = "other"
		}
	}
	if f.short {
		res = res[1:]
	}
	return res, nil
}

func (f *fakeLeases) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n []int
	for _, b := range f.batches {
		n = append(n, len(b))
	}
	return n
}

type result struct {
	addr string
	res  host.CommitResult
	err  error
}

func job(addr string, out chan<- result) Job {
	return Job{Lease: host.Lease{Address: addr}, Done: func(res host.CommitResult, err error) {
		out <- result{addr, res, err}
	}}
}

func TestIdleLeaseCommittedAtOnceAndBusyOnesGrouped(t *testing.T) {
	f := &fakeLeases{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	reg := metrics.NewRegistry()
	c := New(t.Context(), f, Options{Max: 3, Metrics: NewMetrics(reg, "dls_test_lease_commit_duration_seconds", "dls_test_lease_commit_batch_size")})
	out := make(chan result, 10)
	if !c.Add(job("10.0.0.0", out)) {
		t.Fatal("Add refused")
	}
	<-f.entered // the first lease is being committed alone
	for i := 1; i <= 5; i++ {
		if !c.Add(job(fmt.Sprintf("10.0.0.%d", i), out)) {
			t.Fatal("Add refused")
		}
	}
	close(f.gate)
	got := map[string]result{}
	for range 6 {
		r := <-out
		got[r.addr] = r
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s := fmt.Sprint(f.sizes()); s != "[1 3 2]" {
		t.Errorf("batches %s, want [1 3 2] (idle: at once; then what queued, at most Max)", s)
	}
	for a, r := range got {
		want := !strings.HasSuffix(a, "1")
		if r.err != nil || r.res.OK != want {
			t.Errorf("%s: %+v, want OK %v", a, r, want)
		}
	}
	if c.Err() != nil {
		t.Errorf("Err = %v after good batches", c.Err())
	}
	fams, err := reg.Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.Name)
	}
	if s := strings.Join(names, " "); !strings.Contains(s, "dls_test_lease_commit_duration_seconds") || !strings.Contains(s, "dls_test_lease_commit_batch_size") {
		t.Errorf("families %s", s)
	}
}

func TestGatherWaitsForABurst(t *testing.T) {
	f := &fakeLeases{}
	c := New(t.Context(), f, Options{Max: 100, Gather: 200 * time.Millisecond})
	out := make(chan result, 10)
	for i := range 4 {
		c.Add(job(fmt.Sprintf("10.0.0.%d", 2*i), out))
	}
	for range 4 {
		<-out
	}
	if s := fmt.Sprint(f.sizes()); s != "[4]" {
		t.Errorf("batches %s, want one of 4", s)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestBatchErrorReachesEveryJobAndErr(t *testing.T) {
	boom := errors.New("disk full")
	f := &fakeLeases{fail: boom}
	c := New(t.Context(), f, Options{Max: 8})
	out := make(chan result, 1)
	c.Add(job("10.0.0.2", out))
	if r := <-out; !errors.Is(r.err, boom) {
		t.Errorf("job got %v, want %v", r.err, boom)
	}
	if err := c.Err(); !errors.Is(err, boom) || !strings.Contains(err.Error(), "commit 1 leases") {
		t.Errorf("Err = %v", err)
	}
	f.mu.Lock()
	f.fail = nil
	f.mu.Unlock()
	c.Add(job("10.0.0.4", out))
	if r := <-out; r.err != nil {
		t.Errorf("second batch: %v", r.err)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err = %v after a good batch", err)
	}
	_ = c.Close(t.Context())
}

func TestWrongResultCountIsAnError(t *testing.T) {
	c := New(t.Context(), &fakeLeases{short: true}, Options{Max: 8})
	out := make(chan result, 1)
	c.Add(job("10.0.0.2", out))
	if r := <-out; r.err == nil || !strings.Contains(r.err.Error(), "0 results for 1 leases") {
		t.Errorf("got %v", r.err)
	}
	_ = c.Close(t.Context())
}

func TestNoLeaseService(t *testing.T) {
	c := New(t.Context(), nil, Options{Max: 8})
	out := make(chan result, 1)
	c.Add(job("10.0.0.2", out))
	if r := <-out; r.err == nil || !strings.Contains(r.err.Error(), "no lease service") {
		t.Errorf("got %v", r.err)
	}
	_ = c.Close(t.Context())
}

func TestCloseStoresWhatIsQueuedThenRefuses(t *testing.T) {
	f := &fakeLeases{gate: make(chan struct{}), entered: make(chan struct{}, 100)}
	c := New(t.Context(), f, Options{Max: 1000})
	out := make(chan result, 100)
	c.Add(job("10.0.0.0", out))
	<-f.entered
	for i := 1; i < 50; i++ {
		c.Add(Job{Lease: host.Lease{Address: fmt.Sprint(i)}}) // nil Done
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	if err := c.Close(ctx); err == nil {
		t.Error("Close returned before the stuck batch was stored")
	}
	cancel()
	if c.Add(job("late", out)) {
		t.Error("Add accepted after Close")
	}
	close(f.gate)
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range f.sizes() {
		n += s
	}
	if n != 50 {
		t.Errorf("stored %d leases, want 50", n)
	}
}

func TestFullQueueRefuses(t *testing.T) {
	f := &fakeLeases{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	c := New(t.Context(), f, Options{Max: 1})
	c.Add(Job{})
	<-f.entered
	for range queueSize {
		if !c.Add(Job{}) {
			t.Fatal("Add refused before the queue was full")
		}
	}
	if c.Add(Job{}) {
		t.Error("Add accepted past the queue's size")
	}
	f.entered = nil
	close(f.gate)
	if err := c.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}
