package hostservices_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// refusedCount reads dls_boot_refused_total{reason} from reg.
func refusedCount(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dls_boot_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no dls_boot_refused_total{reason=%q}", reason)
	return 0
}

func withMetrics(t *testing.T, s *hostservices.Services) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := s.RegisterMetrics(reg); err != nil {
		t.Fatal(err)
	}
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Errorf("metrics lint: %v %+v", err, probs)
	}
	return reg
}

// TestScriptOnlyToTheLeasedAddress: two machines; A's script goes to A's
// leased address only; the other address gets not found, counted, and
// nothing is rendered (no boot token issued) or registered.
func TestScriptOnlyToTheLeasedAddress(t *testing.T) {
	st := bootStore(t)
	fs := &fakeSessions{}
	b := boot
	b.UnknownClients, b.DefaultImage = hostservices.UnknownRegister, "lab"
	s := hostservices.New(b, st, nil, hclog.NewNullLogger(), hostservices.WithSessions(fs))
	reg := withMetrics(t, s)
	ctx := context.Background()

	// Before any lease: nobody, not even the machine itself.
	if sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52:54:00:aa:00:02", Peer: "10.0.0.2"}); err != nil || sc.Found {
		t.Fatalf("script without a lease: %+v, %v", sc, err)
	}
	a := leaseOf(t, s, "52:54:00:aa:00:02")
	for _, mac := range []string{"52:54:00:aa:00:02", "52-54-00-AA-00-02", "525400aa0002"} {
		sc, err := s.Script(ctx, host.ScriptQuery{MAC: mac, Peer: "10.0.0.66"})
		if err != nil || sc.Found || sc.Body != "" || sc.Client != "" {
			t.Errorf("script of A (%s) to another address: %+v, %v", mac, sc, err)
		}
	}
	fs.mu.Lock()
	tokens := len(fs.tokens)
	fs.mu.Unlock()
	if tokens != 0 {
		t.Errorf("a refused request issued a boot token: %v", fs.tokens)
	}
	if got := refusedCount(t, reg, hostservices.RefusedNotBound); got != 4 {
		t.Errorf("not_bound = %v, want 4", got)
	}
	// The IPv4-mapped form of the leased address is that address.
	for _, peer := range []string{a, "::ffff:" + a} {
		if sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52-54-00-aa-00-02", Peer: peer}); err != nil || !sc.Found || sc.Client != "pc-02" {
			t.Errorf("script of A to its own address %s: %+v, %v", peer, sc, err)
		}
	}

	// register mode: an unbound requester registers nothing.
	if sc, _ := s.Script(ctx, host.ScriptQuery{MAC: "52:54:00:bb:00:07", Peer: "10.0.0.66"}); sc.Found {
		t.Errorf("unknown MAC from an unbound address: %+v", sc)
	}
	if _, err := st.ClientByMAC(ctx, "52:54:00:bb:00:07"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("registered from an unbound requester: %v", err)
	}
	if audit, _ := st.ListAudit(ctx, 10); len(audit) != 0 {
		t.Errorf("audit after refusals: %+v", audit)
	}
	if probs, err := testutil.GatherAndLint(reg); err != nil || len(probs) > 0 {
		t.Errorf("metrics lint: %v %+v", err, probs)
	}
}

// TestLeaseEndsTheBinding: a released lease ends the binding unless a
// live iSCSI session from the address goes on; the session's end ends it.
func TestLeaseEndsTheBinding(t *testing.T) {
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger())
	ctx := context.Background()
	a := leaseOf(t, s, "52:54:00:aa:00:01")
	release := func() {
		rs, err := s.Commit(ctx, []host.Lease{{Pool: "lan", Address: a, MAC: "52:54:00:aa:00:01", Expires: time.Now().Add(time.Hour), State: host.LeaseReleased}})
		if err != nil || !rs[0].OK {
			t.Fatalf("release: %+v %v", rs, err)
		}
	}
	found := func() bool {
		sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52:54:00:aa:00:01", Peer: a})
		if err != nil {
			t.Fatal(err)
		}
		return sc.Found
	}
	release()
	if found() {
		t.Error("script after the lease was released")
	}
	leaseOf(t, s, "52:54:00:aa:00:01")
	if err := s.Report(ctx, []host.Event{{Type: host.EventISCSILogin, Client: "pc-01", Address: a}}); err != nil {
		t.Fatal(err)
	}
	release()
	if !found() {
		t.Error("the binding ended with the lease while an iSCSI session lives")
	}
	if err := s.Report(ctx, []host.Event{{Type: host.EventISCSILogout, Client: "pc-01", Address: a}}); err != nil {
		t.Fatal(err)
	}
	if found() {
		t.Error("script after the lease and the session ended")
	}
}

