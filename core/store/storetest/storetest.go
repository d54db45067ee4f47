// Package storetest is the behaviour every store.Store implementation must
// show (controlplane.go holds the control plane's part, purge.go the
// retention purge's), as a test suite an implementation runs from its own
// tests:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... a new, empty store ... })
//	}
//
// so the SQLite store and a PostgreSQL one answer the host's services
// alike.
package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// Run runs the suite. open must return a new, empty store each time it is
// called; Run closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	fresh := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return s
	}
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"ClientPutGet", testClientPutGet},
		{"ClientUpdate", testClientUpdate},
		{"ClientLookups", testClientLookups},
		{"ClientList", testClientList},
		{"ClientDelete", testClientDelete},
		{"ClientConflicts", testClientConflicts},
		{"ClientInvalid", testClientInvalid},
		{"LeaseCommitLoad", testLeaseCommitLoad},
		{"LeaseRenew", testLeaseRenew},
		{"LeaseConflict", testLeaseConflict},
		{"LeaseExpiredTakeover", testLeaseExpiredTakeover},
		{"LeaseReleasedTakeover", testLeaseReleasedTakeover},
		{"LeaseDeclinedHolds", testLeaseDeclinedHolds},
		{"LeaseBatchMixed", testLeaseBatchMixed},
		{"LeaseBatchSameAddress", testLeaseBatchSameAddress},
		{"LeaseBatchInvalid", testLeaseBatchInvalid},
		{"LeaseIPv6", testLeaseIPv6},
		{"LeaseConcurrent", func(t *testing.T, s store.Store) { testLeaseConcurrent(t, s, s) }},
		{"Audit", testAudit},
		{"ClientCHAP", testClientCHAP},
		{"ClientExtraAddresses", testClientExtraAddresses},
		{"Images", testImages},
		{"ImageLoaders", testImageLoaders},
		{"ImageDelete", testImageDelete},
		{"Sessions", testSessions},
		{"SessionConflictsInvalid", testSessionConflictsInvalid},
		{"SessionList", testSessionList},
		{"SessionListLimit", testSessionListLimit},
		{"SessionPages", testSessionPages},
		{"SessionBatch", testSessionBatch},
		{"ClientBatch", testClientBatch},
		{"Tokens", testTokens},
		{"TokenRotate", testTokenRotate},
		{"TokenRevoke", testTokenRevoke},
		{"TokenCount", testTokenCount},
		{"TokenRotateRace", func(t *testing.T, s store.Store) { testTokenRotateRace(t, s, s) }},
		{"Purge", testPurge},
		{"PurgeBatches", testPurgeBatches},
		{"Discovered", testDiscovered},
		{"DiscoveredBound", testDiscoveredBound},
		{"ClientRename", testClientRename},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, fresh(t)) })
	}
}

// RunShared runs the checks that matter when several hosts share one
// database. open must return two stores over the same new, empty database
// (two Opens of one file, two pools on one PostgreSQL database); RunShared
// closes both.
func RunShared(t *testing.T, open func(t *testing.T) (store.Store, store.Store)) {
	fresh := func(t *testing.T) (store.Store, store.Store) {
		t.Helper()
		a, b := open(t)
		t.Cleanup(func() {
			if err := errors.Join(a.Close(), b.Close()); err != nil {
				t.Errorf("close: %v", err)
			}
		})
		return a, b
	}
	t.Run("ClientVisible", func(t *testing.T) {
		a, b := fresh(t)
		put(t, a, store.Client{Name: "pc-01", MAC: "52:54:00:00:00:01"})
		if _, err := b.ClientByMAC(t.Context(), "52:54:00:00:00:01"); err != nil {
			t.Fatalf("client put through one store, read through the other: %v", err)
		}
		err := b.PutClient(t.Context(), store.Client{Name: "pc-02", MAC: "52:54:00:00:00:01"})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("same MAC through the other store: err = %v, want ErrConflict", err)
		}
	})
	t.Run("LeaseConflict", func(t *testing.T) {
		a, b := fresh(t)
		now := time.Now()
		commitOK(t, a, lease("10.0.0.1", macA, now.Add(time.Hour), store.LeaseBound))
		got := commit(t, b, lease("10.0.0.1", macB, now.Add(time.Hour), store.LeaseBound))
		if got[0] != (store.LeaseResult{Holder: macA}) {
			t.Fatalf("lease held through one store, taken through the other: %+v", got[0])
		}
	})
	t.Run("LeaseConcurrent", func(t *testing.T) {
		a, b := fresh(t)
		testLeaseConcurrent(t, a, b)
	})
	t.Run("TokenRotateRace", func(t *testing.T) {
		a, b := fresh(t)
		testTokenRotateRace(t, a, b)
	})
	t.Run("PurgeConcurrent", func(t *testing.T) {
		a, b := fresh(t)
		testPurgeConcurrent(t, a, b)
	})
}

