package hostservices

import (
	"context"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
)

// registrations group-commits the clients registered at their first DHCP
// (unknown_clients = "register"). Each one is a client and its audit entry;
// written one by one, a storm of a thousand never-seen machines was two
// commits (two fsyncs) per machine behind the DHCP plugin's workers. The
// first registration to find the writer idle is written at once; those
// that arrive meanwhile go together in the next transaction, so there is
// no gather delay.
type registrations struct {
	// write stores a batch, all or nothing (store.PutClientsAudited).
	write func(ctx context.Context, cs []store.Client, audit []store.AuditEntry) error

	mu      sync.Mutex
	pending []*registration
	byName  map[string]*registration // queued or being written
	writing bool
}

type registration struct {
	c      store.Client
	audit  store.AuditEntry
	joined int           // other registrations of the name waiting for this one
	done   chan struct{} // closed once written or failed
	err    error
}

// registrationTimeout bounds one batch's transaction: its writer may be a
// request whose own context has ended, and the batch serves others too.
const registrationTimeout = 30 * time.Second

// put stores c with its audit entry, together with the
// registrations queued meanwhile, and returns c's own outcome. A second
// registration of a name already queued (the same machine's retransmit)
// waits for the first and shares its outcome: joined is true.
func (r *registrations) put(ctx context.Context, c store.Client, e store.AuditEntry) (joined bool, err error) {
	r.mu.Lock()
	if r.byName == nil {
		r.byName = map[string]*registration{}
	}
	if same, ok := r.byName[c.Name]; ok {
		same.joined++
		r.mu.Unlock()
		return true, awaitRegistration(ctx, same)
	}
	reg := &registration{c: c, audit: e, done: make(chan struct{})}
	r.byName[c.Name] = reg
	r.pending = append(r.pending, reg)
	if r.writing {
		r.mu.Unlock()
		return false, awaitRegistration(ctx, reg)
	}
	r.writing = true
	for len(r.pending) > 0 {
		batch := r.pending
		r.pending = nil
		r.mu.Unlock()
		r.writeBatch(ctx, batch)
		r.mu.Lock()
		for _, g := range batch {
			delete(r.byName, g.c.Name)
			close(g.done)
		}
	}
	r.writing = false
	r.mu.Unlock()
	return false, reg.err
}

func awaitRegistration(ctx context.Context, reg *registration) error {
	select {
	case <-reg.done:
		return reg.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeBatch stores a batch in one transaction. One bad
// registration (a MAC another client took meanwhile) fails the whole
// transaction: then each is put alone, so the others pass and each gets
// its own error.
func (r *registrations) writeBatch(ctx context.Context, batch []*registration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registrationTimeout)
	defer cancel()
	cs := make([]store.Client, len(batch))
	audit := make([]store.AuditEntry, len(batch))
	for i, g := range batch {
		cs[i], audit[i] = g.c, g.audit
	}
	err := r.write(ctx, cs, audit)
	if err == nil || len(batch) == 1 {
		for _, g := range batch {
			g.err = err
		}
		return
	}
	for _, g := range batch {
		g.err = r.write(ctx, []store.Client{g.c}, []store.AuditEntry{g.audit})
	}
}