// TestProxyFirstUse: after a proxy answer (reported with the proxy
// attribute), the first requester is bound; the next from elsewhere is
// refused; a DHCP answer without the attribute opens nothing.
func TestProxyFirstUse(t *testing.T) {
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger())
	reg := withMetrics(t, s)
	ctx := context.Background()
	q := func(peer string) bool {
		sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52-54-00-aa-00-01", Peer: peer})
		if err != nil {
			t.Fatal(err)
		}
		return sc.Found
	}
	_ = s.Report(ctx, []host.Event{{Type: host.EventDHCPOffer, MAC: "52:54:00:aa:00:01", Client: "pc-01"}})
	if q("192.168.1.20") {
		t.Fatal("bound after a full-mode offer (no lease, no proxy attribute)")
	}
	_ = s.Report(ctx, []host.Event{{Type: host.EventDHCPAck, MAC: "52:54:00:aa:00:01", Client: "pc-01", Attrs: map[string]string{host.AttrProxy: "true"}}})
	if !q("192.168.1.20") {
		t.Fatal("first use after the proxy answer refused")
	}
	if q("192.168.1.66") {
		t.Error("a second address got the script after the first use")
	}
	if !q("192.168.1.20") {
		t.Error("the bound address lost its binding")
	}
	if got := refusedCount(t, reg, hostservices.RefusedNotBound); got != 2 {
		t.Errorf("not_bound = %v, want 2", got)
	}
	// iSCSI decisions name the bound address.
	d, err := s.Lookup(ctx, host.Query{Target: prefix + ":pc-01", Peer: "192.168.1.20"})
	if err != nil || !slices.Equal(d.AllowedAddresses, []string{"192.168.1.20"}) {
		t.Errorf("AllowedAddresses = %v, %v", d.AllowedAddresses, err)
	}
	if d, _ := s.Lookup(ctx, host.Query{Initiator: prefix + ":initiator:pc-02"}); len(d.AllowedAddresses) != 0 {
		t.Errorf("unbound client's AllowedAddresses = %v", d.AllowedAddresses)
	}
	if d, _ := s.Lookup(ctx, host.Query{MAC: "52:54:00:aa:00:01"}); len(d.AllowedAddresses) != 0 {
		t.Errorf("a DHCP decision carries AllowedAddresses %v", d.AllowedAddresses)
	}
}

// TestLiveSessionAddressIsNotLeasedToAnother: an address with a live
// iSCSI session of A is refused to another MAC (naming A), even after A's
// lease was released; A renewing is fine.
func TestLiveSessionAddressIsNotLeasedToAnother(t *testing.T) {
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger())
	ctx := context.Background()
	a := leaseOf(t, s, "52:54:00:aa:00:01")
	_ = s.Report(ctx, []host.Event{{Type: host.EventISCSILogin, Client: "pc-01", Address: a}})
	exp := time.Now().Add(time.Hour)
	rs, err := s.Commit(ctx, []host.Lease{
		{Pool: "lan", Address: a, MAC: "52:54:00:aa:00:01", Expires: exp, State: host.LeaseReleased},
		{Pool: "lan", Address: a, MAC: "52:54:00:cc:00:09", Expires: exp, State: host.LeaseBound},
		{Pool: "lan", Address: "10.0.0.200", MAC: "52:54:00:cc:00:09", Expires: exp, State: host.LeaseBound},
		{Pool: "lan", Address: a, MAC: "52-54-00-AA-00-01", Expires: exp, State: host.LeaseBound},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []host.CommitResult{{OK: true}, {OK: false, Holder: "52:54:00:aa:00:01"}, {OK: true}, {OK: true}}
	if !slices.Equal(rs, want) {
		t.Errorf("Commit = %+v, want %+v", rs, want)
	}
	ls, _ := s.Load(ctx, "lan")
	for _, l := range ls {
		if l.Address == a && l.MAC != "52:54:00:aa:00:01" {
			t.Errorf("the live session's address was stored for %s", l.MAC)
		}
	}
	_ = s.Report(ctx, []host.Event{{Type: host.EventISCSILogout, Client: "pc-01", Address: a}})
	if rs, _ = s.Commit(ctx, []host.Lease{{Pool: "lan", Address: a, MAC: "52:54:00:aa:00:01", Expires: exp, State: host.LeaseReleased}}); !rs[0].OK {
		t.Fatalf("release: %+v", rs)
	}
	if rs, _ = s.Commit(ctx, []host.Lease{{Pool: "lan", Address: a, MAC: "52:54:00:cc:00:09", Expires: exp, State: host.LeaseBound}}); !rs[0].OK {
		t.Errorf("address refused after the session ended and the lease was released: %+v", rs)
	}
}

// TestBoundClient: per-client files and /boot/done ask whether a peer is
// bound to a client's boot.
func TestBoundClient(t *testing.T) {
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger())
	ctx := context.Background()
	a := leaseOf(t, s, "52:54:00:aa:00:02")
	for _, tc := range []struct {
		client, peer string
		want         bool
	}{
		{"pc-02", a, true}, {"pc-02", "::ffff:" + a, true}, {"pc-01", a, false},
		{"pc-02", "10.0.0.66", false}, {"pc-99", a, false}, {"pc-02", "not an address", false},
	} {
		if got := s.BoundClient(ctx, tc.client, tc.peer); got != tc.want {
			t.Errorf("BoundClient(%s, %s) = %v, want %v", tc.client, tc.peer, got, tc.want)
		}
	}
}

