package dhcp6d

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestAdvertiseFloodIsBounded: Solicits from ever new made-up clients
// (none of which requests) touch at most the addresses of one offer_time,
// even in a /64: ended offers are advertised again before new addresses.
func TestAdvertiseFloodIsBounded(t *testing.T) {
	c := baseConfig()
	c.Pools = []Pool{{Prefix: "fd00:99:0:1::/64"}}
	set, err := check(*c)
	if err != nil {
		t.Fatal(err)
	}
	tb := newTable(set, netip.Addr{})
	now := time.Unix(1e9, 0)
	tb.now = func() time.Time { return now }
	for i := range 10000 {
		mac := string([]byte{2, 0, byte(i >> 16), byte(i >> 8), byte(i), 1})
		if _, _, err := tb.offer(mac, netip.Addr{}); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second) // 30 new clients per offer_time (30s)
	}
	if n := len(tb.pools[0].slots); n > 40 {
		t.Errorf("%d addresses touched by 10000 unanswered offers, want about 30", n)
	}
	// A client that binds keeps its address out of the recycling.
	_, a, _ := tb.offer("\x02\x09\x09\x09\x09\x09", netip.Addr{})
	if _, _, why := tb.bind("\x02\x09\x09\x09\x09\x09", a, "", false); why != bindOK {
		t.Fatal(why)
	}
	now = now.Add(time.Minute)
	for i := range 100 {
		_, b, _ := tb.offer(fmt.Sprintf("\x02\x08\x08\x08\x08%c", i), netip.Addr{})
		if b == a {
			t.Fatalf("bound address %s advertised to another client", a)
		}
	}
}