const (
	macA = "52:54:00:00:00:0a"
	macB = "52:54:00:00:00:0b"
	macC = "52:54:00:00:00:0c"
)

func put(t *testing.T, s store.Store, c store.Client) {
	t.Helper()
	if err := s.PutClient(t.Context(), c); err != nil {
		t.Fatalf("PutClient(%s): %v", c.Name, err)
	}
}

func get(t *testing.T, s store.Store, name string) store.Client {
	t.Helper()
	c, err := s.GetClient(t.Context(), name)
	if err != nil {
		t.Fatalf("GetClient(%s): %v", name, err)
	}
	return c
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testClientPutGet(t *testing.T, s store.Store) {
	before := time.Now().Add(-time.Second)
	put(t, s, store.Client{
		Name:       "pc-01",
		MAC:        "52-54-00-AA-BB-01", // stored canonical
		Image:      "lab",
		Address:    netip.MustParseAddr("192.168.77.21"),
		Initiators: []string{"IQN.2026-11.io.dls:Extra", "iqn.2026-11.io.dls:extra", "iqn.2026-11.io.dls:b"},
		Persistent: true,
		Labels:     map[string]string{"room": "a1"},
	})
	after := time.Now().Add(time.Second)

	c := get(t, s, "pc-01")
	if c.Name != "pc-01" || c.MAC != "52:54:00:aa:bb:01" || c.Image != "lab" || !c.Persistent {
		t.Errorf("got %+v", c)
	}
	if c.Address != netip.MustParseAddr("192.168.77.21") {
		t.Errorf("Address = %v", c.Address)
	}
	// Lower-cased, deduplicated, in the order given.
	if want := []string{"iqn.2026-11.io.dls:extra", "iqn.2026-11.io.dls:b"}; !slices.Equal(c.Initiators, want) {
		t.Errorf("Initiators = %q, want %q", c.Initiators, want)
	}
	if len(c.Labels) != 1 || c.Labels["room"] != "a1" {
		t.Errorf("Labels = %v", c.Labels)
	}
	for name, ts := range map[string]time.Time{"CreatedAt": c.CreatedAt, "UpdatedAt": c.UpdatedAt} {
		if ts.Before(before) || ts.After(after) {
			t.Errorf("%s = %v, want between %v and %v", name, ts, before, after)
		}
	}

	if _, err := s.GetClient(t.Context(), "pc-99"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetClient(unknown): err = %v, want ErrNotFound", err)
	}
}

func testClientUpdate(t *testing.T, s store.Store) {
	put(t, s, store.Client{
		Name: "pc-01", MAC: "52:54:00:aa:bb:01", Image: "lab",
		Address:    netip.MustParseAddr("192.168.77.21"),
		Initiators: []string{"iqn.2026-11.io.dls:old"},
		Labels:     map[string]string{"room": "a1"},
		Persistent: true,
	})
	first := get(t, s, "pc-01")
	time.Sleep(5 * time.Millisecond) // UpdatedAt has millisecond precision
	put(t, s, store.Client{Name: "pc-01", MAC: "52:54:00:aa:bb:02", Image: "kiosk"})

	c := get(t, s, "pc-01")
	if c.MAC != "52:54:00:aa:bb:02" || c.Image != "kiosk" || c.Persistent {
		t.Errorf("after update: %+v", c)
	}
	if c.Address.IsValid() || c.Initiators != nil || c.Labels != nil {
		t.Errorf("after update, want no address, initiators, labels: %+v", c)
	}
	if !c.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("CreatedAt changed: %v -> %v", first.CreatedAt, c.CreatedAt)
	}
	if !c.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("UpdatedAt not advanced: %v -> %v", first.UpdatedAt, c.UpdatedAt)
	}
	// The old MAC and initiator no longer lead to it.
	if _, err := s.ClientByMAC(t.Context(), "52:54:00:aa:bb:01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClientByMAC(old MAC): err = %v, want ErrNotFound", err)
	}
	if _, err := s.ClientByInitiator(t.Context(), "iqn.2026-11.io.dls:old"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClientByInitiator(removed): err = %v, want ErrNotFound", err)
	}
}

