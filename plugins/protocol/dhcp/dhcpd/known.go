package dhcpd

import (
	"context"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/host/clienttable"
)

// The known clients come from the host as a pushed table
// (sdk/host/clienttable): while it is live, a packet is decided from it
// in memory, an unknown MAC by the host's unknown_clients policy. When it
// is not live (before the first snapshot, after a broken stream until the
// next snapshot, against a host without Watch), packets are decided as
// before: the decision cache, then a synchronous Lookup. Start waits up
// to clienttable.SyncWait for the first snapshot, so that a restarted
// plugin answers from the table from its first packet in the usual case.

// follow keeps s.known live until ctx ends, and the lease table's
// reservations in step with it.
func (s *server) follow(ctx context.Context, w host.ClientWatcher) {
	s.known.Follow(ctx, w, s.logger, func(r clienttable.Reservation) {
		s.table.reserve(r.MAC, parseIP4(r.Address))
	})
}

// fromTable decides mac from the pushed table. ok is false when the
// packet must be decided by Lookup: the table is not live, or the policy
// registers unknown boot firmware.
func (s *server) fromTable(mac string, c client) (host.Decision, bool) {
	if s.known == nil {
		return host.Decision{}, false
	}
	d, policy, live := s.known.Get(mac)
	if !live {
		return host.Decision{}, false
	}
	if d.Known || !c.firmware() {
		return d, true // an OS's DHCP client is never registered nor discovered
	}
	switch policy {
	case clienttable.PolicyRegister:
		return host.Decision{}, false
	case clienttable.PolicyDiscover:
		s.sighted(mac, c)
	}
	return host.Decision{}, true
}

// sighted tells the host, in the next event batch, that unknown boot
// firmware asked.
func (s *server) sighted(mac string, c client) {
	if s.events == nil {
		return
	}
	e := host.Event{Type: host.EventDHCPUnknown, MAC: macString(mac), Address: c.from, Time: time.Now(), Attrs: classAttrs(c)}
	s.events.Emit(e)
}
