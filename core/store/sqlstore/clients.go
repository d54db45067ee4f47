package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
)

// selectClient reads a client and its initiators in one statement, so a
// lookup needs no transaction to be consistent and costs one query on the
// DHCP path.
func selectClient(d Dialect) string {
	return `SELECT c.name, c.mac, c.image, c.address, c.persistent, c.labels,
	c.chap_secret, c.chap_mutual_secret, ` + d.JSONArray("c.extra_addresses") + `, c.created_at, c.updated_at, c.volume,
	(SELECT ` + d.JSONArrayAgg("i.iqn", "i.position") + ` FROM client_initiators i WHERE i.client_id = c.id)
FROM clients c`
}

// PutClient implements store.Clients.
func (t *Tables) PutClient(ctx context.Context, c store.Client) error {
	if err := t.db.InTx(ctx, func(tx Conn) error { return t.putClient(ctx, tx, c) }); err != nil {
		return fmt.Errorf("put client %s: %w", c.Name, err)
	}
	return nil
}

// PutClientsAudited implements store.ClientBatcher: the clients, then the
// audit entries, in one transaction.
func (t *Tables) PutClientsAudited(ctx context.Context, cs []store.Client, audit []store.AuditEntry) error {
	return t.db.InTx(ctx, func(tx Conn) error {
		for _, c := range cs {
			if err := t.putClient(ctx, tx, c); err != nil {
				return fmt.Errorf("put client %s: %w", c.Name, err)
			}
		}
		for _, e := range audit {
			if err := t.appendAudit(ctx, tx, e); err != nil {
				return err
			}
		}
		return nil
	})
}

// putClient is PutClient within tx.
func (t *Tables) putClient(ctx context.Context, tx Conn, c store.Client) error {
	c, err := c.Normalize()
	if err != nil {
		return err
	}
	labels, err := json.Marshal(c.Labels)
	if err != nil {
		return fmt.Errorf("labels: %w", err)
	}
	if c.Labels == nil {
		labels = []byte("{}")
	}
	extra, err := t.d.Addrs(c.ExtraAddresses)
	if err != nil {
		return fmt.Errorf("extra addresses: %w", err)
	}
	address := t.d.Addr(c.Address) // NULL when there is no reservation
	now := t.d.Time(time.Now())

	// Name the client already holding the MAC or address, which a bare
	// unique violation would not. Another writer may still win the
	// race between this check and the write: Conflict maps its unique
	// violation to ErrConflict.
	if holder, err := t.clientWhere(ctx, tx, "mac = ? AND name <> ?", c.MAC, c.Name); err != nil {
		return err
	} else if holder != "" {
		return fmt.Errorf("mac %s belongs to client %s: %w", c.MAC, holder, store.ErrConflict)
	}
	// A renamed client's volume keeps its old name: a new client of
	// that name would share the disk.
	if holder, err := t.clientWhere(ctx, tx, "volume = ? AND name <> ?", c.Name, c.Name); err != nil {
		return err
	} else if holder != "" {
		return fmt.Errorf("name %s is the volume of client %s (renamed from it): %w", c.Name, holder, store.ErrConflict)
	}
	if c.Address.IsValid() {
		if holder, err := t.clientWhere(ctx, tx, "address = ? AND name <> ?", address, c.Name); err != nil {
			return err
		} else if holder != "" {
			return fmt.Errorf("address %s is reserved for client %s: %w", c.Address, holder, store.ErrConflict)
		}
	}
	var id int64
	_, err = tx.QueryRow(ctx, Bind(t.d, `INSERT INTO clients
			(name, mac, image, address, persistent, labels, chap_secret, chap_mutual_secret, extra_addresses, volume, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET
				mac = excluded.mac, image = excluded.image, address = excluded.address,
				persistent = excluded.persistent, labels = excluded.labels,
				chap_secret = excluded.chap_secret, chap_mutual_secret = excluded.chap_mutual_secret,
				extra_addresses = excluded.extra_addresses, updated_at = excluded.updated_at
			RETURNING id`),
		[]any{c.Name, c.MAC, c.Image, address, c.Persistent, string(labels),
			c.CHAPSecret, c.CHAPMutualSecret, extra, c.Volume, now, now}, &id)
	if err != nil {
		return t.db.Conflict(err)
	}
	if _, err := tx.Exec(ctx, Bind(t.d, `DELETE FROM client_initiators WHERE client_id = ?`), id); err != nil {
		return err
	}
	for pos, iqn := range c.Initiators {
		var holder string
		found, err := tx.QueryRow(ctx, Bind(t.d, `SELECT c.name FROM client_initiators i
				JOIN clients c ON c.id = i.client_id WHERE i.iqn = ?`), []any{iqn}, &holder)
		if err != nil {
			return err
		}
		if found {
			return fmt.Errorf("initiator %s belongs to client %s: %w", iqn, holder, store.ErrConflict)
		}
		if _, err := tx.Exec(ctx, Bind(t.d, `INSERT INTO client_initiators (iqn, client_id, position) VALUES (?, ?, ?)`),
			iqn, id, pos); err != nil {
			return t.db.Conflict(err)
		}
	}
	return nil
}