func testClientLookups(t *testing.T, s store.Store) {
	put(t, s, store.Client{Name: "pc-01", MAC: "52:54:00:aa:bb:01", Initiators: []string{"iqn.2026-11.io.dls:x1"}})
	put(t, s, store.Client{Name: "pc-02", MAC: "52:54:00:aa:bb:02", Initiators: []string{"iqn.2026-11.io.dls:x2", "iqn.2026-11.io.dls:y2"}})

	for _, mac := range []string{"52:54:00:aa:bb:02", "52:54:00:AA:BB:02", "5254.00aa.bb02"} {
		c, err := s.ClientByMAC(t.Context(), mac)
		if err != nil || c.Name != "pc-02" {
			t.Errorf("ClientByMAC(%s) = %s, %v; want pc-02", mac, c.Name, err)
		}
	}
	if _, err := s.ClientByMAC(t.Context(), "52:54:00:aa:bb:99"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClientByMAC(unknown): err = %v, want ErrNotFound", err)
	}
	if _, err := s.ClientByMAC(t.Context(), "not-a-mac"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ClientByMAC(garbage): err = %v, want ErrInvalid", err)
	}

	for iqn, want := range map[string]string{
		"iqn.2026-11.io.dls:x1": "pc-01",
		"iqn.2026-11.io.dls:y2": "pc-02",
		"IQN.2026-11.IO.DLS:X2": "pc-02", // iSCSI names are case-insensitive
	} {
		c, err := s.ClientByInitiator(t.Context(), iqn)
		if err != nil || c.Name != want {
			t.Errorf("ClientByInitiator(%s) = %s, %v; want %s", iqn, c.Name, err, want)
		}
		if err == nil && len(c.Initiators) == 0 {
			t.Errorf("ClientByInitiator(%s): client without its initiators", iqn)
		}
	}
	if _, err := s.ClientByInitiator(t.Context(), "iqn.2026-11.io.dls:none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClientByInitiator(unknown): err = %v, want ErrNotFound", err)
	}
}

