package dhcpd

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dls-project/dls/plugins/protocol/leaseslot"
	"github.com/dls-project/dls/sdk/host"
)

func testTable(t *testing.T, start, end string) (*table, []*pool, *time.Time) {
	t.Helper()
	c := baseConfig()
	c.Pools[0].Start, c.Pools[0].End = start, end
	s, err := check(*c)
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(s, s.serverIP)
	clock := time.Unix(1_800_000_000, 0)
	tb.now = func() time.Time { return clock }
	return tb, tb.pools, &clock
}

func a4(s string) ip4 { return ip4From(netip.MustParseAddr(s)) }

func mac(n byte) string { return string([]byte{0x52, 0x54, 0, 0, 0, n}) }

func TestTableSkipsNetworkBroadcastRouterAndServer(t *testing.T) {
	tb, pools, _ := testTable(t, "10.0.0.0", "10.0.0.255")
	got := map[ip4]bool{}
	for i := 1; ; i++ {
		_, a, _, err := tb.offer(pools, string(rune(i))+"xxxxx", 0, 0, false, true)
		if err != nil {
			break
		}
		got[a] = true
	}
	for _, bad := range []string{"10.0.0.0", "10.0.0.255", "10.0.0.1"} {
		if got[a4(bad)] {
			t.Errorf("offered %s", bad)
		}
	}
	if len(got) != 253 {
		t.Errorf("%d addresses offered, want 253", len(got))
	}
	if st := tb.stats(); st[0].size != 253 {
		t.Errorf("pool size %d, want 253", st[0].size)
	}
}

func TestTableOffersAreHeldThenExpire(t *testing.T) {
	tb, pools, clock := testTable(t, "10.0.0.100", "10.0.0.100")
	_, a, fresh, err := tb.offer(pools, mac(1), 0, 0, false, true)
	if err != nil || a != a4("10.0.0.100") || !fresh {
		t.Fatalf("offer: %s %v %v", a, fresh, err)
	}
	if _, _, _, err := tb.offer(pools, mac(2), 0, 0, false, true); err != errExhausted {
		t.Fatalf("held address offered to another MAC: %v", err)
	}
	*clock = clock.Add(31 * time.Second)
	if _, a, _, err := tb.offer(pools, mac(2), 0, 0, false, true); err != nil || a != a4("10.0.0.100") {
		t.Fatalf("after the offer time: %s %v", a, err)
	}
	// mac(1) asks anyway (INIT-REBOOT): it is still free in the table's view
	// only if nobody bound it.
	l, _, why := tb.request(pools, mac(2), a, "host2", false, true)
	if why != nakNone || l.MAC != "52:54:00:00:00:02" || l.Hostname != "host2" || l.State != host.LeaseBound {
		t.Fatalf("request: %+v %q", l, why)
	}
	if _, _, why := tb.request(pools, mac(1), a, "", false, true); why != nakTaken {
		t.Errorf("bound address requested by another MAC: %q, want %q", why, nakTaken)
	}
	if _, _, why := tb.request(pools, mac(1), a4("10.0.0.101"), "", false, true); why != nakNotOurs {
		t.Errorf("address out of range: %q", why)
	}
	if _, _, why := tb.request(pools, mac(1), a4("192.168.1.1"), "", false, true); why != nakNotOurs {
		t.Errorf("address of another subnet: %q", why)
	}
	if st := tb.stats(); st[0].active != 1 {
		t.Errorf("active %d", st[0].active)
	}
	*clock = clock.Add(2 * time.Hour)
	if st := tb.stats(); st[0].active != 0 {
		t.Errorf("active after expiry %d", st[0].active)
	}
	if _, _, why := tb.request(pools, mac(1), a, "", false, true); why != nakNone {
		t.Errorf("expired lease not reusable: %q", why)
	}
}

func TestTableReleaseDeclineConflict(t *testing.T) {
	tb, pools, clock := testTable(t, "10.0.0.100", "10.0.0.102")
	_, a, _, _ := tb.offer(pools, mac(1), 0, 0, false, true)
	tb.request(pools, mac(1), a, "", false, true)
	if _, ok := tb.release(pools, mac(2), a); ok {
		t.Error("another MAC released the lease")
	}
	if l, ok := tb.release(pools, mac(1), a); !ok || l.State != host.LeaseReleased {
		t.Fatalf("release: %+v %v", l, ok)
	}
	// Released: free for anyone, preferred by its MAC.
	if _, b, _, _ := tb.offer(pools, mac(1), 0, 0, false, true); b != a {
		t.Errorf("MAC that released got %s, want %s", b, a)
	}
	l, ok := tb.decline(pools, mac(1), a)
	if !ok || l.State != host.LeaseDeclined || !l.Expires.Equal(clock.Add(10*time.Minute)) {
		t.Fatalf("decline: %+v %v", l, ok)
	}
	for i := byte(2); i < 10; i++ {
		if _, b, _, err := tb.offer(pools, mac(i), 0, 0, false, true); err == nil && b == a {
			t.Fatalf("declined %s offered during quarantine", a)
		}
	}
	tb.conflict(pools, a4("10.0.0.101"), mac(2), "52:54:00:00:00:77")
	if m, st, _, _ := tb.lease(a4("10.0.0.101")); m != mac(0x77) || st != leaseslot.Bound {
		t.Errorf("after a conflict: %x %d", m, st)
	}
}

