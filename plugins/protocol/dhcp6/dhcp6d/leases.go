package dhcp6d

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dls-project/dls/plugins/protocol/leaseslot"
	"github.com/dls-project/dls/sdk/host"
)

// pool is a pool's touched addresses and who holds them: only an address
// ever advertised, leased or excluded has a slot, so a /64 pool costs
// nothing until clients come.
type pool struct {
	poolSettings
	slots map[uint64]*leaseslot.Slot // by offset
	byMAC map[string]uint64
	next  uint64 // the next never-touched offset to try
	full  bool   // next went past the end
	// advertised lists, oldest first, the addresses advertised to a
	// client that never bound one: once its offer ended such an address
	// is advertised again before a never-touched one, so a flood of
	// Solicits from made-up clients holds at most the addresses of one
	// offer_time in memory, however large the pool.
	advertised []uint64
	head       int // advertised[head:] are live entries
}

func newPool(ps poolSettings, exclude ...netip.Addr) *pool {
	p := &pool{poolSettings: ps, slots: map[uint64]*leaseslot.Slot{}, byMAC: map[string]uint64{}}
	for _, a := range exclude {
		if off, ok := p.offset(a); ok {
			p.slots[off] = &leaseslot.Slot{State: leaseslot.Unusable}
		}
	}
	return p
}

// recycle returns the oldest address advertised and never bound whose
// offer has ended (and moves it to the back of the list, since it is
// advertised again), forgetting entries that were bound meanwhile.
func (p *pool) recycle(now int64) (uint64, bool) {
	for p.head < len(p.advertised) {
		off := p.advertised[p.head]
		s := p.slots[off]
		if s != nil && s.MAC == "" && s.State == leaseslot.Free {
			if s.OfferEnd > now {
				return 0, false // the oldest is still held: so are the rest
			}
			p.advertised[p.head] = 0
			p.head++
			p.advertised = append(p.advertised, off)
			p.compact()
			return off, true
		}
		p.head++ // bound (or excluded) since: not a recycled address
		p.compact()
	}
	return 0, false
}

// compact drops the consumed front of advertised once it is half of it.
func (p *pool) compact() {
	if p.head > 64 && p.head*2 > len(p.advertised) {
		n := copy(p.advertised, p.advertised[p.head:])
		p.advertised, p.head = p.advertised[:n], 0
	}
}

// Errors of the lease table; the handler counts them by reason.
var errExhausted = errors.New("pool exhausted")

// Why an address cannot be bound (the IA's status in the Reply).
const (
	bindOK       = ""
	bindNotOurs  = "not_on_link"   // the address is in none of the pools
	bindTaken    = "address_taken" // another MAC holds it, or it is quarantined
	bindNoRecord = "no_binding"    // Renew of an address the client does not hold
)

// table is the plugin's in-memory lease state. It decides allocations;
// the store, through the host, makes them durable.
type table struct {
	mu          sync.Mutex
	pools       []*pool
	offerTime   time.Duration
	declineTime time.Duration
	now         func() time.Time
}

func newTable(s *settings, server netip.Addr) *table {
	t := &table{offerTime: s.OfferTime, declineTime: s.DeclineTime, now: time.Now}
	for _, ps := range s.pools {
		t.pools = append(t.pools, newPool(ps, server))
	}
	return t
}

// poolOf returns the pool holding a.
func (t *table) poolOf(a netip.Addr) (*pool, uint64) {
	for _, p := range t.pools {
		if off, ok := p.offset(a); ok {
			return p, off
		}
	}
	return nil, 0
}

// onLink reports whether a is an address of one of the pools (Confirm).
func (t *table) onLink(a netip.Addr) bool {
	p, _ := t.poolOf(a)
	return p != nil
}