func testClientList(t *testing.T, s store.Store) {
	cs, err := s.ListClients(t.Context())
	if err != nil || len(cs) != 0 {
		t.Fatalf("ListClients on an empty store = %v, %v", cs, err)
	}
	for i, name := range []string{"pc-03", "pc-01", "pc-02"} {
		put(t, s, store.Client{Name: name, MAC: fmt.Sprintf("52:54:00:00:01:%02x", i),
			Initiators: []string{"iqn.2026-11.io.dls:" + name}})
	}
	cs, err = s.ListClients(t.Context())
	if err != nil {
		t.Fatalf("ListClients: %v", err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
		if len(c.Initiators) != 1 || c.Initiators[0] != "iqn.2026-11.io.dls:"+c.Name {
			t.Errorf("%s: Initiators = %q", c.Name, c.Initiators)
		}
	}
	if want := []string{"pc-01", "pc-02", "pc-03"}; !slices.Equal(names, want) {
		t.Errorf("ListClients names = %q, want %q", names, want)
	}
}

func testClientDelete(t *testing.T, s store.Store) {
	put(t, s, store.Client{Name: "pc-01", MAC: macA, Address: netip.MustParseAddr("10.0.0.5"),
		Initiators: []string{"iqn.2026-11.io.dls:x"}})
	if err := s.DeleteClient(t.Context(), "pc-01"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	if _, err := s.GetClient(t.Context(), "pc-01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetClient after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteClient(t.Context(), "pc-01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteClient twice: err = %v, want ErrNotFound", err)
	}
	if _, err := s.ClientByInitiator(t.Context(), "iqn.2026-11.io.dls:x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ClientByInitiator after delete: err = %v, want ErrNotFound", err)
	}
	// Its MAC, address and initiator are free again.
	put(t, s, store.Client{Name: "pc-02", MAC: macA, Address: netip.MustParseAddr("10.0.0.5"),
		Initiators: []string{"iqn.2026-11.io.dls:x"}})
}

func testClientConflicts(t *testing.T, s store.Store) {
	put(t, s, store.Client{Name: "pc-01", MAC: macA, Address: netip.MustParseAddr("10.0.0.5"),
		Initiators: []string{"iqn.2026-11.io.dls:x"}})
	put(t, s, store.Client{Name: "pc-02", MAC: macB, Image: "before"})

	for _, tc := range []struct {
		what string
		c    store.Client
	}{
		{"same MAC", store.Client{Name: "pc-03", MAC: "52:54:00:00:00:0A"}},
		{"same MAC, existing client", store.Client{Name: "pc-02", MAC: macA, Image: "after"}},
		{"same address", store.Client{Name: "pc-02", MAC: macB, Image: "after", Address: netip.MustParseAddr("10.0.0.5")}},
		{"same initiator", store.Client{Name: "pc-02", MAC: macB, Image: "after", Initiators: []string{"iqn.2026-11.io.dls:y", "IQN.2026-11.io.dls:X"}}},
	} {
		if err := s.PutClient(t.Context(), tc.c); !errors.Is(err, store.ErrConflict) {
			t.Errorf("%s: err = %v, want ErrConflict", tc.what, err)
		}
	}
	// The refused writes left nothing behind.
	if _, err := s.GetClient(t.Context(), "pc-03"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused new client exists: err = %v", err)
	}
	if c := get(t, s, "pc-02"); c.Image != "before" || c.Initiators != nil || c.Address.IsValid() {
		t.Errorf("refused update changed pc-02: %+v", c)
	}
	if _, err := s.ClientByInitiator(t.Context(), "iqn.2026-11.io.dls:y"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused update left initiator y: err = %v", err)
	}
	// A client conflicts with nobody by keeping its own MAC and address.
	put(t, s, store.Client{Name: "pc-01", MAC: macA, Address: netip.MustParseAddr("10.0.0.5"), Image: "new"})
}

func testClientInvalid(t *testing.T, s store.Store) {
	for _, c := range []store.Client{
		{Name: "", MAC: macA},
		{Name: "pc-01", MAC: ""},
		{Name: "pc-01", MAC: "52:54:00:zz:00:01"},
		{Name: "pc-01", MAC: macA, Address: netip.MustParseAddr("fd00::1")},
		{Name: "pc-01", MAC: macA, Initiators: []string{" "}},
	} {
		if err := s.PutClient(t.Context(), c); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutClient(%+v): err = %v, want ErrInvalid", c, err)
		}
	}
}

