package target

import (
	"net/netip"
	"testing"
	"time"
)

func TestRefusalsWindowAndBound(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newRefusals(3, time.Minute, 4, func() time.Time { return now })
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range 2 {
		r.add(a)
	}
	if r.limited(a) {
		t.Fatal("limited after 2 of 3 refusals")
	}
	r.add(a)
	if !r.limited(a) || r.limited(b) {
		t.Fatalf("after 3 refusals from a: a limited %v, b limited %v", r.limited(a), r.limited(b))
	}
	// The window ends: a may try again, and counts from zero.
	now = now.Add(time.Minute)
	if r.limited(a) {
		t.Fatal("still limited after the window")
	}
	r.add(a)
	if r.limited(a) {
		t.Fatal("limited after one refusal in a new window")
	}
	// Bounded: a flood of addresses keeps 4, dropping the least recently
	// refused; a, refused again just now, stays.
	for i := range 100 {
		r.add(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
		if i%3 == 0 {
			r.add(a)
		}
	}
	if n := r.size(); n != 4 {
		t.Fatalf("%d addresses remembered, want 4", n)
	}
	if _, ok := r.byAddr[a]; !ok {
		t.Error("the most recently refused address was forgotten")
	}
	// No limit: nothing counted.
	off := newRefusals(-1, time.Minute, 4, time.Now)
	for range 10 {
		off.add(a)
	}
	if off.limited(a) || off.size() != 0 {
		t.Error("a negative limit still counts")
	}
}