// offer picks an address for mac and holds it for the offer time: the
// MAC's previous address when it is free for it, else the hinted one (the
// client's IA_NA may name one), else a never-used one, else one whose
// lease ended.
func (t *table) offer(mac string, hint netip.Addr) (*pool, netip.Addr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now().UnixNano()
	hold := func(p *pool, off uint64, s *leaseslot.Slot) netip.Addr {
		s.OfferTo, s.OfferEnd = mac, now+int64(t.offerTime)
		p.byMAC[mac] = off
		return p.addr(off)
	}
	for _, p := range t.pools {
		if off, ok := p.byMAC[mac]; ok {
			if s := p.slots[off]; s != nil && (s.MAC == mac || s.OfferTo == mac) && s.State != leaseslot.Declined && s.FreeFor(mac, now) {
				return p, hold(p, off, s), nil
			}
			delete(p.byMAC, mac)
		}
	}
	if hint.IsValid() {
		if p, off := t.poolOf(hint); p != nil {
			s := p.slots[off]
			if s == nil {
				s = &leaseslot.Slot{}
				p.slots[off] = s
				p.advertised = append(p.advertised, off)
			}
			if s.State != leaseslot.Unusable && s.FreeFor(mac, now) {
				return p, hold(p, off, s), nil
			}
		}
	}
	for _, p := range t.pools {
		if off, ok := p.recycle(now); ok {
			return p, hold(p, off, p.slots[off]), nil
		}
	}
	for _, p := range t.pools {
		for !p.full {
			off := p.next
			if off == p.last() {
				p.full = true
			} else {
				p.next++
			}
			if _, used := p.slots[off]; used {
				continue
			}
			s := &leaseslot.Slot{}
			p.slots[off] = s
			p.advertised = append(p.advertised, off)
			return p, hold(p, off, s), nil
		}
	}
	// Every address was touched once: take one that is free again. The
	// scan is over the touched addresses, only once a pool is used up.
	for _, p := range t.pools {
		for off, s := range p.slots {
			if s.State != leaseslot.Unusable && s.FreeFor(mac, now) {
				if old := s.MAC; old != "" && old != mac && p.byMAC[old] == off {
					delete(p.byMAC, old)
				}
				return p, hold(p, off, s), nil
			}
		}
	}
	return nil, netip.Addr{}, errExhausted
}

// bind leases a to mac for the pool's lifetime and returns the lease to
// commit, or why it may not. renewal says the client claims to hold a
// already (Renew, Rebind): an address it never held is refused with
// bindNoRecord, not taken for it.
func (t *table) bind(mac string, a netip.Addr, hostname string, renewal bool) (host.Lease, *pool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	ns := now.UnixNano()
	p, off := t.poolOf(a)
	if p == nil {
		return host.Lease{}, nil, bindNotOurs
	}
	s := p.slots[off]
	if renewal && (s == nil || s.MAC != mac) {
		return host.Lease{}, p, bindNoRecord
	}
	if s == nil {
		s = &leaseslot.Slot{}
		p.slots[off] = s
	}
	if s.State == leaseslot.Unusable || !s.FreeFor(mac, ns) || (s.State == leaseslot.Declined && s.Expires > ns) {
		return host.Lease{}, p, bindTaken
	}
	if old := s.MAC; old != "" && old != mac && p.byMAC[old] == off {
		delete(p.byMAC, old)
	}
	exp := now.Add(p.leaseTime)
	s.MAC, s.State, s.Expires = mac, leaseslot.Bound, exp.UnixNano()
	if hostname != "" {
		s.Hostname = hostname
	}
	if s.OfferTo == mac {
		s.OfferTo, s.OfferEnd = "", 0
	}
	p.byMAC[mac] = off
	return host.Lease{Pool: p.name, Address: a.String(), MAC: macString(mac), Expires: exp, State: host.LeaseBound, Hostname: s.Hostname}, p, bindOK
}

// conflict records that the store refused a's lease: holder has it.
func (t *table) conflict(a netip.Addr, mac, holder string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, off := t.poolOf(a)
	if p == nil {
		return
	}
	s := p.slots[off]
	if s == nil {
		return
	}
	if p.byMAC[mac] == off {
		delete(p.byMAC, mac)
	}
	h := macBytes(holder)
	s.MAC, s.State, s.Expires = h, leaseslot.Bound, t.now().Add(p.leaseTime).UnixNano()
	if h != "" {
		p.byMAC[h] = off
	}
}