// lease builds a lease of pool "lan"; expires is truncated to milliseconds,
// the precision stores keep.
func lease(addr, mac string, expires time.Time, state store.LeaseState) store.Lease {
	return store.Lease{
		Pool:     "lan",
		Address:  netip.MustParseAddr(addr),
		MAC:      mac,
		Expires:  expires.Truncate(time.Millisecond),
		State:    state,
		Hostname: "host-" + mac[len(mac)-2:],
	}
}

func commit(t *testing.T, s store.Store, ls ...store.Lease) []store.LeaseResult {
	t.Helper()
	got, err := s.CommitLeases(t.Context(), ls)
	if err != nil {
		t.Fatalf("CommitLeases: %v", err)
	}
	if len(got) != len(ls) {
		t.Fatalf("CommitLeases: %d results for %d leases", len(got), len(ls))
	}
	return got
}

func commitOK(t *testing.T, s store.Store, ls ...store.Lease) {
	t.Helper()
	for i, r := range commit(t, s, ls...) {
		if !r.OK {
			t.Fatalf("lease %d (%s for %s) refused, holder %s", i, ls[i].Address, ls[i].MAC, r.Holder)
		}
	}
}

// holder returns the lease of addr as LoadLeases reports it.
func holder(t *testing.T, s store.Store, addr string) store.Lease {
	t.Helper()
	ls, err := s.LoadLeases(t.Context(), "")
	if err != nil {
		t.Fatalf("LoadLeases: %v", err)
	}
	for _, l := range ls {
		if l.Address == netip.MustParseAddr(addr) {
			return l
		}
	}
	t.Fatalf("no lease for %s", addr)
	return store.Lease{}
}

func testLeaseCommitLoad(t *testing.T, s store.Store) {
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	l10 := lease("10.0.0.10", "52-54-00-00-00-0A", exp, store.LeaseBound)
	l9 := lease("10.0.0.9", macB, exp, store.LeaseBound)
	other := lease("10.1.0.1", macC, exp, store.LeaseBound)
	other.Pool = "other"
	commitOK(t, s, l10, l9, other)

	lan, err := s.LoadLeases(t.Context(), "lan")
	if err != nil {
		t.Fatalf("LoadLeases(lan): %v", err)
	}
	// Ordered as addresses, not as text; MAC canonical.
	l10.MAC = macA
	if want := []store.Lease{l9, l10}; len(lan) != 2 || !sameLease(lan[0], want[0]) || !sameLease(lan[1], want[1]) {
		t.Errorf("LoadLeases(lan) =\n%+v\nwant\n%+v", lan, want)
	}
	all, err := s.LoadLeases(t.Context(), "")
	if err != nil || len(all) != 3 {
		t.Errorf("LoadLeases(all) = %d leases, %v; want 3", len(all), err)
	}
	none, err := s.LoadLeases(t.Context(), "nowhere")
	if err != nil || len(none) != 0 {
		t.Errorf("LoadLeases(nowhere) = %v, %v; want none", none, err)
	}
	if got, err := s.CommitLeases(t.Context(), nil); err != nil || len(got) != 0 {
		t.Errorf("CommitLeases(empty) = %v, %v", got, err)
	}
}

func sameLease(a, b store.Lease) bool {
	return a.Pool == b.Pool && a.Address == b.Address && a.MAC == b.MAC &&
		a.Expires.Equal(b.Expires) && a.State == b.State && a.Hostname == b.Hostname
}

func testLeaseRenew(t *testing.T, s store.Store) {
	now := time.Now()
	commitOK(t, s, lease("10.0.0.1", macA, now.Add(time.Minute), store.LeaseBound))
	renewed := lease("10.0.0.1", macA, now.Add(time.Hour), store.LeaseBound)
	renewed.Hostname = "renamed"
	commitOK(t, s, renewed)
	if got := holder(t, s, "10.0.0.1"); !sameLease(got, renewed) {
		t.Errorf("after renewal: %+v, want %+v", got, renewed)
	}
}

