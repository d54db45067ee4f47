package target

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Defaults of the refused-login rate limit (Server.RefusedLoginLimit and
// RefusedLoginWindow) and the number of source addresses it remembers.
const (
	DefaultRefusedLoginLimit  = 10
	DefaultRefusedLoginWindow = time.Minute
	refusalSources            = 4096
)

// refusals counts refused logins per source address in fixed windows. It
// is keyed by address, never by initiator name: a name is public, so a
// lockout by name would let anyone lock the owner out of their disk,
// whereas an address limit only slows down the address that keeps failing.
// It remembers at most max addresses, dropping the one refused least
// recently, so a flood from many addresses costs bounded memory.
type refusals struct {
	limit  int
	window time.Duration
	max    int
	now    func() time.Time

	mu     sync.Mutex
	byAddr map[netip.Addr]*list.Element
	lru    list.List // of *refusalCount, most recently refused first
}

type refusalCount struct {
	addr  netip.Addr
	start time.Time // of the current window
	n     int
}

func newRefusals(limit int, window time.Duration, max int, now func() time.Time) *refusals {
	return &refusals{limit: limit, window: window, max: max, now: now, byAddr: map[netip.Addr]*list.Element{}}
}

// limited reports whether a has been refused limit times in its current
// window.
func (r *refusals) limited(a netip.Addr) bool {
	if r.limit <= 0 {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byAddr[a]
	if e == nil {
		return false
	}
	c := e.Value.(*refusalCount)
	return c.n >= r.limit && r.now().Sub(c.start) < r.window
}

// add counts one refused login from a.
func (r *refusals) add(a netip.Addr) {
	if r.limit <= 0 {
		return
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.byAddr[a]; e != nil {
		c := e.Value.(*refusalCount)
		if now.Sub(c.start) >= r.window {
			c.start, c.n = now, 0
		}
		c.n++
		r.lru.MoveToFront(e)
		return
	}
	if r.lru.Len() >= r.max {
		old := r.lru.Back()
		r.lru.Remove(old)
		delete(r.byAddr, old.Value.(*refusalCount).addr)
	}
	r.byAddr[a] = r.lru.PushFront(&refusalCount{addr: a, start: now, n: 1})
}

// size is the number of addresses remembered.
func (r *refusals) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}
