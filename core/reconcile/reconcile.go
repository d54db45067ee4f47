// Package reconcile brings the image and client blocks of dls.hcl into the
// state store, at start and on every reload. It is idempotent, it never
// deletes: an object the config declared earlier and no longer does is
// reported as drift (log and dls_config_drift_objects) for an admin to
// remove through the API. Images the storage does not hold yet are
// imported from their source.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is what reconciliation reads and writes.
type Store interface {
	store.Clients
	store.Images
}

// StorageResolver finds the running storage plugin of an image.
type StorageResolver interface {
	StorageForImage(image string) (*storage.Client, error)
}

// OriginConfig marks objects that come from dls.hcl.
const OriginConfig = "config"

// originLabel is the client label that marks a client from dls.hcl.
const originLabel = "dls.origin"

// Report says what one pass did.
type Report struct {
	Created, Updated, Unchanged []string
	// Drift lists config-made objects no longer in the config.
	Drift []string
	// Imported lists images imported into their storage.
	Imported []string
	Errors   []error
}

// Reconciler applies configs to the store.
type Reconciler struct {
	st      Store
	storage StorageResolver
	logger  hclog.Logger
	drift   prometheus.Gauge
}

// New builds a reconciler; its drift gauge is registered on reg.
func New(st Store, storage StorageResolver, reg prometheus.Registerer, logger hclog.Logger) (*Reconciler, error) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dls_config_drift_objects",
		Help: "Images and clients made from dls.hcl that the config no longer declares (kept, not deleted).",
	})
	if reg != nil {
		if err := reg.Register(g); err != nil {
			return nil, fmt.Errorf("register reconcile metrics: %w", err)
		}
	}
	return &Reconciler{st: st, storage: storage, logger: logger, drift: g}, nil
}

// Apply writes cfg's images and clients (images first: clients name them).
func (r *Reconciler) Apply(ctx context.Context, cfg *config.Config) Report {
	var rep Report
	want := map[string]bool{}
	for _, im := range cfg.Images {
		want["image/"+im.Name] = true
		r.image(ctx, cfg, im, &rep)
	}
	for _, c := range cfg.Clients {
		want["client/"+c.Name] = true
		r.client(ctx, c, &rep)
	}
	r.findDrift(ctx, want, &rep)
	r.drift.Set(float64(len(rep.Drift)))
	for _, d := range rep.Drift {
		r.logger.Warn("config drift: declared in an earlier config, not in this one; kept (delete it through the API if intended)", "object", d)
	}
	for _, err := range rep.Errors {
		r.logger.Error("reconcile", "error", err)
	}
	return rep
}

func (r *Reconciler) image(ctx context.Context, cfg *config.Config, im *config.Image, rep *Report) {
	obj := "image/" + im.Name
	next := store.Image{Name: im.Name, Storage: im.Storage, Source: im.Source, Origin: OriginConfig}
	if im.Boot != nil {
		next.Boot = &store.BootProfile{Kernel: im.Boot.Kernel, Initrd: im.Boot.Initrd, Cmdline: im.Boot.Cmdline, Confirm: im.Boot.Confirm}
	}
	cur, err := r.st.GetImage(ctx, im.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		rep.Created = append(rep.Created, obj)
	case err != nil:
		rep.Errors = append(rep.Errors, fmt.Errorf("read %s: %w", obj, err))
		return
	case cur.Storage == next.Storage && cur.Source == next.Source && cur.Origin == next.Origin && reflect.DeepEqual(cur.Boot, next.Boot):
		rep.Unchanged = append(rep.Unchanged, obj)
		r.ensureImported(ctx, cfg, next, rep)
		return
	default:
		rep.Updated = append(rep.Updated, obj)
	}
	if err := r.st.PutImage(ctx, next); err != nil {
		rep.Errors = append(rep.Errors, fmt.Errorf("store %s: %w", obj, err))
		return
	}
	r.ensureImported(ctx, cfg, next, rep)
}