// TestLoaderFailureNeedsTokenAndBinding: a boot loader's boot_failed
// fails its session only with the boot's token and from the address
// bound to that boot; a second machine that sniffed or guessed cannot,
// and the token never stays in the events the host keeps.
func TestLoaderFailureNeedsTokenAndBinding(t *testing.T) {
	fs := &fakeSessions{}
	s := hostservices.New(boot, bootStore(t), nil, hclog.NewNullLogger(), hostservices.WithSessions(fs))
	ctx := context.Background()
	a := leaseOf(t, s, "52:54:00:aa:00:02")
	tok, _ := fs.Token(ctx, "pc-02")
	report := func(addr, token string) {
		t.Helper()
		err := s.Report(ctx, []host.Event{{Type: host.EventBootFailed, Address: addr, Attrs: map[string]string{host.AttrToken: token, host.AttrStage: "grub"}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	report("10.0.0.66", tok) // the right token from another machine
	report(a, "tok-guess")   // the bound address with a wrong one
	if len(fs.failed) != 0 {
		t.Fatalf("failed without token and binding: %v", fs.failed)
	}
	report(a, tok)
	if fs.failed["pc-02"] != "grub" {
		t.Fatalf("failed = %v, want pc-02 at grub", fs.failed)
	}
	for _, e := range s.Recent() {
		if _, ok := e.Attrs[host.AttrToken]; ok || strings.Contains(fmt.Sprint(e.Attrs), tok) {
			t.Errorf("kept event holds the token: %+v", e)
		}
	}
	if last := s.Recent()[len(s.Recent())-1]; last.Client != "pc-02" || last.Attrs[host.AttrStage] != "grub" {
		t.Errorf("kept event %+v, want client pc-02, stage grub", last)
	}
}

// TestBindingsFromTheStore: a host that starts with leases in the store
// (a restart) binds them at once.
func TestBindingsFromTheStore(t *testing.T) {
	st := bootStore(t)
	ctx := context.Background()
	if _, err := st.CommitLeases(ctx, []store.Lease{{Pool: "lan", Address: mustAddr("10.0.0.51"), MAC: "52:54:00:aa:00:01", Expires: time.Now().Add(time.Hour), State: store.LeaseBound}}); err != nil {
		t.Fatal(err)
	}
	s := hostservices.New(boot, st, nil, hclog.NewNullLogger())
	sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52:54:00:aa:00:01", Peer: "10.0.0.51"})
	if err != nil || !sc.Found || !strings.HasPrefix(sc.Body, "#!ipxe") {
		t.Errorf("script from the stored lease's address: %+v, %v", sc, err)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestExtraAddressesAllowed: a client's extra_addresses follow the bound
// address in iSCSI decisions, and stand alone while no boot is bound.
func TestExtraAddressesAllowed(t *testing.T) {
	st := bootStore(t)
	ctx := context.Background()
	c, err := st.GetClient(ctx, "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	c.ExtraAddresses = []netip.Addr{netip.MustParseAddr("10.7.0.5"), netip.MustParseAddr("fd00::5")}
	if err := st.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	s := hostservices.New(boot, st, nil, hclog.NewNullLogger())
	d, err := s.Lookup(ctx, host.Query{Target: prefix + ":pc-01"})
	if err != nil || !slices.Equal(d.AllowedAddresses, []string{"10.7.0.5", "fd00::5"}) {
		t.Errorf("unbound: AllowedAddresses = %v, %v", d.AllowedAddresses, err)
	}
	a := leaseOf(t, s, "52:54:00:aa:00:01")
	d, err = s.Lookup(ctx, host.Query{Target: prefix + ":pc-01"})
	if err != nil || !slices.Equal(d.AllowedAddresses, []string{a, "10.7.0.5", "fd00::5"}) {
		t.Errorf("bound: AllowedAddresses = %v, %v; want %s first", d.AllowedAddresses, err, a)
	}
}
