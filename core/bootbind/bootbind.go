// Package bootbind keeps, in memory, which address each machine's current
// boot is bound to: the address that holds the MAC's DHCP lease (full
// mode), or the address that first asked for the machine's script after
// DLS's proxyDHCP answer (proxy mode). The host answers a client's script,
// its per-client files and /boot/done only to that address.
//
// A MAC holds one binding per address family: one IPv4 address (DHCPv4)
// and one IPv6 address (DHCPv6). A peer is bound when it is the address
// of its own family's binding. So a dual-stack machine that boots over
// IPv4 and whose OS then gets a DHCPv6 lease keeps its IPv4 binding (its
// iSCSI session and /boot/done still come from there), and a new lease
// moves only the binding of its family.
//
// A binding lasts while its lease (or, in proxy mode, Window after it was
// made) lasts, or while the client has a live iSCSI session from the bound
// address. An address with a live session belongs to that session's MAC:
// Holder names it, so that the host refuses to lease it to another MAC.
//
// The index is fed by the host: Lease from every committed lease, Proxy
// from the DHCP plugin's proxy answers, Login and Logout from the iSCSI
// plugin's events. All methods are safe for concurrent use and take one
// mutex, no I/O: a script request costs a map lookup.
package bootbind

import (
	"net/netip"
	"sync"
	"time"
)

// DefaultWindow is how long a proxy-mode binding, or a pending first use
// after a proxy answer, lasts without a live iSCSI session: a boot goes
// from the proxy answer to its iSCSI login well within it.
const DefaultWindow = 10 * time.Minute

// Index is the binding of each MAC (canonical form) to an address of
// each family.
type Index struct {
	// Window is the life of a proxy binding and of a pending first use.
	Window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	byMAC   map[slot]binding
	byAddr  map[netip.Addr]string    // address → MAC bound to it
	pending map[string]time.Time     // MAC → end of its first-use window
	live    map[netip.Addr]*liveAddr // live iSCSI sessions by peer address
}

// slot is one MAC's binding of one address family.
type slot struct {
	mac string
	v6  bool
}

// slotOf is mac's slot for the family of a.
func slotOf(mac string, a netip.Addr) slot { return slot{mac: mac, v6: a.Unmap().Is6()} }

type binding struct {
	addr  netip.Addr
	until time.Time
}

// liveAddr counts the live iSCSI sessions from one address.
type liveAddr struct {
	mac string
	n   int
}

// New returns an empty index; now is the clock (nil: time.Now).
func New(now func() time.Time) *Index {
	if now == nil {
		now = time.Now
	}
	return &Index{
		Window: DefaultWindow, now: now,
		byMAC: map[slot]binding{}, byAddr: map[netip.Addr]string{},
		pending: map[string]time.Time{}, live: map[netip.Addr]*liveAddr{},
	}
}

// Lease records a lease the store accepted: a bound lease binds mac to
// addr until expires (replacing mac's binding of addr's family only); a
// released or declined one (bound false) ends the binding of mac to addr
// now (a live session still holds it).
func (x *Index) Lease(mac string, addr netip.Addr, expires time.Time, bound bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if bound {
		x.bind(mac, addr, expires)
		return
	}
	k := slotOf(mac, addr)
	if b, ok := x.byMAC[k]; ok && b.addr == addr {
		b.until = x.now()
		x.byMAC[k] = b
	}
}

// bind binds mac to addr until, in addr's family; the caller holds mu.
// The MAC that held addr loses that binding (not its other family's).
func (x *Index) bind(mac string, addr netip.Addr, until time.Time) {
	k := slotOf(mac, addr)
	if old, ok := x.byMAC[k]; ok && old.addr != addr && x.byAddr[old.addr] == mac {
		delete(x.byAddr, old.addr)
	}
	if other, ok := x.byAddr[addr]; ok && other != mac {
		delete(x.byMAC, slotOf(other, addr))
	}
	x.byMAC[k] = binding{addr: addr, until: until}
	x.byAddr[addr] = mac
}

// Proxy records DLS's proxyDHCP answer to mac: the next script request for
// mac within Window binds its requester (Claim).
func (x *Index) Proxy(mac string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.pending[mac] = x.now().Add(x.Window)
}

// Bound reports whether peer is the address bound to mac's boot now, in
// peer's family.
func (x *Index) Bound(mac string, peer netip.Addr) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.bound(mac, peer)
}

func (x *Index) bound(mac string, peer netip.Addr) bool {
	if !peer.IsValid() {
		return false
	}
	b, ok := x.byMAC[slotOf(mac, peer)]
	if !ok || b.addr != peer {
		return false
	}
	if x.now().Before(b.until) {
		return true
	}
	l := x.live[peer]
	return l != nil && l.mac == mac
}

// Claim reports whether peer may have mac's script: it is bound to mac's
// boot, or it is the first to ask after a proxy answer to mac (pending, of
// either family: a DHCPv4 answer may name an IPv6 boot URL), which binds
// it for Window in its own family. A pending first use is refused to any
// address but the one of the machine's live iSCSI session, if it has one
// (of either family): a running machine's binding cannot be taken by
// re-sending its DHCP discover.
func (x *Index) Claim(mac string, peer netip.Addr) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.bound(mac, peer) {
		return true
	}
	end, ok := x.pending[mac]
	now := x.now()
	if !ok || !peer.IsValid() {
		return false
	}
	if !now.Before(end) {
		delete(x.pending, mac)
		return false
	}
	for a, l := range x.live {
		if l.mac == mac && a != peer {
			return false
		}
	}
	if l := x.live[peer]; l != nil && l.mac != mac {
		return false // the address belongs to another machine's session
	}
	delete(x.pending, mac)
	x.bind(mac, peer, now.Add(x.Window))
	return true
}

// Addrs returns the addresses bound to mac's boot now: none, one, or its
// IPv4 then its IPv6 address.
func (x *Index) Addrs(mac string) []netip.Addr {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []netip.Addr
	for _, v6 := range []bool{false, true} {
		if b, ok := x.byMAC[slot{mac: mac, v6: v6}]; ok && x.bound(mac, b.addr) {
			out = append(out, b.addr)
		}
	}
	return out
}

// MACAt returns the MAC whose boot peer is bound to now, if any.
func (x *Index) MACAt(peer netip.Addr) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	mac, ok := x.byAddr[peer]
	if !ok || !x.bound(mac, peer) {
		return "", false
	}
	return mac, true
}

// Login records a live iSCSI session of mac's client from addr.
func (x *Index) Login(mac string, addr netip.Addr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	l := x.live[addr]
	if l == nil || l.mac != mac {
		l = &liveAddr{mac: mac}
		x.live[addr] = l
	}
	l.n++
}

// Logout records the end of a session Login recorded.
func (x *Index) Logout(mac string, addr netip.Addr) {
	x.mu.Lock()
	defer x.mu.Unlock()
	l := x.live[addr]
	if l == nil || l.mac != mac {
		return
	}
	if l.n--; l.n <= 0 {
		delete(x.live, addr)
	}
}

// Holder returns the MAC whose live iSCSI session comes from addr, if any.
func (x *Index) Holder(addr netip.Addr) (string, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	l := x.live[addr]
	if l == nil {
		return "", false
	}
	return l.mac, true
}

// Live reports whether mac has a live iSCSI session from any address.
func (x *Index) Live(mac string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, l := range x.live {
		if l.mac == mac {
			return true
		}
	}
	return false
}
