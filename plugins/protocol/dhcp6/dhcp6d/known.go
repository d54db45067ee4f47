package dhcp6d

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The known clients come from the host as a pushed table
// (host.ClientWatcher), as for protocol "dhcp" (see its known.go): a
// snapshot, then every committed change with the next version. While the
// table is live a packet is decided from it in memory, an unknown MAC by
// the host's unknown_clients policy (ignore: no answer; discover: no
// answer and a dhcp_unknown event; register: a Lookup, which creates the
// client). When it is not live, the host is asked per packet (Lookup).

// syncWait bounds how long Start waits for the first snapshot.
const syncWait = 2 * time.Second

// Reconnection of a broken watch: from watchRetryMin, doubling, at most
// watchRetryMax apart.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// Values of host.ClientUpdate.UnknownClients the plugin acts on.
const (
	policyRegister = "register"
	policyDiscover = "discover"
)

// errVersionGap ends a watch that skipped a version (it watches again).
var errVersionGap = errors.New("client table: a version is missing")

// knownTable is the host's pushed table of known clients.
type knownTable struct {
	mu      sync.RWMutex
	live    bool
	version uint64
	policy  string
	byMAC   map[string]host.Decision // by raw 6-byte MAC
	ready   chan struct{}            // closed by the first snapshot, or when the host cannot push
	once    sync.Once
}

func newKnownTable() *knownTable {
	return &knownTable{byMAC: map[string]host.Decision{}, ready: make(chan struct{})}
}

// apply applies u. A change that is not the next version, or that comes
// before a snapshot, is refused (errVersionGap) and leaves the table not
// live.
func (t *knownTable) apply(u host.ClientUpdate) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !u.Full && (!t.live || u.Version != t.version+1) {
		t.live = false
		return fmt.Errorf("%w: have %d, got %d", errVersionGap, t.version, u.Version)
	}
	if u.Full {
		t.byMAC = make(map[string]host.Decision, len(u.Set))
	}
	for _, m := range u.Removed {
		delete(t.byMAC, macBytes(m))
	}
	for _, e := range u.Set {
		raw := macBytes(e.MAC)
		if raw == "" {
			continue // not a MAC a packet can carry
		}
		e.Decision.Known = true
		t.byMAC[raw] = e.Decision
	}
	t.version, t.policy, t.live = u.Version, u.UnknownClients, true
	t.settle()
	return nil
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

// follow keeps s.known live until ctx ends: it watches, and watches again
// after a broken stream. A host that cannot push (Unimplemented, or a
// grant without "lookup") leaves the plugin on Lookup for good.
func (s *server) follow(ctx context.Context, w host.ClientWatcher) {
	wait := watchRetryMin
	for {
		began := time.Now()
		err := w.Watch(ctx, s.known.apply)
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
			wait = watchRetryMin
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

// lookupTimeout bounds one boot decision asked of the host.
const lookupTimeout = 3 * time.Second

// decide is who the client is: from the pushed table when it is live,
// else asked of the host.
func (s *server) decide(ctx context.Context, c client) (host.Decision, error) {
	if s.clients == nil {
		return host.Decision{}, nil
	}
	if d, policy, live := s.known.get(c.mac); live {
		if d.Known || !c.firmware() {
			return d, nil // an OS's DHCP client is never registered nor discovered
		}
		switch policy {
		case policyRegister:
			// The host must create the client before an answer can name it.
		case policyDiscover:
			s.sighted(c)
			return d, nil
		default:
			return d, nil
		}
	}
	q := host.Query{MAC: macString(c.mac), UserClass: c.userClass, VendorClass: c.vendorClass, Peer: c.from}
	if c.arch != archUnknownOrNone {
		q.Arch = c.arch
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	s.m.lookups.Inc()
	return s.clients.Lookup(lctx, q)
}

// lastDecision is mac's decision without asking the host (Release and
// Decline events): the pushed table's, or none.
func (s *server) lastDecision(mac string) host.Decision {
	d, _, _ := s.known.get(mac)
	return d
}

// sighted tells the host, in the next event batch, that unknown boot
// firmware asked.
func (s *server) sighted(c client) {
	if s.events == nil {
		return
	}
	s.events.Emit(host.Event{Type: host.EventDHCPUnknown, MAC: macString(c.mac), Address: c.from, Time: time.Now(), Attrs: classAttrs(c)})
}
