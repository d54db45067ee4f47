package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
)

// selectClient reads a client and its initiators in one statement, so a
// lookup needs no transaction to be consistent and costs one query on the
// DHCP path.
const selectClient = `SELECT c.name, c.mac, c.image, c.address, c.persistent, c.labels,
	c.chap_secret, c.chap_mutual_secret, c.extra_addresses, c.created_at, c.updated_at,
	(SELECT json_group_array(i.iqn ORDER BY i.position) FROM client_initiators i WHERE i.client_id = c.id)
FROM clients c`

// PutClient implements store.Clients.
func (s *Store) PutClient(ctx context.Context, c store.Client) error {
	c, err := c.Normalize()
	if err != nil {
		return fmt.Errorf("put client: %w", err)
	}
	labels, err := json.Marshal(c.Labels)
	if err != nil {
		return fmt.Errorf("put client %s: labels: %w", c.Name, err)
	}
	if c.Labels == nil {
		labels = []byte("{}")
	}
	extra, err := json.Marshal(addrStrings(c.ExtraAddresses))
	if err != nil {
		return fmt.Errorf("put client %s: extra addresses: %w", c.Name, err)
	}
	var address any // NULL when there is no reservation
	if c.Address.IsValid() {
		address = c.Address.String()
	}
	now := time.Now().UnixMilli()

	err = s.inTx(ctx, s.write, func(tx *sql.Tx) error {
		// Name the client already holding the MAC or address, which a bare
		// UNIQUE failure would not.
		if holder, err := s.clientWhere(ctx, tx, "mac = ? AND name <> ?", c.MAC, c.Name); err != nil {
			return err
		} else if holder != "" {
			return fmt.Errorf("mac %s belongs to client %s: %w", c.MAC, holder, store.ErrConflict)
		}
		if address != nil {
			if holder, err := s.clientWhere(ctx, tx, "address = ? AND name <> ?", address, c.Name); err != nil {
				return err
			} else if holder != "" {
				return fmt.Errorf("address %s is reserved for client %s: %w", address, holder, store.ErrConflict)
			}
		}
		var id int64
		err := s.queryRow(ctx, tx, `INSERT INTO clients
			(name, mac, image, address, persistent, labels, chap_secret, chap_mutual_secret, extra_addresses, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET
				mac = excluded.mac, image = excluded.image, address = excluded.address,
				persistent = excluded.persistent, labels = excluded.labels,
				chap_secret = excluded.chap_secret, chap_mutual_secret = excluded.chap_mutual_secret,
				extra_addresses = excluded.extra_addresses, updated_at = excluded.updated_at
			RETURNING id`,
			[]any{c.Name, c.MAC, c.Image, address, c.Persistent, string(labels),
				c.CHAPSecret, c.CHAPMutualSecret, string(extra), now, now}, &id)
		if err != nil {
			return conflict(err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM client_initiators WHERE client_id = ?`, id); err != nil {
			return err
		}
		for pos, iqn := range c.Initiators {
			var holder string
			err := s.queryRow(ctx, tx, `SELECT c.name FROM client_initiators i
				JOIN clients c ON c.id = i.client_id WHERE i.iqn = ?`, []any{iqn}, &holder)
			switch {
			case err == nil:
				return fmt.Errorf("initiator %s belongs to client %s: %w", iqn, holder, store.ErrConflict)
			case !errors.Is(err, sql.ErrNoRows):
				return err
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO client_initiators (iqn, client_id, position) VALUES (?, ?, ?)`,
				iqn, id, pos); err != nil {
				return conflict(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put client %s: %w", c.Name, err)
	}
	return nil
}

// clientWhere returns the name of a client matching where, or "".
func (s *Store) clientWhere(ctx context.Context, q querier, where string, args ...any) (string, error) {
	var name string
	err := s.queryRow(ctx, q, `SELECT name FROM clients WHERE `+where+` LIMIT 1`, args, &name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return name, err
}

// GetClient implements store.Clients.
func (s *Store) GetClient(ctx context.Context, name string) (store.Client, error) {
	c, err := s.oneClient(ctx, `c.name = ?`, name)
	if err != nil {
		return c, fmt.Errorf("get client %s: %w", name, err)
	}
	return c, nil
}

// ClientByMAC implements store.Clients.
func (s *Store) ClientByMAC(ctx context.Context, mac string) (store.Client, error) {
	canonical, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Client{}, fmt.Errorf("client by mac: %w", err)
	}
	c, err := s.oneClient(ctx, `c.mac = ?`, canonical)
	if err != nil {
		return c, fmt.Errorf("client by mac %s: %w", canonical, err)
	}
	return c, nil
}

// ClientByInitiator implements store.Clients.
func (s *Store) ClientByInitiator(ctx context.Context, iqn string) (store.Client, error) {
	iqn = strings.ToLower(strings.TrimSpace(iqn))
	c, err := s.oneClient(ctx, `c.id = (SELECT client_id FROM client_initiators WHERE iqn = ?)`, iqn)
	if err != nil {
		return c, fmt.Errorf("client by initiator %s: %w", iqn, err)
	}
	return c, nil
}

func (s *Store) oneClient(ctx context.Context, where string, arg any) (store.Client, error) {
	var r clientRow
	err := s.queryRow(ctx, s.read, selectClient+` WHERE `+where, []any{arg}, r.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Client{}, store.ErrNotFound
	}
	if err != nil {
		return store.Client{}, err
	}
	return r.client()
}

// ListClients implements store.Clients.
func (s *Store) ListClients(ctx context.Context) ([]store.Client, error) {
	var cs []store.Client
	err := s.query(ctx, s.read, selectClient+` ORDER BY c.name`, nil, func(rows *sql.Rows) error {
		var r clientRow
		if err := rows.Scan(r.dest()...); err != nil {
			return err
		}
		c, err := r.client()
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
func (s *Store) DeleteClient(ctx context.Context, name string) error {
	res, err := s.exec(ctx, s.write, `DELETE FROM clients WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete client %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("delete client %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("delete client %s: %w", name, store.ErrNotFound)
	}
	return nil
}

// clientRow is a selectClient row before conversion.
type clientRow struct {
	c                    store.Client
	address              sql.NullString
	labels, initiators   string
	extra                string
	createdAt, updatedAt int64
}

func (r *clientRow) dest() []any {
	return []any{&r.c.Name, &r.c.MAC, &r.c.Image, &r.address, &r.c.Persistent, &r.labels,
		&r.c.CHAPSecret, &r.c.CHAPMutualSecret, &r.extra, &r.createdAt, &r.updatedAt, &r.initiators}
}

func (r *clientRow) client() (store.Client, error) {
	c := r.c
	if r.address.Valid {
		a, err := netip.ParseAddr(r.address.String)
		if err != nil {
			return c, fmt.Errorf("client %s: stored address: %w", c.Name, err)
		}
		c.Address = a
	}
	if err := json.Unmarshal([]byte(r.labels), &c.Labels); err != nil {
		return c, fmt.Errorf("client %s: stored labels: %w", c.Name, err)
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if err := json.Unmarshal([]byte(r.initiators), &c.Initiators); err != nil {
		return c, fmt.Errorf("client %s: stored initiators: %w", c.Name, err)
	}
	if len(c.Initiators) == 0 {
		c.Initiators = nil
	}
	var extra []string
	if err := json.Unmarshal([]byte(r.extra), &extra); err != nil {
		return c, fmt.Errorf("client %s: stored extra addresses: %w", c.Name, err)
	}
	for _, s := range extra {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return c, fmt.Errorf("client %s: stored extra address: %w", c.Name, err)
		}
		c.ExtraAddresses = append(c.ExtraAddresses, a)
	}
	c.CreatedAt = time.UnixMilli(r.createdAt).UTC()
	c.UpdatedAt = time.UnixMilli(r.updatedAt).UTC()
	return c, nil
}

// addrStrings returns as (never nil, so it marshals as []).
func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
