package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dls-project/dls/core/store"
)

// selectClient reads a client and its initiators in one statement, so a
// lookup needs no transaction to be consistent and costs one query on the
// DHCP path.
const selectClient = `SELECT c.name, c.mac, c.image, c.address, c.persistent, c.labels,
	c.chap_secret, c.chap_mutual_secret, c.extra_addresses, c.created_at, c.updated_at,
	ARRAY(SELECT i.iqn FROM client_initiators i WHERE i.client_id = c.id ORDER BY i.position)
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
	extra := c.ExtraAddresses
	if extra == nil {
		extra = []netip.Addr{} // the column is NOT NULL
	}
	var address any // NULL when there is no reservation
	if c.Address.IsValid() {
		address = c.Address
	}
	now := millis(time.Now())

	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// Name the client already holding the MAC or address, which a bare
		// unique violation would not. Another host may still win the race
		// between this check and the write: conflict maps its unique
		// violation to ErrConflict.
		if holder, err := s.clientWhere(ctx, tx, "mac = $1 AND name <> $2", c.MAC, c.Name); err != nil {
			return err
		} else if holder != "" {
			return fmt.Errorf("mac %s belongs to client %s: %w", c.MAC, holder, store.ErrConflict)
		}
		if address != nil {
			if holder, err := s.clientWhere(ctx, tx, "address = $1 AND name <> $2", address, c.Name); err != nil {
				return err
			} else if holder != "" {
				return fmt.Errorf("address %s is reserved for client %s: %w", c.Address, holder, store.ErrConflict)
			}
		}
		var id int64
		err := s.queryRow(ctx, tx, `INSERT INTO clients
			(name, mac, image, address, persistent, labels, chap_secret, chap_mutual_secret, extra_addresses, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
			ON CONFLICT (name) DO UPDATE SET
				mac = excluded.mac, image = excluded.image, address = excluded.address,
				persistent = excluded.persistent, labels = excluded.labels,
				chap_secret = excluded.chap_secret, chap_mutual_secret = excluded.chap_mutual_secret,
				extra_addresses = excluded.extra_addresses, updated_at = excluded.updated_at
			RETURNING id`,
			[]any{c.Name, c.MAC, c.Image, address, c.Persistent, string(labels),
				c.CHAPSecret, c.CHAPMutualSecret, extra, now, now}, &id)
		if err != nil {
			return conflict(err)
		}
		if _, err := s.exec(ctx, tx, `DELETE FROM client_initiators WHERE client_id = $1`, id); err != nil {
			return err
		}
		for pos, iqn := range c.Initiators {
			var holder string
			err := s.queryRow(ctx, tx, `SELECT c.name FROM client_initiators i
				JOIN clients c ON c.id = i.client_id WHERE i.iqn = $1`, []any{iqn}, &holder)
			switch {
			case err == nil:
				return fmt.Errorf("initiator %s belongs to client %s: %w", iqn, holder, store.ErrConflict)
			case !errors.Is(err, pgx.ErrNoRows):
				return err
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO client_initiators (iqn, client_id, position) VALUES ($1, $2, $3)`,
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
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return name, err
}

// GetClient implements store.Clients.
func (s *Store) GetClient(ctx context.Context, name string) (store.Client, error) {
	c, err := s.oneClient(ctx, `c.name = $1`, name)
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
	c, err := s.oneClient(ctx, `c.mac = $1`, canonical)
	if err != nil {
		return c, fmt.Errorf("client by mac %s: %w", canonical, err)
	}
	return c, nil
}

// ClientByInitiator implements store.Clients.
func (s *Store) ClientByInitiator(ctx context.Context, iqn string) (store.Client, error) {
	iqn = strings.ToLower(strings.TrimSpace(iqn))
	c, err := s.oneClient(ctx, `c.id = (SELECT client_id FROM client_initiators WHERE iqn = $1)`, iqn)
	if err != nil {
		return c, fmt.Errorf("client by initiator %s: %w", iqn, err)
	}
	return c, nil
}

func (s *Store) oneClient(ctx context.Context, where string, arg any) (store.Client, error) {
	var r clientRow
	err := s.queryRow(ctx, s.pool, selectClient+` WHERE `+where, []any{arg}, r.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
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
	err := s.query(ctx, s.pool, selectClient+` ORDER BY c.name`, nil, func(rows pgx.Rows) error {
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
	tag, err := s.exec(ctx, s.pool, `DELETE FROM clients WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("delete client %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete client %s: %w", name, store.ErrNotFound)
	}
	return nil
}

// clientRow is a selectClient row before conversion.
type clientRow struct {
	c                    store.Client
	address              *netip.Addr
	labels               []byte
	initiators           []string
	extra                []netip.Addr
	createdAt, updatedAt time.Time
}

func (r *clientRow) dest() []any {
	return []any{&r.c.Name, &r.c.MAC, &r.c.Image, &r.address, &r.c.Persistent, &r.labels,
		&r.c.CHAPSecret, &r.c.CHAPMutualSecret, &r.extra, &r.createdAt, &r.updatedAt, &r.initiators}
}

func (r *clientRow) client() (store.Client, error) {
	c := r.c
	if r.address != nil {
		c.Address = *r.address
	}
	if err := json.Unmarshal(r.labels, &c.Labels); err != nil {
		return c, fmt.Errorf("client %s: stored labels: %w", c.Name, err)
	}
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if len(r.initiators) > 0 {
		c.Initiators = r.initiators
	}
	if len(r.extra) > 0 {
		c.ExtraAddresses = r.extra
	}
	c.CreatedAt = r.createdAt.UTC()
	c.UpdatedAt = r.updatedAt.UTC()
	return c, nil
}
