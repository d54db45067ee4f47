package dhcp6d

import (
	"context"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/host/clienttable"
)

// The known clients come from the host as a pushed table
// (sdk/host/clienttable): while it is live a packet is decided from it in
// memory, an unknown MAC by the host's unknown_clients policy (ignore: no
// answer; discover: no answer and a dhcp_unknown event; register: a
// Lookup, which creates the client). When it is not live, the host is
// asked per packet (Lookup).

// follow keeps s.known live until ctx ends.
func (s *server) follow(ctx context.Context, w host.ClientWatcher) {
	s.known.Follow(ctx, w, s.logger, nil)
}

// lookupTimeout bounds one boot decision asked of the host.
const lookupTimeout = 3 * time.Second

// decide is who the client is: from the pushed table when it is live,
// else asked of the host.
func (s *server) decide(ctx context.Context, c client) (host.Decision, error) {
	if s.clients == nil {
		return host.Decision{}, nil
	}
	if d, policy, live := s.known.Get(c.mac); live {
		if d.Known || !c.firmware() {
			return d, nil // an OS's DHCP client is never registered nor discovered
		}
		switch policy {
		case clienttable.PolicyRegister:
			// The host must create the client before an answer can name it.
		case clienttable.PolicyDiscover:
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
	s.m.table.Lookups.Inc()
	return s.clients.Lookup(lctx, q)
}

// lastDecision is mac's decision without asking the host (Release and
// Decline events): the pushed table's, or none.
func (s *server) lastDecision(mac string) host.Decision {
	d, _, _ := s.known.Get(mac)
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
