// Package clienttable keeps a protocol plugin's copy of the host's table
// of known clients, pushed by the host (host.ClientWatcher), so that an
// answer that depends only on the MAC is decided in memory rather than by
// a Lookup per new machine. The DHCP and DHCPv6 plugins use it; a vendor's
// DHCP plugin would too.
//
// The host sends a snapshot when the plugin starts watching, then every
// committed change to its clients with the next version. While the table
// is live (its stream is up and every version arrived), a packet may be
// decided from it: a known MAC by its pushed decision, an unknown one by
// the host's unknown_clients policy, which the table carries:
//
//	ignore    no answer (as the host's Lookup would say)
//	discover  no answer; a dhcp_unknown event goes to the host (through
//	          an event batcher, never blocking the packet), and the host
//	          records the machine from it
//	register  a synchronous Lookup: the host must create the client
//	          before the answer can name it; its push follows
//
// When the table is not live (before the first snapshot, after a broken
// stream until the next snapshot, against a host without Watch), Get says
// so and the plugin asks the host per packet. So no packet is ever decided
// from a table that missed a change.
package clienttable

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Values of host.ClientUpdate.UnknownClients a plugin acts on (any other
// value, "ignore" among them, means no answer).
const (
	PolicyRegister = "register"
	PolicyDiscover = "discover"
)

// SyncWait bounds how long Wait waits for the first snapshot.
const SyncWait = 2 * time.Second

// Reconnection of a broken watch: from RetryMin, doubling, at most
// retryMax apart.
const (
	RetryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

// ErrVersionGap ends a watch that skipped a version (Follow watches again).
var ErrVersionGap = errors.New("client table: a version is missing")

// Table is the host's pushed table of known clients, keyed by raw 6-byte
// MAC, as packets carry it. Its methods are safe for concurrent use.
type Table struct {
	mu      sync.RWMutex
	live    bool // stream up, snapshot and every change since applied
	version uint64
	policy  string
	byMAC   map[string]host.Decision
	ready   chan struct{} // closed by the first snapshot, or when the host cannot push
	once    sync.Once
}

// New returns an empty table, not live.
func New() *Table {
	return &Table{byMAC: map[string]host.Decision{}, ready: make(chan struct{})}
}

// Reservation is a change to a client's reserved address that an update
// implies: MAC (raw 6 bytes) now reserves Address ("": none).
type Reservation struct {
	MAC     string
	Address string
}

// Apply applies u and returns the reservations that changed. A change
// that is not the next version, or that comes before a snapshot, is
// refused (ErrVersionGap) and leaves the table not live. Entries whose
// MAC is not a 6-byte MAC are passed over: no packet can carry them.
func (t *Table) Apply(u host.ClientUpdate) ([]Reservation, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !u.Full && (!t.live || u.Version != t.version+1) {
		t.live = false
		return nil, fmt.Errorf("%w: have %d, got %d", ErrVersionGap, t.version, u.Version)
	}
	var res []Reservation
	if u.Full {
		old := t.byMAC
		t.byMAC = make(map[string]host.Decision, len(u.Set))
		for m, d := range old {
			if d.ReservedAddress != "" {
				res = append(res, Reservation{MAC: m}) // set again below if still reserved
			}
		}
	}
	for _, m := range u.Removed {
		raw, err := RawMAC(m)
		if err != nil {
			continue
		}
		if d, ok := t.byMAC[raw]; ok && d.ReservedAddress != "" {
			res = append(res, Reservation{MAC: raw})
		}
		delete(t.byMAC, raw)
	}
	for _, e := range u.Set {
		raw, err := RawMAC(e.MAC)
		if err != nil {
			continue
		}
		old, had := t.byMAC[raw]
		e.Decision.Known = true
		t.byMAC[raw] = e.Decision
		if e.Decision.ReservedAddress != "" || (had && old.ReservedAddress != "") {
			res = append(res, Reservation{MAC: raw, Address: e.Decision.ReservedAddress})
		}
	}
	t.version, t.policy, t.live = u.Version, u.UnknownClients, true
	t.settle()
	return res, nil
}

// settle ends Wait (closes ready once).
func (t *Table) settle() { t.once.Do(func() { close(t.ready) }) }

// lost marks the table not live: its stream broke.
func (t *Table) lost() {
	t.mu.Lock()
	t.live = false
	t.mu.Unlock()
}

// Get returns mac's (raw 6 bytes) decision, Known false for an unknown
// MAC, and the unknown_clients policy; live is false when the table must
// not be used.
func (t *Table) Get(mac string) (d host.Decision, policy string, live bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if !t.live {
		return host.Decision{}, "", false
	}
	return t.byMAC[mac], t.policy, true
}

// State is the version and size of the table, and whether it is live.
func (t *Table) State() (version uint64, clients int, live bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.version, len(t.byMAC), t.live
}

// Ready is closed once the first snapshot is applied, or once Follow
// learnt that the host cannot push.
func (t *Table) Ready() <-chan struct{} { return t.ready }

// Wait waits for Ready, at most SyncWait or until ctx ends, so that a
// plugin that just started answers from the table from its first packet
// in the usual case. It logs when SyncWait ran out.
func (t *Table) Wait(ctx context.Context, logger hclog.Logger) {
	timer := time.NewTimer(SyncWait)
	defer timer.Stop()
	select {
	case <-t.ready:
	case <-timer.C:
		logger.Warn("no client table from the host yet; asking it per machine until it comes", "waited", SyncWait)
	case <-ctx.Done():
	}
}

// RawMAC is the 6-byte form of a canonical MAC.
func RawMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("client table: MAC %q: not a 6-byte MAC", s)
	}
	return string(hw), nil
}

// Follow keeps t live until ctx ends: it watches w, and watches again
// after a broken stream (from RetryMin apart, doubling). reserve, when
// not nil, gets each changed reservation as it is applied. A host that
// cannot push (Unimplemented, or a grant without "lookup") settles the
// table not live for good: the plugin asks it per machine.
func (t *Table) Follow(ctx context.Context, w host.ClientWatcher, logger hclog.Logger, reserve func(Reservation)) {
	apply := func(u host.ClientUpdate) error {
		res, err := t.Apply(u)
		if reserve != nil {
			for _, r := range res {
				reserve(r)
			}
		}
		return err
	}
	wait := RetryMin
	for {
		began := time.Now()
		err := w.Watch(ctx, apply)
		t.lost()
		if ctx.Err() != nil {
			return
		}
		switch status.Code(err) {
		case codes.Unimplemented, codes.PermissionDenied:
			logger.Info("the host does not push its clients; asking it per new machine", "error", err)
			t.settle()
			return
		}
		if time.Since(began) > retryMax {
			wait = RetryMin // it ran for a while: a fresh failure
		}
		logger.Warn("client table stream broke; asking the host per machine until it is back", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}
