package sqlstore

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/dls-project/dls/core/store"
)

const selectDiscovered = `SELECT mac, first_seen, last_seen, arch, vendor_class, user_class, address, seen_count FROM discovered`

// RecordDiscovered implements store.Discovered: one transaction per batch,
// an UPDATE for a MAC already held and an INSERT, bounded by max, for a
// new one. The host coalesces sightings before it calls this, so a storm
// of requests costs one commit per flush.
func (t *Tables) RecordDiscovered(ctx context.Context, ms []store.DiscoveredMachine, max int) (int, error) {
	norm := make([]store.DiscoveredMachine, len(ms))
	for i, m := range ms {
		var err error
		if norm[i], err = m.Normalize(); err != nil {
			return 0, fmt.Errorf("record discovered machines: %w", err)
		}
	}
	if len(norm) == 0 {
		return 0, nil
	}
	var refused int
	err := t.db.InTx(ctx, func(tx Conn) error {
		refused = 0 // fn may run again
		held := -1  // rows in the table, counted at the first new MAC
		for _, m := range norm {
			address := ""
			if m.Address.IsValid() {
				address = m.Address.String()
			}
			last := t.d.Time(m.LastSeen)
			n, err := tx.Exec(ctx, Bind(t.d, `UPDATE discovered SET
				last_seen = CASE WHEN last_seen > ? THEN last_seen ELSE ? END,
				seen_count = seen_count + ?,
				arch = CASE WHEN ? = '' THEN arch ELSE ? END,
				vendor_class = CASE WHEN ? = '' THEN vendor_class ELSE ? END,
				user_class = CASE WHEN ? = '' THEN user_class ELSE ? END,
				address = CASE WHEN ? = '' THEN address ELSE ? END
				WHERE mac = ?`),
				last, last, m.Count,
				// The arch counts as told when the vendor class is: an
				// OS's DHCP client says neither.
				m.VendorClass, int64(m.Arch),
				m.VendorClass, m.VendorClass, m.UserClass, m.UserClass, address, address, m.MAC)
			if err != nil {
				return err
			}
			if n > 0 {
				continue
			}
			if client, err := t.clientWhere(ctx, tx, "mac = ?", m.MAC); err != nil {
				return err
			} else if client != "" {
				continue // adopted since it was seen
			}
			if max > 0 {
				if held < 0 {
					if _, err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM discovered`, nil, &held); err != nil {
						return err
					}
				}
				if held >= max {
					refused++
					continue
				}
			}
			// DO NOTHING: another host sharing the database may have added
			// it since the UPDATE; its row stands.
			n, err = tx.Exec(ctx, Bind(t.d, `INSERT INTO discovered
				(mac, first_seen, last_seen, arch, vendor_class, user_class, address, seen_count)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (mac) DO NOTHING`),
				m.MAC, t.d.Time(m.FirstSeen), last, int64(m.Arch), m.VendorClass, m.UserClass, address, m.Count)
			if err != nil {
				return err
			}
			held += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("record %d discovered machines: %w", len(norm), err)
	}
	return refused, nil
}

// ListDiscovered implements store.Discovered.
func (t *Tables) ListDiscovered(ctx context.Context) ([]store.DiscoveredMachine, error) {
	var out []store.DiscoveredMachine
	err := t.db.Read().Query(ctx, selectDiscovered+` ORDER BY first_seen, mac`, nil, func(row Row) error {
		var r discoveredRow
		if err := row.Scan(r.dest()...); err != nil {
			return err
		}
		m, err := r.machine(t.d)
		if err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list discovered machines: %w", err)
	}
	return out, nil
}

// GetDiscovered implements store.Discovered.
func (t *Tables) GetDiscovered(ctx context.Context, mac string) (store.DiscoveredMachine, error) {
	canonical, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.DiscoveredMachine{}, fmt.Errorf("get discovered machine: %w", err)
	}
	var r discoveredRow
	found, err := t.db.Read().QueryRow(ctx, Bind(t.d, selectDiscovered+` WHERE mac = ?`), []any{canonical}, r.dest()...)
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.DiscoveredMachine{}, fmt.Errorf("get discovered machine %s: %w", canonical, err)
	}
	return r.machine(t.d)
}

// DeleteDiscovered implements store.Discovered.
func (t *Tables) DeleteDiscovered(ctx context.Context, mac string) error {
	canonical, err := store.CanonicalMAC(mac)
	if err != nil {
		return fmt.Errorf("delete discovered machine: %w", err)
	}
	n, err := t.db.Write().Exec(ctx, Bind(t.d, `DELETE FROM discovered WHERE mac = ?`), canonical)
	if err != nil {
		return fmt.Errorf("delete discovered machine %s: %w", canonical, err)
	}
	if n == 0 {
		return fmt.Errorf("delete discovered machine %s: %w", canonical, store.ErrNotFound)
	}
	return nil
}

// discoveredRow is a selectDiscovered row before conversion.
type discoveredRow struct {
	m           store.DiscoveredMachine
	first, last any
	arch        int64
	address     string
}

func (r *discoveredRow) dest() []any {
	return []any{&r.m.MAC, &r.first, &r.last, &r.arch, &r.m.VendorClass, &r.m.UserClass, &r.address, &r.m.Count}
}

func (r *discoveredRow) machine(d Dialect) (store.DiscoveredMachine, error) {
	m := r.m
	var err error
	if m.FirstSeen, err = d.ScanTime(r.first); err != nil {
		return m, fmt.Errorf("discovered machine %s: stored first_seen: %w", m.MAC, err)
	}
	if m.LastSeen, err = d.ScanTime(r.last); err != nil {
		return m, fmt.Errorf("discovered machine %s: stored last_seen: %w", m.MAC, err)
	}
	m.Arch = uint16(r.arch)
	if r.address != "" {
		if m.Address, err = netip.ParseAddr(r.address); err != nil {
			return m, fmt.Errorf("discovered machine %s: stored address: %w", m.MAC, err)
		}
	}
	return m, nil
}
