package storetest

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

func record(t *testing.T, s store.Store, max int, ms ...store.DiscoveredMachine) int {
	t.Helper()
	refused, err := s.RecordDiscovered(t.Context(), ms, max)
	if err != nil {
		t.Fatalf("RecordDiscovered: %v", err)
	}
	return refused
}

func testDiscovered(t *testing.T, s store.Store) {
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	record(t, s, 0,
		store.DiscoveredMachine{MAC: "52-54-00-00-00-02", FirstSeen: t0.Add(time.Second), LastSeen: t0.Add(time.Second), Arch: 7,
			VendorClass: "PXEClient:Arch:00007:UNDI:003016", Address: netip.MustParseAddr("10.0.0.1"), Count: 3},
		store.DiscoveredMachine{MAC: macA, FirstSeen: t0, LastSeen: t0})
	// A later sighting of the first: later last seen, counts add, what it
	// tells replaces; what it does not tell stays.
	record(t, s, 0,
		store.DiscoveredMachine{MAC: "52:54:00:00:00:02", FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute), UserClass: "iPXE", Count: 2},
		// An older sighting does not move last seen back.
		store.DiscoveredMachine{MAC: macA, FirstSeen: t0.Add(-time.Minute), LastSeen: t0.Add(-time.Minute), Arch: 0, VendorClass: "PXEClient:Arch:00000"})

	ms, err := s.ListDiscovered(t.Context())
	if err != nil {
		t.Fatalf("ListDiscovered: %v", err)
	}
	if len(ms) != 2 || ms[0].MAC != macA || ms[1].MAC != "52:54:00:00:00:02" {
		t.Fatalf("ListDiscovered = %+v, want %s then 52:54:00:00:00:02 (order of first sight)", ms, macA)
	}
	a, b := ms[0], ms[1]
	if !a.FirstSeen.Equal(t0) || !a.LastSeen.Equal(t0) || a.Count != 2 || a.VendorClass != "PXEClient:Arch:00000" || a.Address.IsValid() {
		t.Errorf("first machine = %+v", a)
	}
	if !b.FirstSeen.Equal(t0.Add(time.Second)) || !b.LastSeen.Equal(t0.Add(time.Minute)) || b.Count != 5 || b.Arch != 7 ||
		b.VendorClass != "PXEClient:Arch:00007:UNDI:003016" || b.UserClass != "iPXE" || b.Address != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("second machine = %+v", b)
	}
	if b.FirstSeen.Location() != time.UTC {
		t.Errorf("FirstSeen in %v, want UTC", b.FirstSeen.Location())
	}

	got, err := s.GetDiscovered(t.Context(), "52:54:00:00:00:02")
	if err != nil || got.Count != 5 {
		t.Errorf("GetDiscovered = %+v, %v", got, err)
	}
	if err := s.DeleteDiscovered(t.Context(), "52-54-00-00-00-02"); err != nil {
		t.Fatalf("DeleteDiscovered: %v", err)
	}
	if _, err := s.GetDiscovered(t.Context(), "52:54:00:00:00:02"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetDiscovered after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteDiscovered(t.Context(), "52:54:00:00:00:02"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteDiscovered twice: err = %v, want ErrNotFound", err)
	}
	if _, err := s.RecordDiscovered(t.Context(), []store.DiscoveredMachine{{MAC: "nope"}}, 0); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("RecordDiscovered(bad MAC): err = %v, want ErrInvalid", err)
	}
	// NUL and invalid UTF-8 (from the wire) are stored cleaned, not refused.
	record(t, s, 0, store.DiscoveredMachine{MAC: macC, VendorClass: "PXE\x00Client\xff"})
	if got, err := s.GetDiscovered(t.Context(), macC); err != nil || got.VendorClass != "PXEClient?" {
		t.Errorf("GetDiscovered(%s) = %+v, %v; want vendor class \"PXEClient?\"", macC, got, err)
	}
}

