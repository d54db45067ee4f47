package dhcpd

import (
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/host"
)

// firmwareFresh is how long a boot decision for boot firmware is reused:
// long enough to answer a DISCOVER and the REQUEST that follows with one
// lookup, short enough that a change an admin makes applies at once.
const firmwareFresh = 5 * time.Second

// decisions caches the host's boot decisions, so a busy network of OS
// clients renewing their leases does not make one host call per packet.
type decisions struct {
	mu  sync.Mutex
	ttl time.Duration
	m   map[string]cachedDecision
	// byMAC is the newest decision for each MAC, whatever the key (for
	// events of RELEASE and DECLINE, which carry no class options).
	byMAC map[string]host.Decision
}

type cachedDecision struct {
	d  host.Decision
	at time.Time
}

func newDecisions(ttl time.Duration) *decisions {
	return &decisions{ttl: ttl, m: map[string]cachedDecision{}, byMAC: map[string]host.Decision{}}
}

// get returns a decision fetched less than the TTL ago (firmware: less
// than firmwareFresh).
func (c *decisions) get(key string, firmware bool, now time.Time) (host.Decision, bool) {
	ttl := c.ttl
	if firmware {
		ttl = min(ttl, firmwareFresh)
	}
	if ttl <= 0 {
		return host.Decision{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || now.Sub(e.at) >= ttl {
		return host.Decision{}, false
	}
	return e.d, true
}

// maxUnknownCached bounds the cached decisions once they hold this many:
// beyond it only known machines' are added. A flood from random MACs
// would otherwise grow the cache by one entry per MAC until the sweep.
const maxUnknownCached = 1 << 16

func (c *decisions) put(key, mac string, d host.Decision, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ttl > 0 && (d.Known || len(c.m) < maxUnknownCached) {
		c.m[key] = cachedDecision{d: d, at: now}
	}
	if d.Known {
		c.byMAC[mac] = d
	} else {
		delete(c.byMAC, mac)
	}
}

// known returns the last decision seen for mac: a known machine's, or an
// unknown one.
func (c *decisions) known(mac string) host.Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byMAC[mac]
}

// sweep forgets decisions older than the TTL.
func (c *decisions) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if now.Sub(e.at) >= c.ttl {
			delete(c.m, k)
		}
	}
	if len(c.byMAC) > 100000 {
		clear(c.byMAC)
	}
}

// limiter is a token bucket per MAC: one machine (or one forged MAC)
// flooding the server is answered at rate, burst at once, and its excess
// is dropped before any work is done for it.
type limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second; 0: no limit
	burst   float64
	buckets map[string]bucket
	lastLog time.Time
}

type bucket struct {
	tokens float64
	last   int64 // unix ns
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]bucket{}}
}

// allow takes a token of mac's bucket, if there is one.
func (l *limiter) allow(mac string, now time.Time) bool {
	if l.rate <= 0 {
		return true
	}
	ns := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[mac]
	if !ok {
		l.buckets[mac] = bucket{tokens: l.burst - 1, last: ns}
		return true
	}
	b.tokens = min(l.burst, b.tokens+l.rate*float64(ns-b.last)/1e9)
	b.last = ns
	if b.tokens < 1 {
		l.buckets[mac] = b
		return false
	}
	b.tokens--
	l.buckets[mac] = b
	return true
}

// sweep forgets the buckets that are full again.
func (l *limiter) sweep(now time.Time) {
	if l.rate <= 0 {
		return
	}
	ns := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.buckets {
		if b.tokens+l.rate*float64(ns-b.last)/1e9 >= l.burst {
			delete(l.buckets, k)
		}
	}
}

// logAllowed reports whether a warning may be logged now: at most one a
// second from the packet path.
func (l *limiter) logAllowed(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastLog) < time.Second {
		return false
	}
	l.lastLog = now
	return true
}
