package hostservices_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// countingStore counts the store writes of discovery.
type countingStore struct {
	store.Store
	records atomic.Int64
}

func (c *countingStore) RecordDiscovered(ctx context.Context, ms []store.DiscoveredMachine, max int) (int, error) {
	c.records.Add(1)
	return c.Store.RecordDiscovered(ctx, ms, max)
}

func discoverServices(t *testing.T, max int) (*hostservices.Services, *countingStore, *prometheus.Registry) {
	t.Helper()
	st := &countingStore{Store: bootStore(t)}
	b := boot
	b.UnknownClients, b.MaxDiscovered = hostservices.UnknownDiscover, max
	s := hostservices.New(b, st, resolver{err: errNoStorage}, hclog.NewNullLogger())
	return s, st, withMetrics(t, s)
}

// sightings reads dls_discovery_sightings_total{result} from reg.
func sightings(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "dls_discovery_sightings_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no dls_discovery_sightings_total{result=%q}", result)
	return 0
}

// TestDiscoverRecordsUnknownFirmware: an unknown machine's firmware is
// answered unknown and recorded with what it told; an OS's DHCP client and
// a known client are not recorded; a storm of one MAC is one row, written
// at the flush, not per request.
func TestDiscoverRecordsUnknownFirmware(t *testing.T) {
	s, st, reg := discoverServices(t, 0)
	ctx := context.Background()
	const mac = "52:54:00:bb:00:01"
	for i := range 500 {
		q := host.Query{MAC: mac, Arch: 7, VendorClass: "PXEClient:Arch:00007:UNDI:003016", Peer: "10.9.0.1"}
		if i == 499 {
			q = host.Query{MAC: mac, UserClass: "iPXE", Peer: "0.0.0.0"} // iPXE, later; no address told
		}
		d, err := s.Lookup(ctx, q)
		if err != nil || d.Known {
			t.Fatalf("Lookup(unknown) = %+v, %v; want unknown", d, err)
		}
	}
	for _, q := range []host.Query{
		{MAC: "52:54:00:bb:00:02"},                                      // an OS's DHCP client
		{MAC: "52:54:00:aa:00:01", VendorClass: "PXEClient:Arch:00000"}, // a client
	} {
		if _, err := s.Lookup(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.records.Load(); n != 0 {
		t.Fatalf("%d store writes before the flush, want 0 (write-behind)", n)
	}
	if err := s.FlushDiscovered(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.records.Load(); n != 1 {
		t.Errorf("%d store writes for 500 requests, want 1", n)
	}
	ms, err := st.ListDiscovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 {
		t.Fatalf("discovered %+v, want only %s", ms, mac)
	}
	m := ms[0]
	if m.MAC != mac || m.Count != 500 || m.Arch != 7 || m.VendorClass != "PXEClient:Arch:00007:UNDI:003016" ||
		m.UserClass != "iPXE" || m.Address != netip.MustParseAddr("10.9.0.1") || m.FirstSeen.After(m.LastSeen) {
		t.Errorf("discovered %+v", m)
	}
	if got := sightings(t, reg, "recorded"); got != 500 {
		t.Errorf("recorded sightings %v, want 500", got)
	}
	// An empty flush writes nothing.
	if err := s.FlushDiscovered(ctx); err != nil || st.records.Load() != 1 {
		t.Errorf("empty flush: %d writes, %v", st.records.Load(), err)
	}
}

// TestDiscoverBounded: a flood of spoofed MACs is bounded in memory
// (pending sightings) and in the store (boot.max_discovered), and counted.
func TestDiscoverBounded(t *testing.T) {
	s, st, reg := discoverServices(t, 100)
	ctx := context.Background()
	for i := range 1200 {
		mac := fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)
		if _, err := s.Lookup(ctx, host.Query{MAC: mac, VendorClass: "PXEClient"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FlushDiscovered(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := st.ListDiscovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 100 {
		t.Errorf("%d machines recorded, want the bound 100", len(ms))
	}
	rec, ref, drop := sightings(t, reg, "recorded"), sightings(t, reg, "refused"), sightings(t, reg, "dropped")
	if rec != 100 || rec+ref != 1024 || drop != 1200-1024 {
		t.Errorf("sightings recorded %v refused %v dropped %v; want 100, 924, 176", rec, ref, drop)
	}
}

// TestDiscoverScriptAndRun: a bound requester's script request for an
// unknown MAC is recorded with its address; RunDiscovery writes on its
// tick and once more when it stops. Ignore mode records nothing.
func TestDiscoverScriptAndRun(t *testing.T) {
	s, st, _ := discoverServices(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.RunDiscovery(ctx) }()

	const mac = "52:54:00:bb:00:09"
	sc, err := s.Script(ctx, host.ScriptQuery{MAC: mac, Peer: leaseOf(t, s, mac)})
	if err != nil || sc.Found {
		t.Fatalf("Script(unknown) = %+v, %v; want not found", sc, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m, err := st.GetDiscovered(context.Background(), mac); err == nil {
			if m.Address != netip.MustParseAddr("10.0.0.9") || m.Count != 1 {
				t.Errorf("discovered %+v, want address 10.0.0.9, count 1", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("script request of an unknown MAC not recorded within 5 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Seen just before the stop: written by the last flush.
	if _, err := s.Lookup(context.Background(), host.Query{MAC: "52:54:00:bb:00:0a", VendorClass: "HTTPClient"}); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, err := st.GetDiscovered(context.Background(), "52:54:00:bb:00:0a"); err != nil {
		t.Errorf("sighting before the stop: %v", err)
	}

	ignore, ist := newServices(t)
	if _, err := ignore.Lookup(context.Background(), host.Query{MAC: "52:54:00:bb:00:0b", VendorClass: "PXEClient"}); err != nil {
		t.Fatal(err)
	}
	_ = ignore.FlushDiscovered(context.Background())
	if ms, err := ist.ListDiscovered(context.Background()); err != nil || len(ms) != 0 {
		t.Errorf("ignore mode recorded %+v, %v", ms, err)
	}
}

// TestLiveSession: a client is live between its iSCSI login and logout
// (a rename waits for that).
func TestLiveSession(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	if s.LiveSession(ctx, "pc-01") {
		t.Fatal("live before any login")
	}
	ev := host.Event{Type: host.EventISCSILogin, Client: "pc-01", Address: "10.0.0.51"}
	if err := s.Report(ctx, []host.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if !s.LiveSession(ctx, "pc-01") || s.LiveSession(ctx, "pc-02") || s.LiveSession(ctx, "nobody") {
		t.Error("after pc-01's login: want pc-01 live only")
	}
	ev.Type = host.EventISCSILogout
	if err := s.Report(ctx, []host.Event{ev}); err != nil {
		t.Fatal(err)
	}
	if s.LiveSession(ctx, "pc-01") {
		t.Error("live after logout")
	}
}
