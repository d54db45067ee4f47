// Package clientfeed keeps the host's table of clients versioned and
// pushes its changes to watchers (the DHCP plugin's table, through
// hostservices' Watch), so that a plugin can answer a machine from memory
// and still never use a decision older than the last committed change by
// more than the push in flight.
//
// Every write to the clients goes through the store Notify wraps (the
// admin API, the reconcile of the config's client blocks, adopt, rename,
// registration of unknown machines, restore): after the write commits,
// the feed reads the written clients back and sends what changed, with
// the next version, before the write returns. A periodic Resync (Run)
// catches what bypasses this host: another host writing a shared
// Postgres, or a failed read-back.
//
// A watcher gets a snapshot first, then the changes in order. One that
// falls behind (maxQueued changes waiting) is cut off and watches again,
// getting a fresh snapshot: the feed never blocks a write on a slow
// watcher and never drops a change a watcher would not notice.
package clientfeed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
)

// maxQueued is how many changes may wait for one watcher before it is
// cut off (it then resyncs from a snapshot).
const maxQueued = 1024

// DefaultResync is how often Run compares the feed with the store.
const DefaultResync = 30 * time.Second

// ErrBehind ends a watch whose watcher did not keep up with the changes
// (or that the feed could not keep exact): watch again for a snapshot.
var ErrBehind = errors.New("client feed: watcher fell behind; watch again for a snapshot")

// Change is one step of the table.
type Change struct {
	// Version numbers the table after this change.
	Version uint64
	// Full: Set is the whole table (a snapshot).
	Full bool
	// Set are the clients added or changed.
	Set []store.Client
	// Removed are the MACs no longer held by any client.
	Removed []string
}

// Feed is the versioned table of clients. The zero value is not usable:
// use New.
type Feed struct {
	st store.Clients

	mu      sync.Mutex // held across the store reads, so changes apply in commit order
	version uint64
	subs    map[*sub]struct{}

	// rmu guards what the readers (Client, ClientByMAC, ClientByInitiator)
	// see. Writers hold mu and take rmu only while they change the maps,
	// never across a store read, so a reader never waits for the disk.
	rmu         sync.RWMutex
	loaded      bool                    // byName mirrors the store (Load, or the first Watch)
	byName      map[string]store.Client // by name
	byMAC       map[string]string       // canonical MAC → name
	byInitiator map[string]string       // extra initiator IQN (lower case) → name
}

type sub struct {
	ch     chan Change
	behind bool // cut off: ch is closed
}

// New returns a feed reading clients from st (the store underneath Notify's
// wrapper, or the wrapper itself: the feed only reads).
func New(st store.Clients) *Feed {
	return &Feed{st: st, byName: map[string]store.Client{}, byMAC: map[string]string{}, byInitiator: map[string]string{}, subs: map[*sub]struct{}{}}
}

// Version is the table's current version (0 before the first Watch).
func (f *Feed) Version() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.version
}

// Watch calls fn with a snapshot, then with every change, until ctx ends
// (ctx's error), fn fails (its error) or the watcher falls behind
// (ErrBehind).
func (f *Feed) Watch(ctx context.Context, fn func(Change) error) error {
	f.mu.Lock()
	if !f.loaded {
		if err := f.reloadLocked(ctx); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	snap := Change{Version: f.version, Full: true, Set: make([]store.Client, 0, len(f.byName))}
	for _, c := range f.byName {
		snap.Set = append(snap.Set, c)
	}
	s := &sub{ch: make(chan Change, maxQueued)}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}()

	slices.SortFunc(snap.Set, func(a, b store.Client) int { return strings.Compare(a.Name, b.Name) })
	if err := fn(snap); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c, ok := <-s.ch:
			if !ok {
				return ErrBehind
			}
			if err := fn(c); err != nil {
				return err
			}
		}
	}
}