func testLeaseConflict(t *testing.T, s store.Store) {
	now := time.Now()
	commitOK(t, s, lease("10.0.0.1", macA, now.Add(time.Hour), store.LeaseBound))
	got := commit(t, s, lease("10.0.0.1", "52:54:00:00:00:0B", now.Add(time.Hour), store.LeaseBound))
	if got[0] != (store.LeaseResult{Holder: macA}) {
		t.Errorf("second MAC for a held address: %+v, want conflict held by %s", got[0], macA)
	}
	// A release by another MAC is a conflict too: only the holder lets go.
	got = commit(t, s, lease("10.0.0.1", macB, now, store.LeaseReleased))
	if got[0].OK {
		t.Errorf("another MAC released the address")
	}
	if l := holder(t, s, "10.0.0.1"); l.MAC != macA || l.State != store.LeaseBound {
		t.Errorf("holder after conflicts: %+v", l)
	}
}

func testLeaseExpiredTakeover(t *testing.T, s store.Store) {
	now := time.Now()
	commitOK(t, s, lease("10.0.0.1", macA, now.Add(-time.Minute), store.LeaseBound))
	commitOK(t, s, lease("10.0.0.1", macB, now.Add(time.Hour), store.LeaseBound))
	if l := holder(t, s, "10.0.0.1"); l.MAC != macB {
		t.Errorf("after takeover of an expired lease, holder = %s, want %s", l.MAC, macB)
	}
	// And now B holds it against A.
	if got := commit(t, s, lease("10.0.0.1", macA, now.Add(time.Hour), store.LeaseBound)); got[0].OK || got[0].Holder != macB {
		t.Errorf("A back on B's address: %+v", got[0])
	}
}

func testLeaseReleasedTakeover(t *testing.T, s store.Store) {
	now := time.Now()
	commitOK(t, s, lease("10.0.0.1", macA, now.Add(time.Hour), store.LeaseBound))
	commitOK(t, s, lease("10.0.0.1", macA, now.Add(time.Hour), store.LeaseReleased))
	commitOK(t, s, lease("10.0.0.1", macB, now.Add(time.Hour), store.LeaseBound))
	if l := holder(t, s, "10.0.0.1"); l.MAC != macB || l.State != store.LeaseBound {
		t.Errorf("after takeover of a released lease: %+v", l)
	}
}

func testLeaseDeclinedHolds(t *testing.T, s store.Store) {
	now := time.Now()
	commitOK(t, s, lease("10.0.0.1", macA, now.Add(time.Hour), store.LeaseDeclined))
	if got := commit(t, s, lease("10.0.0.1", macB, now.Add(time.Hour), store.LeaseBound)); got[0].OK || got[0].Holder != macA {
		t.Errorf("declined address taken before it expired: %+v", got[0])
	}
	commitOK(t, s, lease("10.0.0.2", macA, now.Add(-time.Second), store.LeaseDeclined))
	commitOK(t, s, lease("10.0.0.2", macB, now.Add(time.Hour), store.LeaseBound))
}

func testLeaseBatchMixed(t *testing.T, s store.Store) {
	exp := time.Now().Add(time.Hour)
	commitOK(t, s, lease("10.0.0.1", macA, exp, store.LeaseBound))
	got := commit(t, s,
		lease("10.0.0.1", macB, exp, store.LeaseBound), // held by A
		lease("10.0.0.2", macB, exp, store.LeaseBound),
		lease("10.0.0.3", macC, exp, store.LeaseBound),
		lease("10.0.0.1", macC, exp, store.LeaseBound), // held by A
		lease("10.0.0.1", macA, exp, store.LeaseBound), // A renews
	)
	want := []store.LeaseResult{{Holder: macA}, {OK: true}, {OK: true}, {Holder: macA}, {OK: true}}
	if !slices.Equal(got, want) {
		t.Errorf("results = %+v, want %+v", got, want)
	}
	for addr, mac := range map[string]string{"10.0.0.1": macA, "10.0.0.2": macB, "10.0.0.3": macC} {
		if l := holder(t, s, addr); l.MAC != mac {
			t.Errorf("%s held by %s, want %s", addr, l.MAC, mac)
		}
	}
}

