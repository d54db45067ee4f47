package hostservices_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

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

// TestDualStackBinding: pc-01 boots over IPv4 (a DHCPv4 lease), then its
// OS gets a DHCPv6 lease. Its script, per-client files, /boot/done
// (BoundClient) and iSCSI target (AllowedAddresses) answer both
// addresses, each matching the binding of its own family; a second
// machine is refused from both of its addresses, also after it leases
// pc-01's old IPv6 address.
func TestDualStackBinding(t *testing.T) {
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger())
	ctx := context.Background()
	const mac, other = "52:54:00:aa:00:01", "52:54:00:cc:00:09"
	const v4, v6, v6b = "10.0.0.51", "fd00:77::51", "fd00:77::52"
	const x4, x6 = "10.0.0.66", "fd00:77::66"
	commit := func(m, addr string, state ...string) {
		t.Helper()
		st := host.LeaseBound
		if len(state) > 0 {
			st = state[0]
		}
		rs, err := s.Commit(ctx, []host.Lease{{Pool: "lan", Address: addr, MAC: m, Expires: time.Now().Add(time.Hour), State: st}})
		if err != nil || len(rs) != 1 || !rs[0].OK {
			t.Fatalf("commit %s to %s: %+v, %v", addr, m, rs, err)
		}
	}
	commit(mac, v4)
	commit(mac, v6)
	commit(other, x4)
	commit(other, x6)
	check := func(when string, want map[string]bool) {
		t.Helper()
		for peer, ok := range want {
			if sc, err := s.Script(ctx, host.ScriptQuery{MAC: mac, Peer: peer}); err != nil || sc.Found != ok {
				t.Errorf("%s: script from %s: found %v (%v), want %v", when, peer, sc.Found, err, ok)
			}
			if got := s.BoundClient(ctx, "pc-01", peer); got != ok {
				t.Errorf("%s: BoundClient(pc-01, %s) = %v, want %v", when, peer, got, ok)
			}
		}
	}
	check("dual stack", map[string]bool{v4: true, v6: true, x4: false, x6: false})
	d, err := s.Lookup(ctx, host.Query{Target: prefix + ":pc-01", Peer: v4})
	if err != nil || !slices.Equal(d.AllowedAddresses, []string{v4, v6}) {
		t.Errorf("iSCSI decision: AllowedAddresses %v, %v; want [%s %s]", d.AllowedAddresses, err, v4, v6)
	}

	// A new DHCPv6 lease moves the IPv6 binding, not the IPv4 one; the
	// old one is released and the second machine leases it.
	commit(mac, v6b)
	commit(mac, v6, host.LeaseReleased)
	commit(other, v6)
	check("after the IPv6 leases moved", map[string]bool{v4: true, v6b: true, v6: false, x4: false, x6: false})
	d, err = s.Lookup(ctx, host.Query{Target: prefix + ":pc-01", Peer: v4})
	if err != nil || !slices.Equal(d.AllowedAddresses, []string{v4, v6b}) {
		t.Errorf("iSCSI decision: AllowedAddresses %v, %v; want [%s %s]", d.AllowedAddresses, err, v4, v6b)
	}
}
