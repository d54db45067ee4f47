package hostservices

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/prometheus/client_golang/prometheus"
)

// Discovery (unknown_clients = "discover"): every unknown machine that asks
// to boot is recorded, never booted. A sighting costs a map update under a
// mutex on the request's path; a write-behind loop (RunDiscovery) writes
// the coalesced sightings in one store transaction per flush. So a storm of
// DISCOVERs from one MAC is one row write per flush, and a flood of spoofed
// MACs is bounded twice: at most maxPendingDiscovered distinct MACs wait
// for a flush (the rest are dropped and counted), and the store adds no
// new MAC once it holds boot.max_discovered machines.

// Defaults of the discovery recorder.
const (
	// DefaultDiscoveryFlush is how often sightings are written.
	DefaultDiscoveryFlush = time.Second
	// maxPendingDiscovered bounds the MACs waiting for a flush.
	maxPendingDiscovered = 1024
)

// Results of dls_discovery_sightings_total.
const (
	sightRecorded = "recorded" // written to the store (new or seen again)
	sightRefused  = "refused"  // new MAC, the store holds boot.max_discovered machines
	sightDropped  = "dropped"  // maxPendingDiscovered MACs were already waiting
	sightFailed   = "failed"   // the store write failed
)

// discoveries coalesces sightings of unknown machines until a flush.
type discoveries struct {
	store store.Discovered
	max   int // rows the store may hold; 0: no bound
	every time.Duration
	// pendingMax bounds pending (maxPendingDiscovered; tests lower it).
	pendingMax int
	sightings  *prometheus.CounterVec

	mu      sync.Mutex
	pending map[string]*store.DiscoveredMachine
}

func newDiscoveries(st store.Discovered, max int) *discoveries {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dls_discovery_sightings_total",
		Help: `Sightings of unknown machines asking to boot with unknown_clients = "discover", by result (recorded, refused: boot.max_discovered reached, dropped: too many waiting for a flush, failed).`,
	}, []string{"result"})
	for _, r := range []string{sightRecorded, sightRefused, sightDropped, sightFailed} {
		c.WithLabelValues(r)
	}
	return &discoveries{store: st, max: max, every: DefaultDiscoveryFlush, pendingMax: maxPendingDiscovered,
		sightings: c, pending: map[string]*store.DiscoveredMachine{}}
}

// see records one sighting in memory.
func (d *discoveries) see(m store.DiscoveredMachine) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.pending[m.MAC]
	if !ok {
		if len(d.pending) >= d.pendingMax {
			d.sightings.WithLabelValues(sightDropped).Inc()
			return
		}
		m.Count = 1
		d.pending[m.MAC] = &m
		return
	}
	p.LastSeen = m.LastSeen
	p.Count++
	if m.VendorClass != "" {
		p.Arch, p.VendorClass = m.Arch, m.VendorClass
	}
	if m.UserClass != "" {
		p.UserClass = m.UserClass
	}
	if m.Address.IsValid() {
		p.Address = m.Address
	}
}

// flush writes what is pending in one store call. On a failure the
// sightings are lost (counted): a machine asking to boot asks again.
func (d *discoveries) flush(ctx context.Context) error {
	d.mu.Lock()
	if len(d.pending) == 0 {
		d.mu.Unlock()
		return nil
	}
	batch := make([]store.DiscoveredMachine, 0, len(d.pending))
	var n int64
	for _, m := range d.pending {
		batch = append(batch, *m)
		n += m.Count
	}
	d.pending = make(map[string]*store.DiscoveredMachine, len(batch))
	d.mu.Unlock()

	refused, err := d.store.RecordDiscovered(ctx, batch, d.max)
	if err != nil {
		d.sightings.WithLabelValues(sightFailed).Add(float64(n))
		return fmt.Errorf("record %d discovered machines: %w", len(batch), err)
	}
	// Refused MACs were new, seen once or more: count them as machines.
	d.sightings.WithLabelValues(sightRefused).Add(float64(refused))
	d.sightings.WithLabelValues(sightRecorded).Add(float64(n - int64(refused)))
	return nil
}

// discovering reports whether unknown machines are recorded.
func (s *Services) discovering() bool { return s.boot.UnknownClients == UnknownDiscover }

// discover records a sighting of the unknown machine of a DHCP query, or
// of a script request from peer.
func (s *Services) discover(mac string, q host.Query, peer string) {
	m, err := store.CanonicalMAC(mac)
	if err != nil {
		return
	}
	d := store.DiscoveredMachine{MAC: m, LastSeen: time.Now(), FirstSeen: time.Now(),
		Arch: q.Arch, VendorClass: q.VendorClass, UserClass: q.UserClass}
	if a, err := netip.ParseAddr(peer); err == nil && !a.IsUnspecified() {
		d.Address = a.Unmap()
	}
	s.disc.see(d)
}

// RunDiscovery writes the sightings of unknown machines (unknown_clients
// = "discover") every DefaultDiscoveryFlush until ctx ends, then once more
// (within a few seconds) so that none seen before the end is lost. It
// returns at once when the services do not discover. Run it before the
// protocol plugins start and let it return before the store closes.
func (s *Services) RunDiscovery(ctx context.Context) {
	if !s.discovering() {
		return
	}
	t := time.NewTicker(s.disc.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.disc.flush(fctx); err != nil {
				s.logger.Warn("discovered machines not recorded at stop", "error", err)
			}
			return
		case <-t.C:
			if err := s.disc.flush(ctx); err != nil {
				s.logger.Warn("discovered machines not recorded; they are recorded when they ask again", "error", err)
			}
		}
	}
}

// FlushDiscovered writes the pending sightings now (tests, and an admin
// view that must be current).
func (s *Services) FlushDiscovered(ctx context.Context) error { return s.disc.flush(ctx) }