func testLeaseBatchSameAddress(t *testing.T, s store.Store) {
	exp := time.Now().Add(time.Hour)
	got := commit(t, s,
		lease("10.0.0.5", macA, exp, store.LeaseBound),
		lease("10.0.0.5", macB, exp, store.LeaseBound),
	)
	if want := []store.LeaseResult{{OK: true}, {Holder: macA}}; !slices.Equal(got, want) {
		t.Errorf("results = %+v, want %+v", got, want)
	}
}

func testLeaseBatchInvalid(t *testing.T, s store.Store) {
	exp := time.Now().Add(time.Hour)
	bad := []store.Lease{
		lease("10.0.0.2", macA, exp, "lost"),
		{Pool: "lan", MAC: macA, Expires: exp, State: store.LeaseBound},                                               // no address
		{Pool: "lan", Address: netip.MustParseAddr("fe80::2"), MAC: macA, Expires: exp, State: store.LeaseBound},      // IPv6 link-local
		{Pool: "lan", Address: netip.MustParseAddr("fd00::2%eth0"), MAC: macA, Expires: exp, State: store.LeaseBound}, // IPv6 with a zone
		{Pool: "lan", Address: netip.MustParseAddr("10.0.0.2"), MAC: "zz", Expires: exp, State: store.LeaseBound},
	}
	for _, b := range bad {
		_, err := s.CommitLeases(t.Context(), []store.Lease{lease("10.0.0.1", macA, exp, store.LeaseBound), b})
		if !errors.Is(err, store.ErrInvalid) {
			t.Errorf("batch with %+v: err = %v, want ErrInvalid", b, err)
		}
	}
	// The valid lease before the invalid one was not committed either.
	if ls, err := s.LoadLeases(t.Context(), ""); err != nil || len(ls) != 0 {
		t.Errorf("after refused batches: leases %+v, %v; want none", ls, err)
	}
}

// testLeaseIPv6: a DHCPv6 lease (protocol "dhcp6") is stored, loaded and
// held against another MAC like an IPv4 one, beside IPv4 leases.
func testLeaseIPv6(t *testing.T, s store.Store) {
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	v6 := lease("fd00:99::1:5", macA, exp, store.LeaseBound)
	v6.Pool = "lan6"
	commitOK(t, s, v6, lease("10.0.0.5", macA, exp, store.LeaseBound))
	got := holder(t, s, "fd00:99::1:5")
	if got.MAC != macA || got.Pool != "lan6" || !got.Expires.Equal(exp) || got.State != store.LeaseBound {
		t.Errorf("IPv6 lease loaded as %+v, want %+v", got, v6)
	}
	if ls, err := s.LoadLeases(t.Context(), "lan6"); err != nil || len(ls) != 1 {
		t.Errorf("pool lan6: %+v, %v; want the one IPv6 lease", ls, err)
	}
	other := lease("fd00:99::1:5", macB, exp, store.LeaseBound)
	if r := commit(t, s, other); r[0].OK || r[0].Holder != macA {
		t.Errorf("IPv6 address held by %s taken by %s: %+v", macA, macB, r[0])
	}
}

