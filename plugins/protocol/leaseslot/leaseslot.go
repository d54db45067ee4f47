// Package leaseslot is what the "dhcp" and "dhcp6" plugins' in-memory
// lease tables know of one address: who holds it and in what state, until
// when, and whom an unanswered offer holds it for. The tables themselves
// (address arithmetic, pools, reservations) stay in each plugin.
package leaseslot

import "github.com/dls-project/dls/sdk/host"

// State is an address's state. An expired lease stays Bound (or Declined)
// with an expiry in the past: it is free for anyone, and still remembered
// as its MAC's.
type State uint8

// States.
const (
	Free     State = iota // never leased
	Bound                 // leased until Expires
	Released              // given back by its client
	Declined              // a client found it in use: quarantined until Expires
	Unusable              // not to be leased: the server's own address, a network's or router's
)

// Slot is what a lease table knows of one address.
type Slot struct {
	MAC      string // the lease's MAC (raw bytes); "" for a never-leased address
	Hostname string
	Expires  int64 // unix ns: end of the lease or quarantine
	State    State
	OfferTo  string // MAC an unanswered offer (Advertise) went to
	OfferEnd int64  // unix ns the offer is held until
}

// FreeFor reports whether the address may go to mac at now (unix ns).
func (s *Slot) FreeFor(mac string, now int64) bool {
	if s.OfferTo != "" && s.OfferTo != mac && s.OfferEnd > now {
		return false
	}
	switch s.State {
	case Free, Released:
		return true
	case Bound:
		return s.MAC == mac || s.Expires <= now
	case Declined:
		return s.Expires <= now
	}
	return false
}

// Restore sets s from l, a lease the host stored, held by raw MAC mac. It
// reports false, s unchanged, for a state a table does not keep.
func (s *Slot) Restore(l host.Lease, mac string) bool {
	switch l.State {
	case host.LeaseBound:
		s.State = Bound
	case host.LeaseReleased:
		s.State = Released
	case host.LeaseDeclined:
		s.State = Declined
	default:
		return false
	}
	s.MAC, s.Hostname, s.Expires = mac, l.Hostname, l.Expires.UnixNano()
	return true
}
