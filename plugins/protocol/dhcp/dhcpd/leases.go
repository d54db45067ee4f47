package dhcpd

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dls-project/dls/plugins/protocol/leaseslot"
	"github.com/dls-project/dls/sdk/host"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// ip4 is an IPv4 address as a number: cheap to compare, count and index.
type ip4 uint32

func ip4From(a netip.Addr) ip4 {
	b := a.As4()
	return ip4(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
}

// ip4FromIP converts a net.IP; 0 for nil or non-IPv4.
func ip4FromIP(ip net.IP) ip4 {
	v := ip.To4()
	if v == nil {
		return 0
	}
	return ip4(uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3]))
}

func (a ip4) addr() netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

func (a ip4) ip() net.IP { return net.IPv4(byte(a>>24), byte(a>>16), byte(a>>8), byte(a)).To4() }

func (a ip4) String() string { return a.addr().String() }

// pool is a pool's addresses and who holds them.
type pool struct {
	poolSettings
	subnet ip4
	opts   dhcpv4.Options          // every reply's options (lease time, mask, router, ...)
	slots  []leaseslot.Slot        // start..end
	extra  map[ip4]*leaseslot.Slot // reserved addresses of the subnet outside start..end
	byMAC  map[string]ip4          // the address last leased or offered to a MAC
	next   int                     // the next never-used slot to try
	scan   int                     // where the search for a reusable slot goes on
	usable int                     // addresses that may be leased
	// unknown holds the addresses offered or leased to MACs the host does
	// not know, with the end of that offer or lease (unix ns), when
	// unknownLeases caps them; entries past their end are pruned when the
	// cap is reached, at most once per expiry (pruneAt).
	unknown map[ip4]int64
	pruneAt int64
}

func newPool(ps poolSettings, reserved ...ip4) *pool {
	p := &pool{
		poolSettings: ps, subnet: ps.start & ps.mask, opts: poolOptions(ps),
		slots: make([]leaseslot.Slot, int(ps.end-ps.start)+1),
		extra: map[ip4]*leaseslot.Slot{}, byMAC: map[string]ip4{}, unknown: map[ip4]int64{},
	}
	bcast := p.subnet | ^ps.mask
	unusable := append([]ip4{p.subnet, bcast, ps.router}, reserved...)
	for _, a := range unusable {
		if p.inRange(a) && ps.mask != 0xffffffff {
			p.slots[a-ps.start].State = leaseslot.Unusable
		}
	}
	for i := range p.slots {
		if p.slots[i].State != leaseslot.Unusable {
			p.usable++
		}
	}
	return p
}

func (p *pool) inRange(a ip4) bool  { return a >= p.start && a <= p.end }
func (p *pool) inSubnet(a ip4) bool { return a&p.mask == p.subnet }

// admitUnknown reports whether a MAC the host does not know may take a
// (offered or leased until its end) without going over unknownLeases. An
// address already counted is not counted twice.
func (p *pool) admitUnknown(a ip4, now int64) bool {
	if p.unknownLeases == 0 || len(p.unknown) < p.unknownLeases {
		return true
	}
	if _, ok := p.unknown[a]; ok {
		return true
	}
	if now >= p.pruneAt {
		// Scanning the map is O(cap): do it only once an entry has
		// expired, not for every packet of a flood.
		p.pruneAt = 1<<63 - 1
		for b, end := range p.unknown {
			if end <= now {
				delete(p.unknown, b)
			} else {
				p.pruneAt = min(p.pruneAt, end)
			}
		}
	}
	return len(p.unknown) < p.unknownLeases
}

// holder records who holds a until end: counted against unknownLeases
// when the host does not know the MAC, forgotten otherwise (end 0: no
// one holds it).
func (p *pool) holder(a ip4, known bool, end int64) {
	if p.unknownLeases == 0 {
		return
	}
	if known || end == 0 {
		delete(p.unknown, a)
		return
	}
	p.unknown[a] = end
	p.pruneAt = min(p.pruneAt, end)
}

