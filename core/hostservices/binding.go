package hostservices

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/dls-project/dls/core/bootbind"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of dls_boot_refused_total: why a boot request got "not found".
const (
	// RefusedNotBound: a script asked from an address not bound to the
	// MAC's boot (or a MAC that does not parse).
	RefusedNotBound = "not_bound"
	// RefusedUnknown: a bound requester, but no client has the MAC (and
	// unknown_clients does not register it).
	RefusedUnknown = "unknown"
	// RefusedFileNotBound: a per-client file asked from an address not
	// bound to that client's boot.
	RefusedFileNotBound = "file_not_bound"
	// RefusedDoneNotBound: /boot/done from an address not bound to the
	// boot of the token's client.
	RefusedDoneNotBound = "done_not_bound"
)

var refusedReasons = []string{RefusedNotBound, RefusedUnknown, RefusedFileNotBound, RefusedDoneNotBound}

func newRefusedCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dls_boot_refused_total",
		Help: "Boot requests answered as not found because the requester is not bound to the machine's boot, by reason (not_bound, unknown, file_not_bound, done_not_bound).",
	}, []string{"reason"})
	for _, r := range refusedReasons {
		c.WithLabelValues(r)
	}
	return c
}

// RegisterMetrics registers the services' metrics (dls_boot_refused_total,
// dls_discovery_sightings_total, dls_volumes_pending).
func (s *Services) RegisterMetrics(reg prometheus.Registerer) error {
	if err := reg.Register(s.refused); err != nil {
		return fmt.Errorf("register boot refusal metrics: %w", err)
	}
	if err := reg.Register(s.disc.sightings); err != nil {
		return fmt.Errorf("register discovery metrics: %w", err)
	}
	if err := reg.Register(s.newPendingGauge()); err != nil {
		return fmt.Errorf("register volume preparation metrics: %w", err)
	}
	return nil
}

// Refused counts a boot request refused for reason (one of the Refused*
// values); the /boot handlers call it for files and /boot/done.
func (s *Services) Refused(reason string) {
	s.refused.WithLabelValues(reason).Inc()
}

// peerAddr parses a requester's address; IPv4-mapped IPv6 is unmapped
// and an IPv6 zone dropped ("fe80::1%br0" is fe80::1): leases and the
// iSCSI plugin's logins carry none, and a plugin's peer may.
func peerAddr(peer string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(peer)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

// bindings returns the binding index, filled once from the store's leases
// (a host that restarts keeps its machines' bindings); after that every
// lease passes through Commit, which keeps it current. Until the store
// answers, nothing is bound.
func (s *Services) bindings(ctx context.Context) *bootbind.Index {
	if s.loaded.Load() { // every script request and lease commit: no lock once loaded
		return s.bind
	}
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.loaded.Load() {
		return s.bind
	}
	ls, err := s.leases.LoadLeases(ctx, "")
	if err != nil {
		s.logger.Warn("leases not loaded for boot binding; retried at the next request", "error", err)
		return s.bind
	}
	for _, l := range ls {
		if l.State == store.LeaseBound {
			s.bind.Lease(l.MAC, l.Address, l.Expires, true)
		}
	}
	s.loaded.Store(true)
	return s.bind
}

// BoundClient reports whether peer is the address bound to the boot of
// the client named client: for its per-client files and /boot/done. An
// unbound peer costs no store query.
func (s *Services) BoundClient(ctx context.Context, client, peer string) bool {
	a, ok := peerAddr(peer)
	if !ok {
		return false
	}
	mac, ok := s.bindings(ctx).MACAt(a)
	if !ok {
		return false
	}
	c, err := s.clients.GetClient(ctx, client)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.logger.Warn("boot binding: client not read", "client", client, "error", err)
		}
		return false
	}
	return c.MAC == mac
}

// LiveSession reports whether the client named client has a live iSCSI
// session (as its plugin reported logins and logouts since the start).
func (s *Services) LiveSession(ctx context.Context, client string) bool {
	c, err := s.clients.GetClient(ctx, client)
	if err != nil {
		return false
	}
	return s.bind.Live(c.MAC)
}

// observeBinding feeds the binding index from one event: proxy answers
// open a first use; iSCSI logins and logouts keep a binding while the
// session lives.
func (s *Services) observeBinding(ctx context.Context, e host.Event) {
	switch e.Type {
	case host.EventDHCPOffer, host.EventDHCPAck:
		if e.Attrs[host.AttrProxy] != "true" {
			return
		}
		if mac, err := store.CanonicalMAC(e.MAC); err == nil {
			s.bind.Proxy(mac)
		}
	case host.EventISCSILogin, host.EventISCSILogout:
		a, ok := peerAddr(e.Address)
		if !ok || e.Client == "" {
			return
		}
		c, err := s.clients.GetClient(ctx, e.Client)
		if err != nil {
			s.logger.Warn("boot binding: client of an iSCSI session not read", "client", e.Client, "error", err)
			return
		}
		if e.Type == host.EventISCSILogin {
			s.bind.Login(c.MAC, a)
		} else {
			s.bind.Logout(c.MAC, a)
		}
	}
}

// boundAddresses are the addresses bound to client c's boot: none, or
// one of each family (IPv4 first).
func (s *Services) boundAddresses(ctx context.Context, c store.Client) []netip.Addr {
	return s.bindings(ctx).Addrs(c.MAC)
}

// allowedAddresses are the addresses a Normal iSCSI session of client c
// may come from (Decision.AllowedAddresses): those bound to its boot (its
// IPv4 and its IPv6 binding: the peer matches the one of its family),
// then its extra_addresses (for its extra initiators, e.g. a second
// path).
func allowedAddresses(c store.Client, bound []netip.Addr) []string {
	out := make([]string, 0, len(bound)+len(c.ExtraAddresses))
	for _, a := range bound {
		out = append(out, a.String())
	}
	for _, a := range c.ExtraAddresses {
		if !slices.Contains(bound, a) {
			out = append(out, a.String())
		}
	}
	return out
}

// commitBound refuses, before the store sees them, bound leases of an
// address that has a live iSCSI session of another MAC (naming it as the
// holder), commits the rest, and binds what the store accepted.
func (s *Services) commitBound(ctx context.Context, in []store.Lease) ([]host.CommitResult, error) {
	x := s.bindings(ctx)
	out := make([]host.CommitResult, len(in))
	pass := make([]store.Lease, 0, len(in))
	idx := make([]int, 0, len(in))
	for i, l := range in {
		mac, err := store.CanonicalMAC(l.MAC)
		if err != nil {
			return nil, fmt.Errorf("commit leases: lease %d: %w", i, err)
		}
		in[i].MAC = mac
		if holder, ok := x.Holder(l.Address); ok && holder != mac && l.State == store.LeaseBound {
			out[i] = host.CommitResult{OK: false, Holder: holder}
			continue
		}
		pass = append(pass, in[i])
		idx = append(idx, i)
	}
	if len(pass) == 0 {
		return out, nil
	}
	rs, err := s.leases.CommitLeases(ctx, pass)
	if err != nil {
		return nil, err
	}
	for j, r := range rs {
		i := idx[j]
		out[i] = host.CommitResult{OK: r.OK, Holder: r.Holder}
		if r.OK {
			l := pass[j]
			x.Lease(l.MAC, l.Address, l.Expires, l.State == store.LeaseBound)
		}
	}
	return out, nil
}