// testLeaseConcurrent has many committers race for a few addresses through
// a and b (the same store, or two stores sharing a database). No lease is
// ever released and none expires, so each address must go to the first MAC
// that asked and to no other, and every conflict must name that MAC.
func testLeaseConcurrent(t *testing.T, a, b store.Store) {
	const (
		workers = 8
		rounds  = 15
		addrs   = 6
		perTx   = 3
	)
	exp := time.Now().Add(time.Hour)
	var (
		mu      sync.Mutex
		granted = map[string]map[string]bool{} // address -> MACs answered OK
		holders = map[string]map[string]bool{} // address -> MACs named as holder
	)
	note := func(m map[string]map[string]bool, addr, mac string) {
		if m[addr] == nil {
			m[addr] = map[string]bool{}
		}
		m[addr][mac] = true
	}
	var wg sync.WaitGroup
	for w := range workers {
		s := a
		if w%2 == 1 {
			s = b
		}
		mac := fmt.Sprintf("02:00:00:00:00:%02x", w)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for range rounds {
				batch := make([]store.Lease, perTx)
				for i := range batch {
					batch[i] = lease(fmt.Sprintf("10.9.0.%d", 1+rng.IntN(addrs)), mac, exp, store.LeaseBound)
				}
				got, err := s.CommitLeases(t.Context(), batch)
				if err != nil {
					t.Errorf("worker %d: CommitLeases: %v", w, err)
					return
				}
				mu.Lock()
				for i, r := range got {
					addr := batch[i].Address.String()
					switch {
					case r.OK:
						note(granted, addr, mac)
					case r.Holder == "" || r.Holder == mac:
						t.Errorf("worker %d: %s refused with holder %q", w, addr, r.Holder)
					default:
						note(holders, addr, r.Holder)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	for addr, macs := range granted {
		if len(macs) > 1 {
			t.Errorf("%s granted to %d MACs: %v", addr, len(macs), macs)
		}
	}
	for addr, macs := range holders {
		for mac := range macs {
			if !granted[addr][mac] {
				t.Errorf("%s refused in favour of %s, which was never granted it", addr, mac)
			}
		}
	}
	if len(holders) == 0 {
		t.Errorf("no lease was refused: the committers did not race")
	}
	ls, err := a.LoadLeases(t.Context(), "")
	if err != nil {
		t.Fatalf("LoadLeases: %v", err)
	}
	for _, l := range ls {
		if !granted[l.Address.String()][l.MAC] {
			t.Errorf("%s stored for %s, which was never granted it", l.Address, l.MAC)
		}
	}
	if len(ls) != len(granted) {
		t.Errorf("%d leases stored, %d addresses granted", len(ls), len(granted))
	}
}

func testAudit(t *testing.T, s store.Store) {
	if es, err := s.ListAudit(t.Context(), 10); err != nil || len(es) != 0 {
		t.Fatalf("ListAudit on an empty store = %v, %v", es, err)
	}
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	entries := []store.AuditEntry{
		{Time: at, Actor: "admin", Action: "client.put", Object: "client/pc-01", Detail: `{"image":"lab"}`, Source: "127.0.0.1"},
		{Time: at.Add(time.Second), Actor: "config", Action: "client.put", Object: "client/pc-02"},
		{Actor: "admin", Action: "client.delete", Object: "client/pc-01", Source: "cli"}, // Time set by the store
	}
	before := time.Now().Add(-time.Second)
	for _, e := range entries {
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatalf("AppendAudit: %v", err)
		}
	}
	if err := s.AppendAudit(t.Context(), store.AuditEntry{Actor: "x"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("AppendAudit without action: err = %v, want ErrInvalid", err)
	}

	got, err := s.ListAudit(t.Context(), 2)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if len(got) != 2 || got[0].Action != "client.delete" || got[1].Object != "client/pc-02" {
		t.Fatalf("ListAudit(2) = %+v, want the two newest, newest first", got)
	}
	if got[0].ID <= got[1].ID {
		t.Errorf("IDs not descending: %d, %d", got[0].ID, got[1].ID)
	}
	if got[0].Time.Before(before) {
		t.Errorf("zero Time not set to now: %v", got[0].Time)
	}
	all, err := s.ListAudit(t.Context(), 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("ListAudit(0) = %d entries, %v; want 3", len(all), err)
	}
	first := all[2]
	if !first.Time.Equal(at) {
		t.Errorf("oldest entry's Time = %v, want %v", first.Time, at)
	}
	first.ID, first.Time = 0, at
	if first != entries[0] {
		t.Errorf("oldest entry = %+v, want %+v", first, entries[0])
	}
}
