package api

import (
	"container/list"
	"sync"
	"time"
)

// limiter counts failures per key (a username, a source address) in a
// sliding window. A login reserves a failure before the password is
// checked, so that concurrent attempts cannot overshoot the limit, and
// releases it when the password turns out right.
//
// It remembers at most cap keys, forgetting the least recently failed
// first: memory stays bounded whatever an attacker sends, at the price of
// forgetting old counters when more than cap keys fail within a window.
type limiter struct {
	limit Limit
	cap   int

	mu   sync.Mutex
	keys map[string]*list.Element // of *failures
	lru  list.List                // front: most recently touched
}

// failures are one key's failure times, oldest first, at most limit.Max.
type failures struct {
	key   string
	times []time.Time
}

func newLimiter(l Limit, capacity int) *limiter {
	return &limiter{limit: l, cap: capacity, keys: map[string]*list.Element{}}
}

// reserve records a failure at now for key unless key is already at its
// limit; then it answers how long until the oldest failure leaves the
// window.
func (l *limiter) reserve(key string, now time.Time) (retryAfter time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil {
		e = l.lru.PushFront(&failures{key: key})
		l.keys[key] = e
		for l.lru.Len() > l.cap {
			old := l.lru.Back()
			l.lru.Remove(old)
			delete(l.keys, old.Value.(*failures).key)
		}
	} else {
		l.lru.MoveToFront(e)
	}
	f := e.Value.(*failures)
	cutoff := now.Add(-l.limit.Window)
	i := 0
	for i < len(f.times) && !f.times[i].After(cutoff) {
		i++
	}
	f.times = f.times[i:]
	if len(f.times) >= l.limit.Max {
		return f.times[0].Sub(cutoff), false
	}
	f.times = append(f.times, now)
	return 0, true
}

// release forgets the failure reserve recorded at t.
func (l *limiter) release(key string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.keys[key]
	if e == nil {
		return
	}
	f := e.Value.(*failures)
	for i := len(f.times) - 1; i >= 0; i-- {
		if f.times[i].Equal(t) {
			f.times = append(f.times[:i], f.times[i+1:]...)
			break
		}
	}
	if len(f.times) == 0 {
		l.lru.Remove(e)
		delete(l.keys, key)
	}
}

// reset forgets key's failures.
func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.keys[key]; e != nil {
		l.lru.Remove(e)
		delete(l.keys, key)
	}
}

// size is the number of keys remembered.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// trustedSources remembers, per username, the source addresses it logged
// in from, for ttl: the account-wide failure limit does not apply to them.
// Like limiter it holds at most cap entries, forgetting the least recently
// used first.
type trustedSources struct {
	ttl time.Duration
	cap int

	mu   sync.Mutex
	keys map[string]*list.Element // of *trustedSource
	lru  list.List                // front: most recent login
}

type trustedSource struct {
	key   string
	until time.Time
}

func newTrustedSources(ttl time.Duration, capacity int) *trustedSources {
	return &trustedSources{ttl: ttl, cap: capacity, keys: map[string]*list.Element{}}
}

func trustKey(user, src string) string { return user + "\x00" + src }

// add trusts src for user from now on, for ttl.
func (t *trustedSources) add(user, src string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := trustKey(user, src)
	if e := t.keys[k]; e != nil {
		e.Value.(*trustedSource).until = now.Add(t.ttl)
		t.lru.MoveToFront(e)
		return
	}
	t.keys[k] = t.lru.PushFront(&trustedSource{key: k, until: now.Add(t.ttl)})
	for t.lru.Len() > t.cap {
		old := t.lru.Back()
		t.lru.Remove(old)
		delete(t.keys, old.Value.(*trustedSource).key)
	}
}

// has reports whether user logged in from src within ttl of now.
func (t *trustedSources) has(user, src string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.keys[trustKey(user, src)]
	return e != nil && now.Before(e.Value.(*trustedSource).until)
}

// refusalLog coalesces the audit entries of rate-limited logins, so that
// an attacker hammering the login cannot flood the audit log: per limiter
// key (the user and source, the source, or the account that hit its limit)
// and per window (the longest of the limits' windows), the first refusal is written at once and
// the rest are only counted; when the window has ended, one more entry
// gives the window's total (if there was more than the first). That is at
// most two entries per key and window, whatever the request rate. Closed
// windows are written at the next login attempt of anyone, or when their
// key is forgotten. Like limiter it remembers at most cap keys.
type refusalLog struct {
	window time.Duration
	cap    int

	mu   sync.Mutex
	keys map[string]*list.Element // of *refusalWindow
	lru  list.List                // front: most recently opened window
}

// refusalWindow is one key's refusals in one window.
type refusalWindow struct {
	key    string
	limit  string // which limit: user_source, source or account
	user   string // the first refused username of the window
	source string
	start  time.Time
	count  int
}

func newRefusalLog(window time.Duration, capacity int) *refusalLog {
	return &refusalLog{window: window, cap: capacity, keys: map[string]*list.Element{}}
}

// note records a refusal. It reports whether it opens a window (write an
// entry now), and returns the windows that closed with more than one
// refusal (write their totals).
func (l *refusalLog) note(key, limit, user, source string, now time.Time) (first bool, closed []refusalWindow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	closed = l.sweepLocked(now)
	if e := l.keys[key]; e != nil {
		e.Value.(*refusalWindow).count++
		return false, closed
	}
	l.keys[key] = l.lru.PushFront(&refusalWindow{key: key, limit: limit, user: user, source: source, start: now, count: 1})
	for l.lru.Len() > l.cap {
		old := l.lru.Back()
		l.lru.Remove(old)
		w := old.Value.(*refusalWindow)
		delete(l.keys, w.key)
		if w.count > 1 {
			closed = append(closed, *w)
		}
	}
	return true, closed
}

// sweep returns the windows that ended by now with more than one refusal,
// and forgets every ended window.
func (l *refusalLog) sweep(now time.Time) []refusalWindow {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sweepLocked(now)
}

func (l *refusalLog) sweepLocked(now time.Time) []refusalWindow {
	var closed []refusalWindow
	// Windows are opened in time order: the oldest is at the back.
	for e := l.lru.Back(); e != nil; e = l.lru.Back() {
		w := e.Value.(*refusalWindow)
		if now.Before(w.start.Add(l.window)) {
			break
		}
		l.lru.Remove(e)
		delete(l.keys, w.key)
		if w.count > 1 {
			closed = append(closed, *w)
		}
	}
	return closed
}