func TestTableLoad(t *testing.T) {
	tb, pools, clock := testTable(t, "10.0.0.100", "10.0.0.110")
	loaded, skipped := tb.load([]host.Lease{
		{Address: "10.0.0.105", MAC: "52:54:00:00:00:01", State: host.LeaseBound, Expires: clock.Add(time.Hour)},
		{Address: "10.0.0.106", MAC: "52:54:00:00:00:02", State: host.LeaseReleased, Expires: clock.Add(-time.Hour)},
		{Address: "10.0.0.21", MAC: "52:54:00:00:00:03", State: host.LeaseBound, Expires: clock.Add(time.Hour)},
		{Address: "192.168.9.9", MAC: "52:54:00:00:00:04", State: host.LeaseBound, Expires: clock.Add(time.Hour)},
		{Address: "10.0.0.107", MAC: "nonsense", State: host.LeaseBound},
	})
	if loaded != 3 || skipped != 2 {
		t.Errorf("loaded %d skipped %d", loaded, skipped)
	}
	for m, want := range map[byte]string{1: "10.0.0.105", 2: "10.0.0.106", 3: "10.0.0.21"} {
		if _, a, _, err := tb.offer(pools, mac(m), 0, 0, false, true); err != nil || a != a4(want) {
			t.Errorf("MAC %d offered %s %v, want %s", m, a, err, want)
		}
	}
	if st := tb.stats(); st[0].active != 2 {
		t.Errorf("active %d, want 2", st[0].active)
	}
}

// TestTableUnknownLeasesCap: MACs the host does not know hold at most
// unknown_leases addresses of a pool, offered or leased; known MACs get
// the rest, and the unknowns' share comes back as their offers expire or
// their leases are released.
func TestTableUnknownLeasesCap(t *testing.T) {
	tb, pools, clock := testTable(t, "10.0.0.100", "10.0.0.109")
	pools[0].unknownLeases = 4
	const known, unknown = true, false
	var held []ip4
	for i := byte(1); i <= 4; i++ {
		_, a, _, err := tb.offer(pools, mac(i), 0, 0, false, unknown)
		if err != nil {
			t.Fatalf("unknown MAC %d under the cap: %v", i, err)
		}
		held = append(held, a)
	}
	if _, _, _, err := tb.offer(pools, mac(5), 0, 0, false, unknown); err != errUnknownLimit {
		t.Fatalf("5th unknown MAC: %v, want errUnknownLimit", err)
	}
	// Nor may it take an address by REQUEST without an offer.
	if _, _, why := tb.request(pools, mac(5), a4("10.0.0.108"), "", false, unknown); why != refusedUnknownLimit {
		t.Fatalf("5th unknown MAC's REQUEST: %q, want %q", why, refusedUnknownLimit)
	}
	// The holders keep theirs: a repeated DISCOVER, then the REQUEST.
	if _, a, _, err := tb.offer(pools, mac(1), 0, 0, false, unknown); err != nil || a != held[0] {
		t.Fatalf("unknown holder's repeated DISCOVER: %s %v", a, err)
	}
	if _, _, why := tb.request(pools, mac(1), held[0], "", false, unknown); why != nakNone {
		t.Fatalf("unknown holder's REQUEST: %q", why)
	}
	// Known MACs get the rest of the pool.
	for i := byte(10); i < 16; i++ {
		if _, _, _, err := tb.offer(pools, mac(i), 0, 0, false, known); err != nil {
			t.Fatalf("known MAC %d: %v", i, err)
		}
	}
	// A release gives the share back at once; expired offers after the
	// offer time.
	if _, ok := tb.release(pools, mac(1), held[0]); !ok {
		t.Fatal("release refused")
	}
	if _, _, _, err := tb.offer(pools, mac(6), 0, 0, false, unknown); err != nil {
		t.Fatalf("unknown MAC after a release: %v", err)
	}
	if _, _, _, err := tb.offer(pools, mac(7), 0, 0, false, unknown); err != errUnknownLimit {
		t.Fatalf("unknown MAC over the cap again: %v", err)
	}
	*clock = clock.Add(tb.offerTime + time.Second)
	if _, _, _, err := tb.offer(pools, mac(7), 0, 0, false, unknown); err != nil {
		t.Fatalf("unknown MAC after the offers expired: %v", err)
	}
}
