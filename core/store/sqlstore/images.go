package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dls-project/dls/core/store"
)

const selectImage = `SELECT name, storage, source, boot, origin, created_at, updated_at FROM images`

// PutImage implements store.Images.
func (t *Tables) PutImage(ctx context.Context, img store.Image) error {
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
	now := t.d.Time(time.Now())
	_, err = t.db.Write().Exec(ctx, Bind(t.d, `INSERT INTO images (name, storage, source, boot, origin, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET
			storage = excluded.storage, source = excluded.source, boot = excluded.boot,
			origin = excluded.origin, updated_at = excluded.updated_at`),
		img.Name, img.Storage, img.Source, boot, img.Origin, now, now)
	if err != nil {
		return fmt.Errorf("put image %s: %w", img.Name, err)
	}
	return nil
}

// GetImage implements store.Images.
func (t *Tables) GetImage(ctx context.Context, name string) (store.Image, error) {
	var r imageRow
	found, err := t.db.Read().QueryRow(ctx, Bind(t.d, selectImage+` WHERE name = ?`), []any{name}, r.dest()...)
	if err == nil && !found {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Image{}, fmt.Errorf("get image %s: %w", name, err)
	}
	return r.image(t.d)
}

// ListImages implements store.Images.
func (t *Tables) ListImages(ctx context.Context) ([]store.Image, error) {
	var imgs []store.Image
	err := t.db.Read().Query(ctx, selectImage+` ORDER BY name`, nil, func(row Row) error {
		var r imageRow
		if err := row.Scan(r.dest()...); err != nil {
			return err
		}
		img, err := r.image(t.d)
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

// DeleteImage implements store.Images. The delete comes first, in the
// same write transaction as the check for clients booting the image.
// SQLite's single writer then keeps any client from being given the image
// between the two. On PostgreSQL the delete holds the image's row lock (a
// concurrent put or delete of the image waits) and the check runs after
// it on a fresh snapshot, so a client committed before the check is seen;
// one given the image by a transaction still open at that moment is not,
// and the store accepts clients of images it does not hold anyway.
func (t *Tables) DeleteImage(ctx context.Context, name string) error {
	err := t.db.InTx(ctx, func(tx Conn) error {
		n, err := tx.Exec(ctx, Bind(t.d, `DELETE FROM images WHERE name = ?`), name)
		if err != nil {
			return err
		}
		if n == 0 {
			return store.ErrNotFound
		}
		if holder, err := t.clientWhere(ctx, tx, "image = ?", name); err != nil {
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
	boot                 []byte // JSON; nil for NULL
	createdAt, updatedAt any
}

func (r *imageRow) dest() []any {
	return []any{&r.img.Name, &r.img.Storage, &r.img.Source, &r.boot, &r.img.Origin, &r.createdAt, &r.updatedAt}
}

func (r *imageRow) image(d Dialect) (store.Image, error) {
	img := r.img
	if r.boot != nil {
		img.Boot = new(store.BootProfile)
		if err := json.Unmarshal(r.boot, img.Boot); err != nil {
			return img, fmt.Errorf("image %s: stored boot profile: %w", img.Name, err)
		}
	}
	var err error
	if img.CreatedAt, err = d.ScanTime(r.createdAt); err != nil {
		return img, fmt.Errorf("image %s: stored created_at: %w", img.Name, err)
	}
	if img.UpdatedAt, err = d.ScanTime(r.updatedAt); err != nil {
		return img, fmt.Errorf("image %s: stored updated_at: %w", img.Name, err)
	}
	return img, nil
}