// slot returns the slot of a, in the range or among the reserved extras;
// create adds an extra slot for an address of the subnet.
func (p *pool) slot(a ip4, create bool) *leaseslot.Slot {
	if p.inRange(a) {
		return &p.slots[a-p.start]
	}
	if s, ok := p.extra[a]; ok {
		return s
	}
	if create && p.inSubnet(a) && a != p.subnet && a != p.subnet|^p.mask {
		s := &leaseslot.Slot{}
		p.extra[a] = s
		return s
	}
	return nil
}

// Errors of the lease table; the handler counts them by reason.
var (
	errExhausted     = errors.New("pool exhausted")
	errReservedInUse = errors.New("reserved address in use by another MAC")
	errUnknownLimit  = errors.New("addresses of unknown MACs at the pool's unknown_leases")
)

// nak reasons: why a REQUEST is refused.
const (
	nakNone        = ""
	nakNotOurs     = "wrong_subnet"  // the address is in none of the request's pools
	nakTaken       = "address_taken" // another MAC holds it
	nakReserved    = "reserved"      // reserved for another MAC
	nakReservation = "reservation"   // the client has a reservation elsewhere
	// Not a NAK: the REQUEST of an unknown MAC over unknown_leases goes
	// unanswered, like its DISCOVER.
	refusedUnknownLimit = "unknown_limit"
)

// table is the plugin's in-memory lease state: every pool's addresses and
// the reservations learned from the host. It decides allocations; the
// store, through the host, makes them durable.
type table struct {
	mu          sync.Mutex
	pools       []*pool
	reservedFor map[ip4]string // address → MAC it is reserved for
	reservation map[string]ip4 // MAC → its reserved address
	offerTime   time.Duration
	declineTime time.Duration
	now         func() time.Time
}

func newTable(s *settings, serverIP ip4) *table {
	t := &table{
		reservedFor: map[ip4]string{}, reservation: map[string]ip4{},
		offerTime: s.OfferTime, declineTime: s.DeclineTime, now: time.Now,
	}
	for _, ps := range s.pools {
		t.pools = append(t.pools, newPool(ps, serverIP, s.nextServer))
	}
	return t
}

// poolsFor returns the pools serving the subnet of a (a relay's giaddr, or
// an address of the interface a request came in on).
func (t *table) poolsFor(a ip4) []*pool {
	var out []*pool
	for _, p := range t.pools {
		if p.inSubnet(a) {
			out = append(out, p)
		}
	}
	return out
}

// poolOf returns the pool whose subnet holds a, among pools.
func poolOf(pools []*pool, a ip4) *pool {
	for _, p := range pools {
		if p.inRange(a) {
			return p
		}
	}
	for _, p := range pools {
		if p.inSubnet(a) {
			return p
		}
	}
	return nil
}

// reserve records the host's reservation of a for mac (0: none), as a
// lookup answered it.
func (t *table) reserve(mac string, a ip4) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, ok := t.reservation[mac]; ok && old != a {
		delete(t.reservation, mac)
		if t.reservedFor[old] == mac {
			delete(t.reservedFor, old)
		}
	}
	if a != 0 {
		t.reservation[mac] = a
		t.reservedFor[a] = mac
	}
}

// freeFor is leaseslot.Slot.FreeFor plus the reservations.
func (t *table) freeFor(s *leaseslot.Slot, a ip4, mac string, now int64) bool {
	if r, ok := t.reservedFor[a]; ok && r != mac {
		return false
	}
	return s.FreeFor(mac, now)
}

