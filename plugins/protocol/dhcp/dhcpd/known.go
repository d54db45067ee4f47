package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The known clients come from the host as a pushed table
// (host.ClientWatcher), not from a Lookup per new MAC: the host sends a
// snapshot when the plugin starts watching, then every committed change
// to its clients with the next version. While the table is live (its
// stream is up and every version arrived), a packet is decided from it
// in memory: a known MAC gets its pushed decision, an unknown one is
// decided by the host's unknown_clients policy, which the table carries:
//
//	ignore    no answer (as the host's Lookup would say)
//	discover  no answer; a dhcp_unknown event goes to the host through
//	          the event batcher (never blocking the packet), and the
//	          host records the machine from it
//	register  a synchronous Lookup: the host must create the client
//	          before the answer can name it (bounded by the host's
//	          boot.max_registered); its push follows
//
// When the table is not live (before the first snapshot, after a broken
// stream until the next snapshot, against a host without Watch), packets
// are decided as before: the decision cache, then a synchronous Lookup.
// So no packet is ever decided from a table that missed a change. Start
// waits up to syncWait for the first snapshot, so that a restarted plugin
// answers from the table from its first packet in the usual case.

// syncWait bounds how long Start waits for the first snapshot.
const syncWait = 2 * time.Second

// Reconnection of a broken watch: from watchRetryMin, doubling, at most
// watchRetryMax apart.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// errVersionGap ends a watch that skipped a version (it watches again).
var errVersionGap = errors.New("client table: a version is missing")

// knownTable is the host's pushed table of known clients.
type knownTable struct {
	mu      sync.RWMutex
	live    bool // stream up, snapshot and every change since applied
	version uint64
	policy  string
	byMAC   map[string]host.Decision // by raw 6-byte MAC, as packets carry it
	ready   chan struct{}            // closed by the first snapshot, or when the host cannot push
	once    sync.Once
}

func newKnownTable() *knownTable {
	return &knownTable{byMAC: map[string]host.Decision{}, ready: make(chan struct{})}
}

// reservation is a change to the lease table's reservations the update
// implies: mac's reserved address is now addr (0: none).
type reservation struct {
	mac  string
	addr ip4
}

// apply applies u and returns the reservations that changed. A change
// that is not the next version, or that comes before a snapshot, is
// refused (errVersionGap) and leaves the table not live.
func (t *knownTable) apply(u host.ClientUpdate) ([]reservation, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !u.Full && (!t.live || u.Version != t.version+1) {
		t.live = false
		return nil, fmt.Errorf("%w: have %d, got %d", errVersionGap, t.version, u.Version)
	}
	var res []reservation
	if u.Full {
		old := t.byMAC
		t.byMAC = make(map[string]host.Decision, len(u.Set))
		for m, d := range old {
			if d.ReservedAddress != "" {
				res = append(res, reservation{mac: m}) // set again below if still reserved
			}
		}
	}
	for _, m := range u.Removed {
		raw, err := rawMAC(m)
		if err != nil {
			continue
		}
		if d, ok := t.byMAC[raw]; ok && d.ReservedAddress != "" {
			res = append(res, reservation{mac: raw})
		}
		delete(t.byMAC, raw)
	}
	for _, e := range u.Set {
		raw, err := rawMAC(e.MAC)
		if err != nil {
			continue // not a MAC a packet can carry
		}
		old, had := t.byMAC[raw]
		e.Decision.Known = true
		t.byMAC[raw] = e.Decision
		if e.Decision.ReservedAddress != "" || (had && old.ReservedAddress != "") {
			res = append(res, reservation{mac: raw, addr: parseIP4(e.Decision.ReservedAddress)})
		}
	}
	t.version, t.policy, t.live = u.Version, u.UnknownClients, true
	t.settle()
	return res, nil
}

// settle ends Start's wait for the table (closes ready once).
func (t *knownTable) settle() { t.once.Do(func() { close(t.ready) }) }

// lost marks the table not live: its stream broke.
func (t *knownTable) lost() {
	t.mu.Lock()
	t.live = false
	t.mu.Unlock()
}

// get returns mac's decision (Known false for an unknown MAC) and the
// unknown_clients policy; live is false when the table must not be used.
func (t *knownTable) get(mac string) (d host.Decision, policy string, live bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !t.live {
		return host.Decision{}, "", false
	}
	return t.byMAC[mac], t.policy, true
}

// state is the version and size of the table, and whether it is live.
func (t *knownTable) state() (version uint64, clients int, live bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.version, len(t.byMAC), t.live
}

// rawMAC is the 6-byte form of a canonical MAC.
func rawMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("client table: MAC %q: not a 6-byte MAC", s)
	}
	return string(hw), nil
}

// follow keeps s.known live until ctx ends: it watches, and watches again
// after a broken stream. A host that cannot push (Unimplemented, or a
// grant without "lookup") leaves the plugin on Lookup for good.
func (s *server) follow(ctx context.Context, w host.ClientWatcher) {
	wait := watchRetryMin
	for {
		began := time.Now()
		err := w.Watch(ctx, func(u host.ClientUpdate) error {
			res, err := s.known.apply(u)
			for _, r := range res {
				s.table.reserve(r.mac, r.addr)
			}
			return err
		})
		s.known.lost()
		if ctx.Err() != nil {
			return
		}
		switch status.Code(err) {
		case codes.Unimplemented, codes.PermissionDenied:
			s.logger.Info("the host does not push its clients; asking it per new machine", "error", err)
			s.known.settle()
			return
		}
		if time.Since(began) > watchRetryMax {
			wait = watchRetryMin // it ran for a while: a fresh failure
		}
		s.logger.Warn("client table stream broke; asking the host per machine until it is back", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, watchRetryMax)
	}
}

// fromTable decides mac from the pushed table. ok is false when the
// packet must be decided by Lookup: the table is not live, or the policy
// registers unknown boot firmware.
func (s *server) fromTable(mac string, c client) (host.Decision, bool) {
	if s.known == nil {
		return host.Decision{}, false
	}
	d, policy, live := s.known.get(mac)
	if !live {
		return host.Decision{}, false
	}
	if d.Known || !c.firmware() {
		return d, true // an OS's DHCP client is never registered nor discovered
	}
	switch policy {
	case policyRegister:
		return host.Decision{}, false
	case policyDiscover:
		s.sighted(mac, c)
	}
	return host.Decision{}, true
}

// Values of host.ClientUpdate.UnknownClients the plugin acts on.
const (
	policyRegister = "register"
	policyDiscover = "discover"
)

// sighted tells the host, in the next event batch, that unknown boot
// firmware asked.
func (s *server) sighted(mac string, c client) {
	if s.events == nil {
		return
	}
	e := host.Event{Type: host.EventDHCPUnknown, MAC: macString(mac), Address: c.from, Time: time.Now(), Attrs: classAttrs(c)}
	s.events.Emit(e)
}
