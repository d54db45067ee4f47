// Package bufpool bounds the bytes of data buffers the iSCSI target holds
// at once: a command takes a reservation before it gets its buffer and
// gives it back when the buffer is no longer needed. When the pool is
// exhausted a command waits (first come, first served) instead of
// allocating, so the target's memory follows the configured limit and not
// the number of machines booting at once.
package bufpool

import (
	"context"
	"sync"
)

// Pool is a budget of buffer bytes. Its methods are safe for concurrent
// use.
type Pool struct {
	limit int64
	// changed, when set, is told the bytes in use after every change,
	// under the pool's lock (so that its calls are in order): it must be
	// quick and must not call the pool.
	changed func(inUse int64)

	mu      sync.Mutex
	inUse   int64
	waiters []*waiter // in arrival order
}

type waiter struct {
	n       int64
	granted chan struct{} // closed when the bytes are the waiter's
}

// New returns a pool of limit bytes (at least 1). changed may be nil.
func New(limit int64, changed func(inUse int64)) *Pool {
	return &Pool{limit: max(limit, 1), changed: changed}
}

// Limit returns the pool's size in bytes.
func (p *Pool) Limit() int64 { return p.limit }

// InUse returns the bytes reserved now.
func (p *Pool) InUse() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inUse
}

// Grant is the reservation Acquire and TryAcquire make for n bytes: n
// itself, or the whole pool when n is larger. A request larger than the
// pool waits until the pool is empty and then runs alone, so that it
// makes progress without the pool lying about what it holds beyond its
// limit.
func (p *Pool) Grant(n int64) int64 { return min(max(n, 0), p.limit) }

// Acquire reserves Grant(n) bytes, waiting behind earlier requests while
// they do not fit. It returns what it reserved, to give back to Release;
// or, when ctx ends first, 0 and ctx's error, having reserved nothing.
func (p *Pool) Acquire(ctx context.Context, n int64) (int64, error) {
	g := p.Grant(n)
	if g == 0 {
		return 0, nil
	}
	p.mu.Lock()
	if len(p.waiters) == 0 && p.inUse+g <= p.limit {
		p.take(g)
		p.mu.Unlock()
		return g, nil
	}
	w := &waiter{n: g, granted: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case <-w.granted:
		return g, nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	select {
	case <-w.granted:
		// Granted while ctx ended: give it back (and let others in).
		p.inUse -= g
		p.report()
		p.wake()
	default:
		for i, o := range p.waiters {
			if o == w {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
				break
			}
		}
		// A large request that left the head may have been holding up
		// smaller ones that fit now.
		p.wake()
	}
	p.mu.Unlock()
	return 0, ctx.Err()
}

// TryAcquire reserves Grant(n) bytes when they fit now and nobody waits;
// it returns what it reserved and whether it did.
func (p *Pool) TryAcquire(n int64) (int64, bool) {
	g := p.Grant(n)
	if g == 0 {
		return 0, true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.waiters) > 0 || p.inUse+g > p.limit {
		return 0, false
	}
	p.take(g)
	return g, true
}

// Release gives back n bytes that Acquire or TryAcquire reserved.
func (p *Pool) Release(n int64) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	p.inUse -= n
	if p.inUse < 0 {
		// A caller released more than it held: a bug, but the pool
		// must not grant bytes it never had because of it.
		p.inUse = 0
	}
	p.report()
	p.wake()
	p.mu.Unlock()
}

// take reserves g bytes. p.mu is held.
func (p *Pool) take(g int64) {
	p.inUse += g
	p.report()
}

// wake grants waiters in order while the first fits. p.mu is held.
func (p *Pool) wake() {
	for len(p.waiters) > 0 && p.inUse+p.waiters[0].n <= p.limit {
		w := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		p.take(w.n)
		close(w.granted)
	}
}

// report tells changed the bytes in use. p.mu is held.
func (p *Pool) report() {
	if p.changed != nil {
		p.changed(p.inUse)
	}
}
