package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
)

const selectImage = `SELECT name, storage, source, boot, origin, created_at, updated_at FROM images`

// PutImage implements store.Images.
func (s *Store) PutImage(ctx context.Context, img store.Image) error {
	img, err := img.Normalize()
	if err != nil {
		return fmt.Errorf("put image: %w", err)
	}
	var boot any // NULL: no boot profile, sanboot
	if img.Boot != nil {
		b, err := json.Marshal(img.Boot)
		if err != nil {
			return fmt.Errorf("put image %s: boot profile: %w", img.Name, err)
		}
		boot = string(b)
	}
	now := time.Now().UnixMilli()
	_, err = s.exec(ctx, s.write, `INSERT INTO images (name, storage, source, boot, origin, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET
			storage = excluded.storage, source = excluded.source, boot = excluded.boot,
			origin = excluded.origin, updated_at = excluded.updated_at`,
		img.Name, img.Storage, img.Source, boot, img.Origin, now, now)
	if err != nil {
		return fmt.Errorf("put image %s: %w", img.Name, err)
	}
	return nil
}

// GetImage implements store.Images.
func (s *Store) GetImage(ctx context.Context, name string) (store.Image, error) {
	var r imageRow
	err := s.queryRow(ctx, s.read, selectImage+` WHERE name = ?`, []any{name}, r.dest()...)
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Image{}, fmt.Errorf("get image %s: %w", name, err)
	}
	return r.image()
}

// ListImages implements store.Images.
func (s *Store) ListImages(ctx context.Context) ([]store.Image, error) {
	var imgs []store.Image
	err := s.query(ctx, s.read, selectImage+` ORDER BY name`, nil, func(rows *sql.Rows) error {
		var r imageRow
		if err := rows.Scan(r.dest()...); err != nil {
			return err
		}
		img, err := r.image()
		if err != nil {
			return err
		}
		imgs = append(imgs, img)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return imgs, nil
}

// DeleteImage implements store.Images. The delete and the check for
// clients booting the image share the write transaction, so no client can
// be given the image between the two.
func (s *Store) DeleteImage(ctx context.Context, name string) error {
	err := s.inTx(ctx, s.write, func(tx *sql.Tx) error {
		res, err := s.exec(ctx, tx, `DELETE FROM images WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		if holder, err := s.clientWhere(ctx, tx, "image = ?", name); err != nil {
			return err
		} else if holder != "" {
			return fmt.Errorf("client %s boots it: %w", holder, store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete image %s: %w", name, err)
	}
	return nil
}

// imageRow is a selectImage row before conversion.
type imageRow struct {
	img                  store.Image
	boot                 sql.NullString
	createdAt, updatedAt int64
}

func (r *imageRow) dest() []any {
	return []any{&r.img.Name, &r.img.Storage, &r.img.Source, &r.boot, &r.img.Origin, &r.createdAt, &r.updatedAt}
}

func (r *imageRow) image() (store.Image, error) {
	img := r.img
	if r.boot.Valid {
		img.Boot = new(store.BootProfile)
		if err := json.Unmarshal([]byte(r.boot.String), img.Boot); err != nil {
			return img, fmt.Errorf("image %s: stored boot profile: %w", img.Name, err)
		}
	}
	img.CreatedAt = time.UnixMilli(r.createdAt).UTC()
	img.UpdatedAt = time.UnixMilli(r.updatedAt).UTC()
	return img, nil
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