// testDiscoveredBound: a full table takes no new MACs but still counts
// the ones it holds; a client's MAC is never recorded.
func testDiscoveredBound(t *testing.T, s store.Store) {
	put(t, s, store.Client{Name: "pc-01", MAC: macB})
	var batch []store.DiscoveredMachine
	for i := range 5 {
		batch = append(batch, store.DiscoveredMachine{MAC: netMAC(i)})
	}
	batch = append(batch, store.DiscoveredMachine{MAC: macB})
	if refused := record(t, s, 3, batch...); refused != 2 {
		t.Errorf("refused = %d, want 2 (5 new MACs, bound 3)", refused)
	}
	if refused := record(t, s, 3, store.DiscoveredMachine{MAC: netMAC(0)}, store.DiscoveredMachine{MAC: netMAC(9)}); refused != 1 {
		t.Errorf("refused = %d, want 1 (one held, one new at the bound)", refused)
	}
	ms, err := s.ListDiscovered(t.Context())
	if err != nil {
		t.Fatalf("ListDiscovered: %v", err)
	}
	if len(ms) != 3 {
		t.Fatalf("%d machines held, want 3: %+v", len(ms), ms)
	}
	for _, m := range ms {
		if m.MAC == macB {
			t.Errorf("client pc-01's MAC was recorded as discovered")
		}
		if m.MAC == netMAC(0) && m.Count != 2 {
			t.Errorf("held machine at the bound: count %d, want 2", m.Count)
		}
	}
}

func netMAC(i int) string {
	return "02:00:00:00:01:" + string("0123456789abcdef"[i/16]) + string("0123456789abcdef"[i%16])
}

// testClientRename: a rename keeps the client's volume, initiators and
// secret; names and volumes stay unique.
func testClientRename(t *testing.T, s store.Store) {
	put(t, s, store.Client{Name: "auto-1", MAC: macA, Image: "lab", CHAPSecret: "0123456789abcdef",
		Initiators: []string{"iqn.2026-11.io.dls:extra"}})
	put(t, s, store.Client{Name: "pc-02", MAC: macB})
	if err := s.RenameClient(t.Context(), "auto-1", "pc-01"); err != nil {
		t.Fatalf("RenameClient: %v", err)
	}
	if _, err := s.GetClient(t.Context(), "auto-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old name still there: %v", err)
	}
	c := get(t, s, "pc-01")
	if c.MAC != macA || c.Image != "lab" || c.CHAPSecret != "0123456789abcdef" || c.Volume != "auto-1" || c.VolumeName() != "auto-1" {
		t.Errorf("renamed client = %+v, want its MAC, image, secret and volume auto-1", c)
	}
	if byIQN, err := s.ClientByInitiator(t.Context(), "iqn.2026-11.io.dls:extra"); err != nil || byIQN.Name != "pc-01" {
		t.Errorf("ClientByInitiator after rename = %+v, %v", byIQN, err)
	}
	// A write of the client (API PUT, config) keeps the volume.
	c.Image = "lab2"
	c.Volume = ""
	put(t, s, c)
	if got := get(t, s, "pc-01"); got.Volume != "auto-1" {
		t.Errorf("PutClient dropped the volume: %+v", got)
	}
	// Renamed again: still the first volume.
	if err := s.RenameClient(t.Context(), "pc-01", "pc-09"); err != nil {
		t.Fatalf("RenameClient again: %v", err)
	}
	if got := get(t, s, "pc-09"); got.VolumeName() != "auto-1" {
		t.Errorf("second rename: volume %q, want auto-1", got.VolumeName())
	}
	for _, tc := range []struct {
		old, new string
		want     error
	}{
		{"pc-09", "pc-02", store.ErrConflict},  // another client's name
		{"pc-02", "auto-1", store.ErrConflict}, // another client's volume
		{"nobody", "pc-03", store.ErrNotFound},
		{"pc-09", " ", store.ErrInvalid},
	} {
		if err := s.RenameClient(t.Context(), tc.old, tc.new); !errors.Is(err, tc.want) {
			t.Errorf("RenameClient(%s, %s): err = %v, want %v", tc.old, tc.new, err, tc.want)
		}
	}
	// Nor may a new client take the volume's name.
	if err := s.PutClient(t.Context(), store.Client{Name: "auto-1", MAC: macC}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("new client named like a renamed client's volume: err = %v, want ErrConflict", err)
	}
	// Renamed back to the volume's name: the volume has its name again.
	if err := s.RenameClient(t.Context(), "pc-09", "auto-1"); err != nil {
		t.Fatalf("RenameClient back: %v", err)
	}
	if got := get(t, s, "auto-1"); got.Volume != "" || got.VolumeName() != "auto-1" {
		t.Errorf("renamed back: %+v", got)
	}
}
