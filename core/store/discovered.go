package store

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Discovered holds the machines that asked to boot without being clients
// (boot.unknown_clients = "discover"), until an admin adopts them (makes
// them clients) or forgets them.
type Discovered interface {
	// RecordDiscovered adds a batch of sightings in one transaction. A MAC
	// already held gets the later LastSeen, its Count grows by the
	// sighting's, and Arch, VendorClass, UserClass and Address take the
	// sighting's when it has them. A new MAC is added while the table holds
	// fewer than max machines (max <= 0: no bound); the answer is how many
	// new MACs the bound refused. A MAC that belongs to a client (adopted
	// meanwhile) is skipped. ErrInvalid (nothing written) for a sighting
	// that fails Normalize.
	RecordDiscovered(ctx context.Context, ms []DiscoveredMachine, max int) (refused int, err error)
	// ListDiscovered returns every discovered machine in order of first
	// sight (then MAC).
	ListDiscovered(ctx context.Context) ([]DiscoveredMachine, error)
	// GetDiscovered returns the machine with mac (any spelling), or
	// ErrNotFound.
	GetDiscovered(ctx context.Context, mac string) (DiscoveredMachine, error)
	// DeleteDiscovered forgets the machine with mac, or returns
	// ErrNotFound.
	DeleteDiscovered(ctx context.Context, mac string) error
}

// DiscoveredMachine is a machine that asked to boot and is no client.
type DiscoveredMachine struct {
	// MAC is canonical ("aa:bb:cc:dd:ee:ff") once stored.
	MAC string
	// FirstSeen and LastSeen bound its sightings (millisecond precision).
	FirstSeen time.Time
	LastSeen  time.Time
	// Arch is DHCP option 93 (0 BIOS or not told, 7 and 9 UEFI x64, ...).
	Arch uint16
	// VendorClass is DHCP option 60 ("PXEClient:Arch:00007:..."), UserClass
	// option 77 ("iPXE").
	VendorClass string
	UserClass   string
	// Address is where it asked from: its DHCP relay, or the source
	// address of its request; the zero Addr when not known.
	Address netip.Addr
	// Count is how many times it asked (a sighting may stand for several).
	Count int64
}

// Normalize returns m in the form the store keeps (canonical MAC, times
// set, Count at least 1, address unmapped), or an error wrapping
// ErrInvalid.
func (m DiscoveredMachine) Normalize() (DiscoveredMachine, error) {
	mac, err := CanonicalMAC(m.MAC)
	if err != nil {
		return m, fmt.Errorf("discovered machine: %w", err)
	}
	m.MAC = mac
	if m.LastSeen.IsZero() {
		m.LastSeen = time.Now()
	}
	if m.FirstSeen.IsZero() || m.FirstSeen.After(m.LastSeen) {
		m.FirstSeen = m.LastSeen
	}
	if m.Count < 1 {
		m.Count = 1
	}
	if m.Address.IsValid() {
		m.Address = m.Address.Unmap().WithZone("")
	}
	// Option 60 and 77 are at most 255 bytes on the wire; keep the store's
	// rows small whatever a plugin hands over.
	m.VendorClass = classText(m.VendorClass)
	m.UserClass = classText(m.UserClass)
	return m, nil
}

// classText is a DHCP class option as the store keeps it: valid UTF-8
// without NUL (PostgreSQL's text holds neither), at most 255 bytes (the
// option's own bound: a plugin's value is no larger once stored).
func classText(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "?")
	if len(s) > 255 {
		s = strings.ToValidUTF8(s[:255], "")
	}
	return s
}