// release ends mac's lease of a; ok is false when mac does not hold it.
func (t *table) release(mac string, a netip.Addr) (host.Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, off := t.poolOf(a)
	if p == nil {
		return host.Lease{}, false
	}
	s := p.slots[off]
	if s == nil || s.MAC != mac || s.State != leaseslot.Bound {
		return host.Lease{}, false
	}
	now := t.now()
	s.State, s.Expires = leaseslot.Released, now.UnixNano()
	return host.Lease{Pool: p.name, Address: a.String(), MAC: macString(mac), Expires: now, State: host.LeaseReleased, Hostname: s.Hostname}, true
}

// decline quarantines a, which mac found in use by another machine.
func (t *table) decline(mac string, a netip.Addr) (host.Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, off := t.poolOf(a)
	if p == nil {
		return host.Lease{}, false
	}
	s := p.slots[off]
	if s == nil || s.State == leaseslot.Unusable || (s.MAC != mac && s.OfferTo != mac) {
		return host.Lease{}, false
	}
	exp := t.now().Add(t.declineTime)
	s.State, s.Expires, s.OfferTo, s.OfferEnd = leaseslot.Declined, exp.UnixNano(), "", 0
	if p.byMAC[mac] == off {
		delete(p.byMAC, mac)
	}
	return host.Lease{Pool: p.name, Address: a.String(), MAC: macString(mac), Expires: exp, State: host.LeaseDeclined}, true
}

// load fills the table with the store's IPv6 leases; those of addresses no
// pool holds (IPv4 leases of protocol "dhcp" among them) are skipped and
// counted.
func (t *table) load(leases []host.Lease) (loaded, skipped int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range leases {
		a, err := netip.ParseAddr(l.Address)
		mac := macBytes(l.MAC)
		if err != nil || mac == "" {
			skipped++
			continue
		}
		p, off := t.poolOf(a)
		if p == nil {
			skipped++
			continue
		}
		s := p.slots[off]
		if s == nil {
			s = &leaseslot.Slot{}
			p.slots[off] = s
		}
		if s.State == leaseslot.Unusable {
			skipped++
			continue
		}
		if !s.Restore(l, mac) {
			skipped++
			continue
		}
		if prev, ok := p.byMAC[mac]; (!ok || p.slots[prev].Expires < s.Expires) && l.State != host.LeaseDeclined {
			p.byMAC[mac] = off
		}
		loaded++
	}
	return loaded, skipped
}

// poolStats is one pool's size and active leases.
type poolStats struct {
	name   string
	size   float64
	active int
}

// stats counts every pool's active leases (bound, not expired).
func (t *table) stats() []poolStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now().UnixNano()
	out := make([]poolStats, 0, len(t.pools))
	for _, p := range t.pools {
		st := poolStats{name: p.name, size: float64(p.size)}
		for _, s := range p.slots {
			switch {
			case s.State == leaseslot.Unusable:
				st.size--
			case s.State == leaseslot.Bound && s.Expires > now:
				st.active++
			}
		}
		out = append(out, st)
	}
	return out
}

// lease returns what the table holds for a (tests).
func (t *table) lease(a netip.Addr) (mac string, state leaseslot.State, expires time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, off := t.poolOf(a)
	if p == nil || p.slots[off] == nil {
		return "", 0, time.Time{}, false
	}
	s := p.slots[off]
	return s.MAC, s.State, time.Unix(0, s.Expires), true
}

// macString is the canonical form of a raw MAC: "52:54:00:12:34:56".
func macString(raw string) string {
	return net.HardwareAddr(raw).String()
}

// macBytes is the raw form of a MAC in any notation net.ParseMAC reads; ""
// when it reads none.
func macBytes(s string) string {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return ""
	}
	return string(hw)
}