// ensureImported imports an image its storage does not hold yet.
func (r *Reconciler) ensureImported(ctx context.Context, cfg *config.Config, im store.Image, rep *Report) {
	if im.Source == "" || r.storage == nil {
		return
	}
	st, err := r.storage.StorageForImage(im.Name)
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Errorf("image %s: %w", im.Name, err))
		return
	}
	if _, err := st.ListVersions(ctx, im.Name); err == nil {
		return
	} else if !errors.Is(err, storage.ErrNotFound) {
		rep.Errors = append(rep.Errors, fmt.Errorf("image %s: %w", im.Name, err))
		return
	}
	src := im.Source
	if !filepath.IsAbs(src) {
		// Relative sources are relative to the config file, like every
		// other path in it, when such a file exists.
		if p := filepath.Join(filepath.Dir(cfg.File), src); fileExists(p) {
			src = p
		}
	}
	r.logger.Info("importing image", "image", im.Name, "source", src)
	v, err := st.ImportImage(ctx, storage.ImportRequest{Image: im.Name, Source: src})
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Errorf("import image %s from %s: %w", im.Name, src, err))
		return
	}
	r.logger.Info("image imported", "image", im.Name, "version", v.Number, "bytes", v.Size)
	rep.Imported = append(rep.Imported, im.Name)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (r *Reconciler) client(ctx context.Context, c *config.Client, rep *Report) {
	obj := "client/" + c.Name
	next := store.Client{
		Name: c.Name, MAC: c.MAC, Image: c.Image, Initiators: c.Initiators, Persistent: c.Persistent,
		Labels: map[string]string{originLabel: OriginConfig},
	}
	if c.Address != "" {
		a, err := netip.ParseAddr(c.Address)
		if err != nil {
			rep.Errors = append(rep.Errors, fmt.Errorf("%s: address %q: %w", obj, c.Address, err))
			return
		}
		next.Address = a
	}
	if c.CHAP != nil {
		next.CHAPSecret, next.CHAPMutualSecret = c.CHAP.Secret, c.CHAP.MutualSecret
	}
	cur, err := r.st.GetClient(ctx, c.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		rep.Created = append(rep.Created, obj)
	case err != nil:
		rep.Errors = append(rep.Errors, fmt.Errorf("read %s: %w", obj, err))
		return
	default:
		if n, err := next.Normalize(); err == nil && sameClient(cur, n) {
			rep.Unchanged = append(rep.Unchanged, obj)
			return
		}
		// Labels an admin added through the API are kept.
		for k, v := range cur.Labels {
			if _, ok := next.Labels[k]; !ok {
				next.Labels[k] = v
			}
		}
		rep.Updated = append(rep.Updated, obj)
	}
	if err := r.st.PutClient(ctx, next); err != nil {
		rep.Errors = append(rep.Errors, fmt.Errorf("store %s: %w", obj, err))
	}
}

func sameClient(a, b store.Client) bool {
	return a.MAC == b.MAC && a.Image == b.Image && a.Address == b.Address &&
		slices.Equal(a.Initiators, b.Initiators) && a.Persistent == b.Persistent &&
		a.CHAPSecret == b.CHAPSecret && a.CHAPMutualSecret == b.CHAPMutualSecret &&
		a.Labels[originLabel] == OriginConfig
}

func (r *Reconciler) findDrift(ctx context.Context, want map[string]bool, rep *Report) {
	imgs, err := r.st.ListImages(ctx)
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Errorf("list images: %w", err))
	}
	for _, im := range imgs {
		if im.Origin == OriginConfig && !want["image/"+im.Name] {
			rep.Drift = append(rep.Drift, "image/"+im.Name)
		}
	}
	clients, err := r.st.ListClients(ctx)
	if err != nil {
		rep.Errors = append(rep.Errors, fmt.Errorf("list clients: %w", err))
	}
	for _, c := range clients {
		if c.Labels[originLabel] == OriginConfig && !want["client/"+c.Name] {
			rep.Drift = append(rep.Drift, "client/"+c.Name)
		}
	}
	sort.Strings(rep.Drift)
}