// Changed reads the clients called names back from the store and pushes
// what differs from the table. Call it after a write commits. When the
// read fails the watchers are cut off (they resync from a snapshot, which
// reads the store again), so no watcher keeps a table it cannot trust.
func (f *Feed) Changed(ctx context.Context, names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.loaded {
		return // nobody watches: the first Watch reads the store
	}
	var set []store.Client
	var removed []string
	for _, n := range names {
		c, err := f.st.GetClient(ctx, n)
		old, had := f.byName[n]
		switch {
		case errors.Is(err, store.ErrNotFound):
			if had {
				f.removeLocked(n)
				removed = append(removed, old.MAC)
			}
		case err != nil:
			f.resetLocked()
			return
		default:
			if had && sameClient(old, c) {
				continue
			}
			if had && old.MAC != c.MAC {
				removed = append(removed, old.MAC)
			}
			f.putLocked(c)
			set = append(set, c)
		}
	}
	f.publishLocked(set, removed)
}

// Resync compares the table with the whole store and pushes the
// difference (what other hosts changed in a shared database). A table
// dropped after a failed read is loaded again.
func (f *Feed) Resync(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.loaded {
		return f.reloadLocked(ctx)
	}
	all, err := f.st.ListClients(ctx)
	if err != nil {
		f.resetLocked()
		return fmt.Errorf("client feed resync: %w", err)
	}
	now := make(map[string]store.Client, len(all))
	var set []store.Client
	var removed []string
	for _, c := range all {
		now[c.Name] = c
		if old, had := f.byName[c.Name]; !had || !sameClient(old, c) {
			if had && old.MAC != c.MAC {
				removed = append(removed, old.MAC)
			}
			set = append(set, c)
		}
	}
	for n, old := range f.byName {
		if _, ok := now[n]; !ok {
			removed = append(removed, old.MAC)
		}
	}
	f.replaceLocked(all, true)
	f.publishLocked(set, removed)
	return nil
}

// Run resyncs every interval until ctx ends.
func (f *Feed) Run(ctx context.Context, interval time.Duration, warn func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := f.Resync(ctx); err != nil && warn != nil {
				warn(err)
			}
		}
	}
}

// publishLocked sends one change to every watcher. A MAC both removed and
// set (one client's old MAC taken by another in one batch) stays set:
// watchers apply Removed before Set.
func (f *Feed) publishLocked(set []store.Client, removed []string) {
	if len(set) == 0 && len(removed) == 0 {
		return
	}
	f.version++
	c := Change{Version: f.version, Set: set, Removed: removed}
	for s := range f.subs {
		if s.behind {
			continue
		}
		select {
		case s.ch <- c:
		default:
			s.behind = true
			close(s.ch)
		}
	}
}

// resetLocked forgets the table and cuts every watcher off: the next
// Watch reads the store again.
func (f *Feed) resetLocked() {
	f.replaceLocked(nil, false)
	for s := range f.subs {
		if !s.behind {
			s.behind = true
			close(s.ch)
		}
	}
}

func (f *Feed) reloadLocked(ctx context.Context) error {
	all, err := f.st.ListClients(ctx)
	if err != nil {
		return fmt.Errorf("client feed: list clients: %w", err)
	}
	f.replaceLocked(all, true)
	f.version++ // a snapshot after a reset is a new version too
	return nil
}

// sameClient reports whether two reads of a client are the same (the
// timestamps aside).
func sameClient(a, b store.Client) bool {
	return a.Name == b.Name && a.MAC == b.MAC && a.Image == b.Image && a.Address == b.Address &&
		slices.Equal(a.Initiators, b.Initiators) && slices.Equal(a.ExtraAddresses, b.ExtraAddresses) &&
		a.Persistent == b.Persistent && a.CHAPSecret == b.CHAPSecret && a.CHAPMutualSecret == b.CHAPMutualSecret &&
		a.Volume == b.Volume && maps.Equal(a.Labels, b.Labels)
}
