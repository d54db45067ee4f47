package leaseslot

import (
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
)

func TestFreeFor(t *testing.T) {
	const now = int64(1000)
	for _, tc := range []struct {
		name string
		s    Slot
		mac  string
		want bool
	}{
		{"never leased", Slot{}, "a", true},
		{"released", Slot{State: Released, MAC: "b", Expires: 2000}, "a", true},
		{"bound to another", Slot{State: Bound, MAC: "b", Expires: 2000}, "a", false},
		{"bound to it", Slot{State: Bound, MAC: "a", Expires: 2000}, "a", true},
		{"bound, expired", Slot{State: Bound, MAC: "b", Expires: 1000}, "a", true},
		{"declined", Slot{State: Declined, MAC: "a", Expires: 2000}, "a", false},
		{"declined, over", Slot{State: Declined, MAC: "b", Expires: 999}, "a", true},
		{"unusable", Slot{State: Unusable}, "a", false},
		{"offered to another", Slot{OfferTo: "b", OfferEnd: 1001}, "a", false},
		{"offered to it", Slot{OfferTo: "a", OfferEnd: 1001}, "a", true},
		{"offer ended", Slot{OfferTo: "b", OfferEnd: 1000}, "a", true},
		{"offer ended, bound to another", Slot{State: Bound, MAC: "b", Expires: 2000, OfferTo: "b", OfferEnd: 10}, "a", false},
	} {
		if got := tc.s.FreeFor(tc.mac, now); got != tc.want {
			t.Errorf("%s: FreeFor = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRestore(t *testing.T) {
	exp := time.Unix(0, 12345)
	for st, want := range map[string]State{host.LeaseBound: Bound, host.LeaseReleased: Released, host.LeaseDeclined: Declined} {
		var s Slot
		if !s.Restore(host.Lease{State: st, Hostname: "pc1", Expires: exp}, "\x52\x54\x00\x00\x00\x01") {
			t.Fatalf("%s refused", st)
		}
		if s.State != want || s.MAC != "\x52\x54\x00\x00\x00\x01" || s.Hostname != "pc1" || s.Expires != 12345 {
			t.Errorf("%s: %+v", st, s)
		}
	}
	s := Slot{State: Bound, MAC: "x"}
	if s.Restore(host.Lease{State: "offered"}, "y") || s.State != Bound || s.MAC != "x" {
		t.Errorf("an unknown state changed the slot: %+v", s)
	}
}
