package clientfeed

import (
	"context"
	"maps"
	"slices"
	"strings"

	"github.com/dls-project/dls/core/store"
)

// The feed's table also answers the host's own reads of one client (Reads):
// in a boot storm every DHCP query, script, iSCSI login, attach, detach and
// boot event asks for a client, and each of those was a query of the store
// (with SQLite, a statement parsed and run on a shared pool) on the path of
// a machine's boot. The table is exactly as fresh as what the feed pushes:
// it follows every write through Notify before that write returns, and
// what bypasses this host within a Resync.

// Load reads the table from the store unless it holds one already, so that
// the readers answer from memory before any plugin watches.
func (f *Feed) Load(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loaded {
		return nil
	}
	return f.reloadLocked(ctx)
}

// Client returns a copy of the client called name. ok is false when the
// feed holds no table (not loaded yet, or dropped after a failed read):
// ask the store.
func (f *Feed) Client(name string) (c store.Client, found, ok bool) {
	f.rmu.RLock()
	defer f.rmu.RUnlock()
	if !f.loaded {
		return store.Client{}, false, false
	}
	c, found = f.byName[name]
	return cloneClient(c), found, true
}

// ClientByMAC is Client by the client's MAC, in any spelling
// store.CanonicalMAC accepts (ok is false for one it refuses: the store
// says why).
func (f *Feed) ClientByMAC(mac string) (c store.Client, found, ok bool) {
	canon, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Client{}, false, false
	}
	return f.clientBy(f.byMAC, canon)
}

// ClientByInitiator is Client by one of the client's extra initiator IQNs
// (case-insensitive).
func (f *Feed) ClientByInitiator(iqn string) (c store.Client, found, ok bool) {
	return f.clientBy(f.byInitiator, strings.ToLower(iqn))
}

func (f *Feed) clientBy(index map[string]string, key string) (store.Client, bool, bool) {
	f.rmu.RLock()
	defer f.rmu.RUnlock()
	if !f.loaded {
		return store.Client{}, false, false
	}
	name, found := index[key]
	if !found {
		return store.Client{}, false, true
	}
	return cloneClient(f.byName[name]), true, true
}

// cloneClient copies the slices and map the table shares with nobody.
func cloneClient(c store.Client) store.Client {
	c.Initiators = slices.Clone(c.Initiators)
	c.ExtraAddresses = slices.Clone(c.ExtraAddresses)
	c.Labels = maps.Clone(c.Labels)
	return c
}

// putLocked sets c in the table (f.mu held).
func (f *Feed) putLocked(c store.Client) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	f.unindexLocked(c.Name)
	f.byName[c.Name] = c
	f.byMAC[c.MAC] = c.Name
	for _, iqn := range c.Initiators {
		f.byInitiator[strings.ToLower(iqn)] = c.Name
	}
}

// removeLocked drops the client called name (f.mu held).
func (f *Feed) removeLocked(name string) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	f.unindexLocked(name)
	delete(f.byName, name)
}

// unindexLocked drops name's entries from the indexes, those another
// client took since aside (f.rmu held).
func (f *Feed) unindexLocked(name string) {
	old, had := f.byName[name]
	if !had {
		return
	}
	if f.byMAC[old.MAC] == name {
		delete(f.byMAC, old.MAC)
	}
	for _, iqn := range old.Initiators {
		if k := strings.ToLower(iqn); f.byInitiator[k] == name {
			delete(f.byInitiator, k)
		}
	}
}

// replaceLocked makes all the whole table, loaded or not (f.mu held).
func (f *Feed) replaceLocked(all []store.Client, loaded bool) {
	f.rmu.Lock()
	defer f.rmu.Unlock()
	f.loaded = false // no reader sees a half-built table
	clear(f.byName)
	clear(f.byMAC)
	clear(f.byInitiator)
	for _, c := range all {
		f.byName[c.Name] = c
		f.byMAC[c.MAC] = c.Name
		for _, iqn := range c.Initiators {
			f.byInitiator[strings.ToLower(iqn)] = c.Name
		}
	}
	f.loaded = loaded
}

// Reads returns st with its reads of one client (GetClient, ClientByMAC,
// ClientByInitiator) answered from f's table while f holds one; writes and
// lists go to st. Give it a store whose writes reach f (Notify's).
func Reads(st store.Clients, f *Feed) store.Clients { return reads{Clients: st, f: f} }

type reads struct {
	store.Clients
	f *Feed
}

func (r reads) GetClient(ctx context.Context, name string) (store.Client, error) {
	if c, found, ok := r.f.Client(name); ok {
		return tableAnswer(c, found)
	}
	return r.Clients.GetClient(ctx, name)
}

func (r reads) ClientByMAC(ctx context.Context, mac string) (store.Client, error) {
	if c, found, ok := r.f.ClientByMAC(mac); ok {
		return tableAnswer(c, found)
	}
	return r.Clients.ClientByMAC(ctx, mac)
}

func (r reads) ClientByInitiator(ctx context.Context, iqn string) (store.Client, error) {
	if c, found, ok := r.f.ClientByInitiator(iqn); ok {
		return tableAnswer(c, found)
	}
	return r.Clients.ClientByInitiator(ctx, iqn)
}

func tableAnswer(c store.Client, found bool) (store.Client, error) {
	if !found {
		return store.Client{}, store.ErrNotFound
	}
	return c, nil
}
