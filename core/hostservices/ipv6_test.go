package hostservices_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// TestIPv6Binding: on an IPv6 boot network a machine's script, its
// per-client files and its iSCSI target answer the IPv6 address its boot
// is bound to (here by first use after a proxy answer: the state store
// takes IPv4 leases only until DHCPv6 leases land; bootbind's own test
// binds IPv6 leases), whatever zone a plugin's peer carries, and no other
// address; the script names the target with a bracketed literal.
func TestIPv6Binding(t *testing.T) {
	b := hostservices.Boot{URL: "http://[fd00:77::1]:9184", IQNPrefix: prefix, ServerAddress: "fd00:77::1", ISCSIPort: 3260}
	s := hostservices.New(b, bootStore(t), nil, hclog.NewNullLogger())
	ctx := context.Background()
	const mac, addr = "52:54:00:aa:00:01", "fd00:77::101"
	if sc, err := s.Script(ctx, host.ScriptQuery{MAC: mac, Peer: addr}); err != nil || sc.Found {
		t.Fatalf("script before any binding: %+v, %v", sc, err)
	}
	_ = s.Report(ctx, []host.Event{{Type: host.EventDHCPOffer, MAC: mac, Client: "pc-01", Attrs: map[string]string{host.AttrProxy: "true"}}})
	// First use, from the address with the zone a TFTP peer carries.
	if sc, err := s.Script(ctx, host.ScriptQuery{MAC: mac, Peer: addr + "%br0"}); err != nil || !sc.Found {
		t.Fatalf("first use after the proxy answer: %+v, %v", sc, err)
	}
	for _, tc := range []struct {
		peer string
		want bool
	}{
		{addr, true}, {"fd00:77:0:0::101", true}, {addr + "%br0", true},
		{"fd00:77::102", false}, {"fe80::101%br0", false}, {"10.0.0.1", false}, {"[" + addr + "]", false},
	} {
		sc, err := s.Script(ctx, host.ScriptQuery{MAC: mac, Peer: tc.peer})
		if err != nil || sc.Found != tc.want {
			t.Errorf("script from %s: found %v (%v), want %v", tc.peer, sc.Found, err, tc.want)
		}
		if tc.want && !strings.Contains(sc.Body, "\nsanboot iscsi:[fd00:77::1]::3260:0:"+prefix+":pc-01\n") {
			t.Errorf("script from %s:\n%s", tc.peer, sc.Body)
		}
		if got := s.BoundClient(ctx, "pc-01", tc.peer); got != tc.want {
			t.Errorf("BoundClient(pc-01, %s) = %v, want %v", tc.peer, got, tc.want)
		}
	}
	d, err := s.Lookup(ctx, host.Query{Target: prefix + ":pc-01", Peer: addr})
	if err != nil || !slices.Equal(d.AllowedAddresses, []string{addr}) {
		t.Errorf("iSCSI decision: AllowedAddresses %v, %v; want [%s]", d.AllowedAddresses, err, addr)
	}
}
