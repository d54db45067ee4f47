package bufpool

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBounded: many goroutines taking and giving back random amounts never
// hold more than the limit together, and all of them finish.
func TestBounded(t *testing.T) {
	const limit = 1 << 20
	var peak, now atomic.Int64
	p := New(limit, func(n int64) {
		now.Store(n)
		for {
			m := peak.Load()
			if n <= m || peak.CompareAndSwap(m, n) {
				break
			}
		}
	})
	var held atomic.Int64 // what the goroutines think they hold
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 1))
			for range 200 {
				n := r.Int64N(limit/4) + 1
				if i%16 == 0 {
					n = limit * 2 // larger than the pool: runs alone
				}
				g, err := p.Acquire(context.Background(), n)
				if err != nil {
					t.Error(err)
					return
				}
				if g != min(n, limit) {
					t.Errorf("granted %d for %d", g, n)
				}
				if h := held.Add(g); h > limit {
					t.Errorf("%d bytes held at once, limit %d", h, limit)
				}
				time.Sleep(time.Duration(r.IntN(50)) * time.Microsecond)
				held.Add(-g)
				p.Release(g)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("goroutines still waiting for the pool: deadlock")
	}
	if peak.Load() > limit {
		t.Errorf("peak %d over limit %d", peak.Load(), limit)
	}
	if peak.Load() == 0 {
		t.Error("changed never reported bytes in use")
	}
	if p.InUse() != 0 || now.Load() != 0 {
		t.Errorf("in use after all released: %d (reported %d)", p.InUse(), now.Load())
	}
}

// TestFirstComeFirstServed: a large request waiting at the head is not
// overtaken by smaller ones that would fit, so it cannot starve.
func TestFirstComeFirstServed(t *testing.T) {
	p := New(100, nil)
	ctx := context.Background()
	a, _ := p.Acquire(ctx, 60)
	bigGot := make(chan struct{})
	go func() {
		g, err := p.Acquire(ctx, 80)
		if err != nil || g != 80 {
			t.Errorf("big: %d %v", g, err)
		}
		close(bigGot)
	}()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	if _, ok := p.TryAcquire(10); ok {
		t.Fatal("TryAcquire overtook a waiter")
	}
	smallGot := make(chan struct{})
	go func() {
		if _, err := p.Acquire(ctx, 10); err != nil {
			t.Error(err)
		}
		close(smallGot)
	}()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 2 })
	select {
	case <-smallGot:
		t.Fatal("a small request overtook the large one before it")
	case <-time.After(20 * time.Millisecond):
	}
	p.Release(a)
	<-bigGot
	<-smallGot
	if got := p.InUse(); got != 90 {
		t.Fatalf("in use %d, want 90", got)
	}
}

// TestCancel: a waiter whose ctx ends leaves the queue with nothing
// reserved, and the smaller requests behind it get in.
func TestCancel(t *testing.T) {
	p := New(100, nil)
	held, _ := p.Acquire(context.Background(), 50)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := p.Acquire(ctx, 100)
		errc <- err
	}()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 1 })
	smallGot := make(chan struct{})
	go func() {
		if _, err := p.Acquire(context.Background(), 40); err != nil {
			t.Error(err)
		}
		close(smallGot)
	}()
	waitFor(t, func() bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.waiters) == 2 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Acquire: %v", err)
	}
	select {
	case <-smallGot:
	case <-time.After(5 * time.Second):
		t.Fatal("the request behind a cancelled one was not woken")
	}
	if got := p.InUse(); got != 90 {
		t.Fatalf("in use %d, want 90", got)
	}
	p.Release(held)
	p.Release(40)
	if got := p.InUse(); got != 0 {
		t.Fatalf("in use %d after all released", got)
	}
}

// TestTimeout: a bounded wait ends with the context's error when the pool
// stays full.
func TestTimeout(t *testing.T) {
	p := New(10, nil)
	p.Acquire(context.Background(), 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if g, err := p.Acquire(ctx, 1); !errors.Is(err, context.DeadlineExceeded) || g != 0 {
		t.Fatalf("Acquire on a full pool: %d %v", g, err)
	}
	if got := p.InUse(); got != 10 {
		t.Fatalf("in use %d, want 10", got)
	}
}

func TestZero(t *testing.T) {
	p := New(10, nil)
	if g, err := p.Acquire(context.Background(), 0); g != 0 || err != nil {
		t.Fatalf("Acquire(0): %d %v", g, err)
	}
	if g, ok := p.TryAcquire(-5); g != 0 || !ok {
		t.Fatalf("TryAcquire(-5): %d %v", g, ok)
	}
	if g, ok := p.TryAcquire(25); g != 10 || !ok {
		t.Fatalf("TryAcquire(25) on an empty pool of 10: %d %v", g, ok)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkAcquireRelease is the pool's cost on a command's path when
// nobody waits: what a READ or WRITE pays for being bounded.
func BenchmarkAcquireRelease(b *testing.B) {
	p := New(64<<20, func(int64) {})
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g, _ := p.Acquire(ctx, 1<<20)
			p.Release(g)
		}
	})
}