// offer picks an address for mac among pools (the request's network) and
// holds it for the offer time: the reserved address when it is free, else
// the MAC's previous address, else the requested one, else a never-used
// one, else one whose lease ended. fresh says a never-used address was
// taken (worth a probe). A MAC the host does not know (known false) gets a
// new address only from a pool under its unknown_leases.
func (t *table) offer(pools []*pool, mac string, requested, reserved ip4, reservedOnly, known bool) (p *pool, a ip4, fresh bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now().UnixNano()
	hold := func(p *pool, a ip4, s *leaseslot.Slot) {
		s.OfferTo, s.OfferEnd = mac, now+int64(t.offerTime)
		p.byMAC[mac] = a
		end := s.OfferEnd
		if s.MAC == mac && s.State == leaseslot.Bound {
			end = max(end, s.Expires)
		}
		p.holder(a, known, end)
	}
	capped := false // a pool refused an unknown MAC
	admit := func(p *pool, a ip4) bool {
		if known || p.admitUnknown(a, now) {
			return true
		}
		capped = true
		return false
	}
	if reserved != 0 {
		if p := poolOf(pools, reserved); p != nil {
			if s := p.slot(reserved, true); s != nil && s.State != leaseslot.Unusable && t.freeFor(s, reserved, mac, now) {
				hold(p, reserved, s)
				return p, reserved, false, nil
			}
			if reservedOnly {
				return nil, 0, false, errReservedInUse
			}
		} else if reservedOnly {
			return nil, 0, false, errExhausted
		}
	}
	if reservedOnly {
		return nil, 0, false, errExhausted
	}
	for _, p := range pools {
		if a, ok := p.byMAC[mac]; ok {
			s := p.slot(a, false)
			if s != nil && (s.MAC == mac || s.OfferTo == mac) && s.State != leaseslot.Declined && t.freeFor(s, a, mac, now) {
				if !admit(p, a) {
					continue // still its address once the cap allows
				}
				hold(p, a, s)
				return p, a, false, nil
			}
			delete(p.byMAC, mac)
		}
	}
	if requested != 0 {
		for _, p := range pools {
			if !p.inRange(requested) {
				continue
			}
			if s := p.slot(requested, false); s.State != leaseslot.Unusable && t.freeFor(s, requested, mac, now) && admit(p, requested) {
				hold(p, requested, s)
				return p, requested, s.State == leaseslot.Free && s.MAC == "", nil
			}
		}
	}
	for _, p := range pools {
		if !admit(p, 0) {
			continue
		}
		for p.next < len(p.slots) {
			i := p.next
			p.next++
			s := &p.slots[i]
			a := p.start + ip4(i)
			if s.State == leaseslot.Free && s.MAC == "" && t.freeFor(s, a, mac, now) {
				hold(p, a, s)
				return p, a, true, nil
			}
		}
	}
	for _, p := range pools {
		if !admit(p, 0) {
			continue
		}
		n := len(p.slots)
		for k := 0; k < n; k++ {
			i := (p.scan + k) % n
			s := &p.slots[i]
			a := p.start + ip4(i)
			if s.State != leaseslot.Unusable && t.freeFor(s, a, mac, now) {
				p.scan = (i + 1) % n
				if old := s.MAC; old != "" && old != mac && p.byMAC[old] == a {
					delete(p.byMAC, old)
				}
				hold(p, a, s)
				return p, a, false, nil
			}
		}
	}
	if capped {
		return nil, 0, false, errUnknownLimit
	}
	return nil, 0, false, errExhausted
}

// unoffer forgets an offer to mac (it chose another server, or a probe
// found its address in use).
func (t *table) unoffer(mac string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.pools {
		if a, ok := p.byMAC[mac]; ok {
			if s := p.slot(a, false); s != nil && s.OfferTo == mac {
				s.OfferTo, s.OfferEnd = "", 0
				if s.MAC != mac || s.State != leaseslot.Bound {
					p.holder(a, true, 0)
				}
			}
		}
	}
}