// clientWhere returns the name of a client matching where (with ?
// parameters), or "".
func (t *Tables) clientWhere(ctx context.Context, q Conn, where string, args ...any) (string, error) {
	var name string
	_, err := q.QueryRow(ctx, Bind(t.d, `SELECT name FROM clients WHERE `+where+` LIMIT 1`), args, &name)
	return name, err
}

// GetClient implements store.Clients.
func (t *Tables) GetClient(ctx context.Context, name string) (store.Client, error) {
	c, err := t.oneClient(ctx, t.q.clientByName, name)
	if err != nil {
		return c, fmt.Errorf("get client %s: %w", name, err)
	}
	return c, nil
}

// ClientByMAC implements store.Clients.
func (t *Tables) ClientByMAC(ctx context.Context, mac string) (store.Client, error) {
	canonical, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Client{}, fmt.Errorf("client by mac: %w", err)
	}
	c, err := t.oneClient(ctx, t.q.clientByMAC, canonical)
	if err != nil {
		return c, fmt.Errorf("client by mac %s: %w", canonical, err)
	}
	return c, nil
}

// ClientByInitiator implements store.Clients.
func (t *Tables) ClientByInitiator(ctx context.Context, iqn string) (store.Client, error) {
	iqn = strings.ToLower(strings.TrimSpace(iqn))
	c, err := t.oneClient(ctx, t.q.clientByInitiator, iqn)
	if err != nil {
		return c, fmt.Errorf("client by initiator %s: %w", iqn, err)
	}
	return c, nil
}

func (t *Tables) oneClient(ctx context.Context, query string, arg any) (store.Client, error) {
	var r clientRow
	found, err := t.db.Read().QueryRow(ctx, query, []any{arg}, r.dest()...)
	if err != nil {
		return store.Client{}, err
	}
	if !found {
		return store.Client{}, store.ErrNotFound
	}
	return r.client(t.d)
}

