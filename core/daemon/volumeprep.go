package daemon

import (
	"context"

	"github.com/dls-project/dls/core/store"
)

// preparingStore is the state store as the admin API and the config's
// reconciliation see it: every client they write (created, adopted,
// imported, restored, changed) has its volume made in the background
// (hostservices.PrepareVolume), so that its first iSCSI login finds the
// clone ready.
type preparingStore struct {
	store.Store
	prepare func(client string)
}

// PutClient implements store.Clients.
func (p preparingStore) PutClient(ctx context.Context, c store.Client) error {
	if err := p.Store.PutClient(ctx, c); err != nil {
		return err
	}
	p.prepare(c.Name)
	return nil
}

// RenameClient implements store.Clients: the renamed client's volume is
// looked at again under its new name.
func (p preparingStore) RenameClient(ctx context.Context, old, new string) error {
	if err := p.Store.RenameClient(ctx, old, new); err != nil {
		return err
	}
	p.prepare(new)
	return nil
}