// request binds a to mac if it may have it, for the pool's lease time, and
// returns the lease to commit; otherwise it returns why the REQUEST must be
// NAKed. mustReserve is the reservation-mode rule: only the reserved
// address. A MAC the host does not know (known false) may bind an address
// it was not offered and does not hold only under the pool's
// unknown_leases (else refusedUnknownLimit).
func (t *table) request(pools []*pool, mac string, a ip4, hostname string, mustReserve, known bool) (host.Lease, *pool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	ns := now.UnixNano()
	p := poolOf(pools, a)
	if p == nil {
		return host.Lease{}, nil, nakNotOurs
	}
	r, hasReservation := t.reservation[mac]
	if mustReserve && (!hasReservation || r != a) {
		return host.Lease{}, nil, nakReservation
	}
	if owner, ok := t.reservedFor[a]; ok && owner != mac {
		return host.Lease{}, nil, nakReserved
	}
	s := p.slot(a, hasReservation && r == a)
	if s == nil || s.State == leaseslot.Unusable {
		return host.Lease{}, nil, nakNotOurs
	}
	if hasReservation && r != a {
		// The client is reserved another address: move it there when
		// that address is free for it.
		if rp := poolOf(pools, r); rp != nil {
			if rs := rp.slot(r, true); rs != nil && rs.State != leaseslot.Unusable && t.freeFor(rs, r, mac, ns) {
				return host.Lease{}, nil, nakReservation
			}
		}
	}
	if !t.freeFor(s, a, mac, ns) || (s.State == leaseslot.Declined && s.MAC == mac && s.Expires > ns) {
		return host.Lease{}, nil, nakTaken
	}
	if ours := s.OfferTo == mac || (s.MAC == mac && s.State == leaseslot.Bound); !known && !ours && !p.admitUnknown(a, ns) {
		return host.Lease{}, nil, refusedUnknownLimit
	}
	if old := s.MAC; old != "" && old != mac && p.byMAC[old] == a {
		delete(p.byMAC, old)
	}
	exp := now.Add(p.leaseTime)
	s.MAC, s.Hostname, s.State, s.Expires = mac, hostname, leaseslot.Bound, exp.UnixNano()
	if s.OfferTo == mac {
		s.OfferTo, s.OfferEnd = "", 0
	}
	p.byMAC[mac] = a
	p.holder(a, known, s.Expires)
	return host.Lease{Pool: p.name, Address: a.String(), MAC: macString(mac), Expires: exp, State: host.LeaseBound, Hostname: hostname}, p, nakNone
}

// conflict records that the store refused a's lease: holder has it.
func (t *table) conflict(pools []*pool, a ip4, mac, holder string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := poolOf(pools, a)
	if p == nil {
		return
	}
	s := p.slot(a, false)
	if s == nil {
		return
	}
	if p.byMAC[mac] == a {
		delete(p.byMAC, mac)
	}
	h := macBytes(holder)
	s.MAC, s.State, s.Expires = h, leaseslot.Bound, t.now().Add(p.leaseTime).UnixNano()
	p.holder(a, true, 0) // another host's lease: not ours to count
	if h != "" {
		p.byMAC[h] = a
	}
}

// release ends mac's lease of a; ok is false when mac does not hold it.
func (t *table) release(pools []*pool, mac string, a ip4) (host.Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := poolOf(pools, a)
	if p == nil {
		return host.Lease{}, false
	}
	s := p.slot(a, false)
	if s == nil || s.MAC != mac || s.State != leaseslot.Bound {
		return host.Lease{}, false
	}
	now := t.now()
	s.State, s.Expires = leaseslot.Released, now.UnixNano()
	if s.OfferTo == "" || s.OfferEnd <= now.UnixNano() {
		p.holder(a, true, 0)
	}
	return host.Lease{Pool: p.name, Address: a.String(), MAC: macString(mac), Expires: now, State: host.LeaseReleased, Hostname: s.Hostname}, true
}

