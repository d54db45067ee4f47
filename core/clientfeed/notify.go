package clientfeed

import (
	"context"

	"github.com/dls-project/dls/core/store"
)

// Notify wraps st so that every committed write to its clients (and to
// its images, whose boot profiles decisions depend on: ImageChanged)
// reaches f before the write returns. The host hands the wrapped store to everything
// that writes clients; reads pass through untouched. The optional
// store.SessionBatcher of st stays visible: without it a boot storm's
// session changes would cost one commit (one fsync) each.
func Notify(st store.Store, f *Feed) store.Store {
	n := &notifying{Store: st, feed: f}
	if b, ok := st.(store.SessionBatcher); ok {
		return struct {
			*notifying
			store.SessionBatcher
		}{n, b}
	}
	return n
}

type notifying struct {
	store.Store
	feed *Feed
}

// The read-back runs even when the writer's ctx ends right after the
// commit: the change is in the store, watchers must learn it.
func (n *notifying) PutClient(ctx context.Context, c store.Client) error {
	if err := n.Store.PutClient(ctx, c); err != nil {
		return err
	}
	n.feed.Changed(context.WithoutCancel(ctx), c.Name)
	return nil
}

// PutClientsAudited implements store.ClientBatcher on every store
// (store.PutClientsAudited: one transaction where st batches). What it
// wrote is pushed, also when a store without batches failed part way.
func (n *notifying) PutClientsAudited(ctx context.Context, cs []store.Client, audit []store.AuditEntry) error {
	err := store.PutClientsAudited(ctx, n.Store, cs, audit)
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Name
	}
	n.feed.Changed(context.WithoutCancel(ctx), names...)
	return err
}

func (n *notifying) DeleteClient(ctx context.Context, name string) error {
	if err := n.Store.DeleteClient(ctx, name); err != nil {
		return err
	}
	n.feed.Changed(context.WithoutCancel(ctx), name)
	return nil
}

func (n *notifying) RenameClient(ctx context.Context, old, new string) error {
	if err := n.Store.RenameClient(ctx, old, new); err != nil {
		return err
	}
	n.feed.Changed(context.WithoutCancel(ctx), old, new)
	return nil
}
