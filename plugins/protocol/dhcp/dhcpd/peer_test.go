package dhcpd

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/dls-project/dls/sdk/host"
	"github.com/insomniacslk/dhcp/iana"
)

// queryLog records the host queries the server makes.
type queryLog struct {
	host.Clients
	mu sync.Mutex
	qs []host.Query
}

func (l *queryLog) Lookup(ctx context.Context, q host.Query) (host.Decision, error) {
	l.mu.Lock()
	l.qs = append(l.qs, q)
	l.mu.Unlock()
	return l.Clients.Lookup(ctx, q)
}

// TestLookupTellsWhereTheRequestCameFrom: the host is told the relay
// (giaddr) of a relayed request, the source address of one that has one,
// and nothing for a broadcast from 0.0.0.0 (unknown_clients = "discover"
// records it as the machine's address).
func TestLookupTellsWhereTheRequestCameFrom(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Pools = append(c.Pools, Pool{Name: "far", Start: "10.9.0.10", End: "10.9.0.20", Netmask: "255.255.255.0", Router: "10.9.0.1"})
	})
	log := &queryLog{Clients: e.srv.clients}
	e.srv.clients = log
	e.in(discover("52:54:00:00:00:61", pxe(iana.EFI_X86_64), relayed("10.9.0.1")))
	e.inFrom(discover("52:54:00:00:00:62", pxe(iana.INTEL_X86PC)), packetInfo{src: netip.MustParseAddrPort("0.0.0.0:68")})
	e.inFrom(discover("52:54:00:00:00:63", pxe(iana.INTEL_X86PC)), packetInfo{src: netip.MustParseAddrPort("10.0.0.150:68")})
	want := map[string]string{"52:54:00:00:00:61": "10.9.0.1", "52:54:00:00:00:62": "", "52:54:00:00:00:63": "10.0.0.150"}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.qs) != 3 {
		t.Fatalf("queries %+v", log.qs)
	}
	for _, q := range log.qs {
		if q.Peer != want[q.MAC] || q.VendorClass == "" {
			t.Errorf("query of %s: Peer %q, vendor class %q; want Peer %q", q.MAC, q.Peer, q.VendorClass, want[q.MAC])
		}
	}
}