// decline quarantines a, which mac found in use by another machine.
func (t *table) decline(pools []*pool, mac string, a ip4) (host.Lease, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := poolOf(pools, a)
	if p == nil {
		return host.Lease{}, false
	}
	s := p.slot(a, false)
	if s == nil || s.State == leaseslot.Unusable || (s.MAC != mac && s.OfferTo != mac) {
		return host.Lease{}, false
	}
	exp := t.now().Add(t.declineTime)
	s.MAC, s.State, s.Expires, s.OfferTo, s.OfferEnd = mac, leaseslot.Declined, exp.UnixNano(), "", 0
	p.holder(a, true, 0)
	if p.byMAC[mac] == a {
		delete(p.byMAC, mac)
	}
	return host.Lease{Pool: p.name, Address: a.String(), MAC: macString(mac), Expires: exp, State: host.LeaseDeclined}, true
}

// quarantine marks a in use by an unknown machine (a probe got an echo).
func (t *table) quarantine(p *pool, a ip4, mac string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := p.slot(a, false)
	if s == nil {
		return
	}
	s.State, s.Expires, s.OfferTo, s.OfferEnd = leaseslot.Declined, t.now().Add(t.declineTime).UnixNano(), "", 0
	p.holder(a, true, 0)
	if p.byMAC[mac] == a {
		delete(p.byMAC, mac)
	}
}

// load fills the table with the store's leases; leases of addresses no
// pool holds are skipped and counted.
func (t *table) load(leases []host.Lease) (loaded, skipped int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, l := range leases {
		a, err := netip.ParseAddr(l.Address)
		if err != nil || !a.Is4() {
			skipped++
			continue
		}
		mac := macBytes(l.MAC)
		addr := ip4From(a)
		p := poolOf(t.pools, addr)
		if p == nil || mac == "" {
			skipped++
			continue
		}
		s := p.slot(addr, true)
		if s == nil || s.State == leaseslot.Unusable {
			skipped++
			continue
		}
		if !s.Restore(l, mac) {
			skipped++
			continue
		}
		if prev, ok := p.byMAC[mac]; !ok || p.slot(prev, false).Expires < s.Expires {
			if l.State != host.LeaseDeclined {
				p.byMAC[mac] = addr
			}
		}
		loaded++
	}
	return loaded, skipped
}

// poolStats is one pool's size and active leases.
type poolStats struct {
	name   string
	size   int
	active int
}

// stats counts every pool's active leases (bound, not expired).
func (t *table) stats() []poolStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now().UnixNano()
	out := make([]poolStats, 0, len(t.pools))
	for _, p := range t.pools {
		st := poolStats{name: p.name, size: p.usable}
		for i := range p.slots {
			if s := &p.slots[i]; s.State == leaseslot.Bound && s.Expires > now {
				st.active++
			}
		}
		for _, s := range p.extra {
			if s.State == leaseslot.Bound && s.Expires > now {
				st.active++
			}
		}
		out = append(out, st)
	}
	return out
}

// lease returns what the table holds for a (tests, the README's claims).
func (t *table) lease(a ip4) (mac string, state leaseslot.State, expires time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := poolOf(t.pools, a)
	if p == nil {
		return "", 0, time.Time{}, false
	}
	s := p.slot(a, false)
	if s == nil {
		return "", 0, time.Time{}, false
	}
	return s.MAC, s.State, time.Unix(0, s.Expires), true
}

// macString is the canonical form of a raw MAC: "52:54:00:12:34:56".
func macString(raw string) string {
	const hexdigits = "0123456789abcdef"
	if raw == "" {
		return ""
	}
	b := make([]byte, 0, len(raw)*3-1)
	for i := 0; i < len(raw); i++ {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexdigits[raw[i]>>4], hexdigits[raw[i]&0xf])
	}
	return string(b)
}

// macBytes is the raw form of a MAC in any notation net.ParseMAC reads; ""
// when it reads none.
func macBytes(s string) string {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return ""
	}
	return string(hw)
}
