package host

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeEvents records the batches Report receives. Report fails while fail
// is set, and runs hook (if set) first, on the batcher's goroutine.
type fakeEvents struct {
	mu      sync.Mutex
	batches [][]Event
	calls   int
	fail    bool
	hook    func()
}

func (f *fakeEvents) Report(_ context.Context, events []Event) error {
	f.mu.Lock()
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail {
		return errors.New("host unreachable")
	}
	f.batches = append(f.batches, slices.Clone(events))
	return nil
}

func (f *fakeEvents) setFail(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = v
}

func (f *fakeEvents) setHook(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook = fn
}

// received returns the MACs of every event received, in order, and the
// number of batches.
func (f *fakeEvents) received() ([]string, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var macs []string
	for _, b := range f.batches {
		for _, e := range b {
			macs = append(macs, e.MAC)
		}
	}
	return macs, len(f.batches)
}

func ev(i int) Event { return Event{Type: EventDHCPDiscover, MAC: fmt.Sprintf("m%d", i)} }

func macs(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("m%d", i))
	}
	return out
}

func closeBatcher(t *testing.T, b *Batcher) {
	t.Helper()
	if err := b.Close(context.Background()); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestBatcherFlushesEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{}
		b := NewBatcher(t.Context(), f, time.Second, 100, 1000)
		defer closeBatcher(t, b)

		b.Emit(ev(0))
		b.Emit(ev(1))
		synctest.Wait()
		if got, _ := f.received(); len(got) != 0 {
			t.Fatalf("received %v before the interval passed with 2 of 100 events waiting", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got, n := f.received()
		if !slices.Equal(got, macs(0, 2)) || n != 1 {
			t.Fatalf("after one interval: %d batches with %v, want 1 batch with %v", n, got, macs(0, 2))
		}
		// Nothing waiting: no empty Report.
		time.Sleep(3 * time.Second)
		synctest.Wait()
		f.mu.Lock()
		calls := f.calls
		f.mu.Unlock()
		if calls != 1 {
			t.Errorf("%d Report calls, want 1 (no calls for empty buffers)", calls)
		}
	})
}

// NewBatcher's contract: the batcher runs until Close, not until the
// context it was created with ends (a plugin creates it in Start, whose
// context ends when Start returns).
func TestBatcherOutlivesItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{}
		ctx, cancel := context.WithCancel(t.Context())
		b := NewBatcher(ctx, f, time.Second, 100, 1000)
		defer closeBatcher(t, b)
		cancel()

		b.Emit(ev(0))
		time.Sleep(time.Second)
		synctest.Wait()
		if got, n := f.received(); !slices.Equal(got, macs(0, 1)) || n != 1 {
			t.Fatalf("after one interval with the creating context ended: %d batches with %v, want 1 batch with %v", n, got, macs(0, 1))
		}
	})
}

func TestBatcherSendsBurstInBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{}
		b := NewBatcher(t.Context(), f, time.Second, 1000, 10000)
		for i := range 600 {
			b.Emit(ev(i))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got, n := f.received()
		if !slices.Equal(got, macs(0, 600)) {
			t.Fatalf("received %d events, want the 600 emitted, in order", len(got))
		}
		if n > 3 {
			t.Errorf("600 events emitted at once arrived in %d Reports, want a few batches", n)
		}
		closeBatcher(t, b)
	})
}

// NewBatcher's contract: it flushes "as soon as batch events are waiting",
// not only at the next tick.
func TestBatcherFlushesWhenBatchIsFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{}
		b := NewBatcher(t.Context(), f, time.Minute, 10, 1000)
		defer closeBatcher(t, b)
		b.Emit(ev(0))
		synctest.Wait() // the batcher has seen the first event
		for i := 1; i < 10; i++ {
			b.Emit(ev(i))
		}
		synctest.Wait() // no time passes: only a full batch can cause a flush
		if got, _ := f.received(); !slices.Equal(got, macs(0, 10)) {
			t.Errorf("with a full batch of 10 waiting, received %v without time passing, want %v", got, macs(0, 10))
		}
	})
}

func TestBatcherEmitNeverBlocksAndCountsDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{}
		release := make(chan struct{})
		entered := make(chan struct{}, 1)
		f.setHook(func() {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		})
		b := NewBatcher(t.Context(), f, time.Second, 1, 4)
		b.Emit(ev(0))
		<-entered // the batcher is stuck in Report with m0

		for i := 1; i < 15; i++ {
			b.Emit(ev(i)) // returns at once though the host does not answer
		}
		if d := b.Dropped(); d != 10 {
			t.Errorf("Dropped() = %d, want 10 (buffer of 4 full, 10 more emitted)", d)
		}
		f.setHook(nil)
		close(release)
		closeBatcher(t, b)
		if got, _ := f.received(); !slices.Equal(got, macs(0, 5)) {
			t.Errorf("received %v, want %v", got, macs(0, 5))
		}
	})
}

func TestBatcherKeepsEventsWhenReportFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{fail: true}
		b := NewBatcher(t.Context(), f, time.Second, 1, 5)
		for i := range 3 {
			b.Emit(ev(i))
		}
		synctest.Wait()
		time.Sleep(time.Second) // at least one failed flush
		synctest.Wait()
		f.mu.Lock()
		calls := f.calls
		f.mu.Unlock()
		if calls == 0 {
			t.Fatal("no Report attempted")
		}
		if d := b.Dropped(); d != 0 {
			t.Fatalf("Dropped() = %d after a failed Report with room to keep everything, want 0", d)
		}
		// The kept events count against the limit.
		for i := 3; i < 7; i++ {
			b.Emit(ev(i))
		}
		if d := b.Dropped(); d != 2 {
			t.Errorf("Dropped() = %d, want 2 (3 kept + 2 new fill the 5)", d)
		}
		f.setFail(false)
		time.Sleep(time.Second)
		synctest.Wait()
		if got, _ := f.received(); !slices.Equal(got, macs(0, 5)) {
			t.Errorf("after the host came back, received %v, want %v (oldest first)", got, macs(0, 5))
		}
		closeBatcher(t, b)
	})
}

// Events kept after a failed Report plus those emitted meanwhile never
// exceed the limit.
func TestBatcherKeepIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{fail: true}
		b := NewBatcher(t.Context(), f, time.Second, 1000, 5)
		for i := range 5 {
			b.Emit(ev(i))
		}
		f.setHook(func() {
			f.setHook(nil)
			for i := 5; i < 8; i++ {
				b.Emit(ev(i)) // arrive while the failing Report is under way
			}
		})
		time.Sleep(time.Second)
		synctest.Wait()
		if d := b.Dropped(); d != 3 {
			t.Errorf("Dropped() = %d, want 3 (5 pending + 3 new, limit 5)", d)
		}
		f.setFail(false)
		closeBatcher(t, b)
		got, _ := f.received()
		if len(got) != 5 || got[0] != "m0" || !slices.Contains(got, "m7") {
			t.Errorf("received %v, want 5 events, the oldest (m0) and newest (m7) among them", got)
		}
		if int(b.Dropped())+len(got) != 8 {
			t.Errorf("%d received + %d dropped, want the 8 emitted", len(got), b.Dropped())
		}
	})
}

func TestBatcherCloseFlushesAndSplitsLargeBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{}
		b := NewBatcher(t.Context(), f, time.Hour, 100000, 100000)
		n := MaxEventBatch + 100
		for i := range n {
			b.Emit(ev(i))
		}
		closeBatcher(t, b)
		got, batches := f.received()
		if !slices.Equal(got, macs(0, n)) {
			t.Fatalf("Close delivered %d events, want all %d in order", len(got), n)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, batch := range f.batches {
			if len(batch) > MaxEventBatch {
				t.Errorf("a Report carried %d events, over the host's limit %d", len(batch), MaxEventBatch)
			}
		}
		if batches != 2 {
			t.Errorf("%d Reports for %d events, want 2", batches, n)
		}
	})
}

func TestBatcherCloseReportsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{fail: true}
		b := NewBatcher(t.Context(), f, time.Hour, 100, 100)
		b.Emit(ev(0))
		if err := b.Close(context.Background()); err == nil {
			t.Error("Close = nil with a host that refuses the last flush")
		}
	})
}

func TestBatcherSetsTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeEvents{}
		b := NewBatcher(t.Context(), f, time.Hour, 100, 100)
		at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
		before := time.Now()
		b.Emit(Event{Type: EventDHCPAck, MAC: "given"})
		b.Emit(Event{Type: EventDHCPAck, MAC: "kept", Time: at})
		closeBatcher(t, b)
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.batches) != 1 || len(f.batches[0]) != 2 {
			t.Fatalf("batches = %v", f.batches)
		}
		if e := f.batches[0][0]; e.Time.Before(before) || e.Time.After(time.Now()) {
			t.Errorf("zero Time became %v, want the time of Emit (%v)", e.Time, before)
		}
		if e := f.batches[0][1]; !e.Time.Equal(at) {
			t.Errorf("Time %v became %v", at, e.Time)
		}
	})
}