// ListClients implements store.Clients.
func (t *Tables) ListClients(ctx context.Context) ([]store.Client, error) {
	var cs []store.Client
	err := t.db.Read().Query(ctx, t.q.listClients, nil, func(row Row) error {
		var r clientRow
		if err := row.Scan(r.dest()...); err != nil {
			return err
		}
		c, err := r.client(t.d)
		if err != nil {
			return err
		}
		cs = append(cs, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	return cs, nil
}

// DeleteClient implements store.Clients. Its initiators go with it (ON
// DELETE CASCADE).
func (t *Tables) DeleteClient(ctx context.Context, name string) error {
	n, err := t.db.Write().Exec(ctx, Bind(t.d, `DELETE FROM clients WHERE name = ?`), name)
	if err != nil {
		return fmt.Errorf("delete client %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("delete client %s: %w", name, store.ErrNotFound)
	}
	return nil
}

// RenameClient implements store.Clients. The row keeps its id, so its
// initiators stay with it.
func (t *Tables) RenameClient(ctx context.Context, old, new string) error {
	if strings.TrimSpace(new) == "" {
		return fmt.Errorf("rename client %s: new name is empty: %w", old, store.ErrInvalid)
	}
	err := t.db.InTx(ctx, func(tx Conn) error {
		var volume string
		found, err := tx.QueryRow(ctx, Bind(t.d, `SELECT volume FROM clients WHERE name = ?`), []any{old}, &volume)
		if err != nil {
			return err
		}
		if !found {
			return store.ErrNotFound
		}
		if old == new {
			return nil
		}
		if volume == "" {
			volume = old
		}
		if holder, err := t.clientWhere(ctx, tx, "name = ?", new); err != nil {
			return err
		} else if holder != "" {
			return fmt.Errorf("client %s exists: %w", new, store.ErrConflict)
		}
		if holder, err := t.clientWhere(ctx, tx, "volume = ? AND name <> ?", new, old); err != nil {
			return err
		} else if holder != "" {
			return fmt.Errorf("name %s is the volume of client %s: %w", new, holder, store.ErrConflict)
		}
		if volume == new {
			volume = "" // renamed back: the volume has its name again
		}
		_, err = tx.Exec(ctx, Bind(t.d, `UPDATE clients SET name = ?, volume = ?, updated_at = ? WHERE name = ?`),
			new, volume, t.d.Time(time.Now()), old)
		return t.db.Conflict(err)
	})
	if err != nil {
		return fmt.Errorf("rename client %s to %s: %w", old, new, err)
	}
	return nil
}

// clientRow is a selectClient row before conversion.
type clientRow struct {
	c                         store.Client
	address                   any
	labels, extra, initiators []byte // JSON
	createdAt, updatedAt      any
}

func (r *clientRow) dest() []any {
	return []any{&r.c.Name, &r.c.MAC, &r.c.Image, &r.address, &r.c.Persistent, &r.labels,
		&r.c.CHAPSecret, &r.c.CHAPMutualSecret, &r.extra, &r.createdAt, &r.updatedAt, &r.c.Volume, &r.initiators}
}

func (r *clientRow) client(d Dialect) (store.Client, error) {
	c := r.c
	var err error
	if c.Address, err = d.ScanAddr(r.address); err != nil {
		return c, fmt.Errorf("client %s: stored address: %w", c.Name, err)
	}
	if err := json.Unmarshal(r.labels, &c.Labels); err != nil {
		return c, fmt.Errorf("client %s: stored labels: %w", c.Name, err)
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if err := json.Unmarshal(r.initiators, &c.Initiators); err != nil {
		return c, fmt.Errorf("client %s: stored initiators: %w", c.Name, err)
	}
	if len(c.Initiators) == 0 {
		c.Initiators = nil
	}
	var extra []string
	if err := json.Unmarshal(r.extra, &extra); err != nil {
		return c, fmt.Errorf("client %s: stored extra addresses: %w", c.Name, err)
	}
	for _, s := range extra {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return c, fmt.Errorf("client %s: stored extra address: %w", c.Name, err)
		}
		c.ExtraAddresses = append(c.ExtraAddresses, a)
	}
	if c.CreatedAt, err = d.ScanTime(r.createdAt); err != nil {
		return c, fmt.Errorf("client %s: stored created_at: %w", c.Name, err)
	}
	if c.UpdatedAt, err = d.ScanTime(r.updatedAt); err != nil {
		return c, fmt.Errorf("client %s: stored updated_at: %w", c.Name, err)
	}
	return c, nil
}
