package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/sdk/storage"
)

// imageBody is an image as the API takes it.
type imageBody struct {
	Name    string             `json:"name"`
	Storage string             `json:"storage"`
	Source  string             `json:"source,omitempty"`
	Boot    *store.BootProfile `json:"boot,omitempty"`
}

// imageJSON is an image as the API shows it.
type imageJSON struct {
	imageBody
	Origin    string    `json:"origin"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Version is, in POST images' answer, the version imported from
	// Source.
	Version *versionJSON `json:"version,omitempty"`
}

func toImageJSON(im store.Image) imageJSON {
	return imageJSON{
		imageBody: imageBody{Name: im.Name, Storage: im.Storage, Source: im.Source, Boot: im.Boot},
		Origin:    im.Origin, CreatedAt: im.CreatedAt, UpdatedAt: im.UpdatedAt,
	}
}

// versionJSON is an image version as the API shows it.
type versionJSON struct {
	Image   string    `json:"image"`
	Number  uint64    `json:"number"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created,omitzero"`
	Current bool      `json:"current"`
}

func toVersionJSON(v storage.Version) versionJSON {
	return versionJSON{Image: v.Image, Number: v.Number, Size: v.Size, Created: v.Created, Current: v.Current}
}

// Origins of images (store.Image.Origin).
const (
	originConfig = "config"
	originAPI    = "api"
)

// checkImage validates b.
func (a *API) checkImage(b imageBody) error {
	if err := storage.ValidName(b.Name); err != nil {
		return fieldError("name", "name %q: want 1-64 of a-z 0-9 . _ -, starting with a letter or digit", b.Name)
	}
	if b.Storage == "" {
		return fieldError("storage", "storage is required (the name of a storage plugin instance)")
	}
	if a.listsPlugins && !slices.ContainsFunc(a.deps.Plugins(), func(p supervisor.Status) bool { return p.Kind == "storage" && p.Name == b.Storage }) {
		return fieldError("storage", "no storage plugin %q", b.Storage)
	}
	if len(b.Source) > 4096 {
		return fieldError("source", "source: at most 4096 characters")
	}
	if b.Boot != nil && b.Boot.Kernel == "" {
		return fieldError("boot", "boot.kernel is required in a boot profile")
	}
	if b.Boot != nil && b.Boot.Loader != "" && b.Boot.Loader != store.LoaderIPXE && b.Boot.Loader != store.LoaderShim {
		return fieldError("boot", "boot.loader must be %q or %q, not %q", store.LoaderIPXE, store.LoaderShim, b.Boot.Loader)
	}
	return nil
}

// onlyStorage is the storage of an image added without one: the host's
// only storage plugin. With none, or more than one, the caller must say
// (400, naming them).
func (a *API) onlyStorage() (string, error) {
	if !a.listsPlugins {
		return "", fieldError("storage", "storage is required (the name of a storage plugin instance)")
	}
	var names []string
	for _, p := range a.deps.Plugins() {
		if p.Kind == "storage" {
			names = append(names, p.Name)
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	switch len(names) {
	case 0:
		return "", fieldError("storage", "this host has no storage plugin: add a storage block to its config (storage \"dir\" \"local\" {})")
	case 1:
		return names[0], nil
	}
	return "", fieldError("storage", "this host has %d storage plugins (%s): name one with storage (dls image add NAME --storage %s)", len(names), strings.Join(names, ", "), names[0])
}

// imageOf returns the image named in the path, or a 404.
func (a *API) imageOf(r *http.Request) (store.Image, error) {
	name := r.PathValue("name")
	im, err := a.deps.Store.GetImage(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return im, errorf(http.StatusNotFound, "no image %q", name)
	}
	return im, err
}

// storageOf returns the storage plugin holding image, or a 503.
func (a *API) storageOf(ctx context.Context, image string) (ImageStorage, error) {
	st, err := a.deps.Storage.ImageStorage(ctx, image)
	if err != nil {
		return nil, errorf(http.StatusServiceUnavailable, "storage of image %s is not available: %v", image, err)
	}
	return st, nil
}

func (a *API) listImages(w http.ResponseWriter, r *http.Request) error {
	ims, err := a.deps.Store.ListImages(r.Context())
	if err != nil {
		return err
	}
	out := make([]imageJSON, len(ims))
	for i, im := range ims {
		out[i] = toImageJSON(im)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getImage(w http.ResponseWriter, r *http.Request) error {
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toImageJSON(im))
	return nil
}

// createImage: POST images records an image; with a source, it imports
// version 1 from it before answering (bounded by Options.ImportTimeout, and
// cancelled when the caller goes away). A failed import removes the record
// again: the image exists only once it has a version.
func (a *API) createImage(w http.ResponseWriter, r *http.Request) error {
	var b imageBody
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	if b.Storage == "" {
		st, err := a.onlyStorage()
		if err != nil {
			return err
		}
		b.Storage = st
	}
	if err := a.checkImage(b); err != nil {
		return err
	}
	// The source is checked before anything is created.
	var src *os.File
	if b.Source != "" {
		var err error
		if src, err = a.openSource(r, "image/"+b.Name, b.Source); err != nil {
			return err
		}
		defer src.Close()
	}
	im := store.Image{Name: b.Name, Storage: b.Storage, Source: b.Source, Boot: b.Boot, Origin: originAPI}
	if err := a.createImageRecord(r.Context(), im); err != nil {
		return err
	}
	var imported *versionJSON
	if src != nil {
		v, _, err := a.importFrom(r.Context(), b.Name, src, b.Source)
		if err != nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
			defer cancel()
			if derr := a.deps.Store.DeleteImage(ctx, b.Name); derr != nil {
				a.logger.Error("image import failed and its record could not be removed", "image", b.Name, "error", derr)
			}
			return err
		}
		imported = &v
	}
	a.auditReq(r, "image.create", "image/"+b.Name, map[string]any{"storage": b.Storage, "source": b.Source, "boot": b.Boot, "version": imported})
	stored, err := a.deps.Store.GetImage(r.Context(), b.Name)
	if err != nil {
		return fmt.Errorf("read back image %s: %w", b.Name, err)
	}
	out := toImageJSON(stored)
	out.Version = imported
	w.Header().Set("Location", Prefix+"/images/"+b.Name)
	writeJSON(w, http.StatusCreated, out)
	return nil
}

// createImageRecord stores im unless an image of that name exists (409).
func (a *API) createImageRecord(ctx context.Context, im store.Image) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if _, err := a.deps.Store.GetImage(ctx, im.Name); err == nil {
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("image %s exists", im.Name), field: "name"}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := a.deps.Store.PutImage(ctx, im); err != nil {
		return fmt.Errorf("store image %s: %w", im.Name, err)
	}
	return nil
}

// importVersion imports the file at path (what describes it in
// messages) as the image's next version.
func (a *API) importVersion(ctx context.Context, image, path, what string) (versionJSON, error) {
	st, err := a.storageOf(ctx, image)
	if err != nil {
		return versionJSON{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.opts.ImportTimeout)
	defer cancel()
	v, err := st.ImportImage(ctx, storage.ImportRequest{Image: image, Source: path})
	if err != nil {
		// The storage client names the operation with the file it was
		// given (an upload's temporary file): say it once, as the caller
		// knows the source.
		op := fmt.Sprintf("import image %s from %s", image, what)
		msg := strings.TrimPrefix(err.Error(), fmt.Sprintf("import image %s from %s: ", image, path))
		return versionJSON{}, storageError{reworded{msg: op + ": " + msg, err: err}}
	}
	return toVersionJSON(v), nil
}

// updateImage: PUT images/{name} replaces the record's source and boot
// profile. The storage cannot change; images declared in the config are
// edited there.
func (a *API) updateImage(w http.ResponseWriter, r *http.Request) error {
	var b imageBody
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	name := r.PathValue("name")
	if b.Name == "" {
		b.Name = name
	} else if b.Name != name {
		return fieldError("name", "name %q differs from the path's %q (images cannot be renamed)", b.Name, name)
	}
	if err := a.checkImage(b); err != nil {
		return err
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	old, err := a.imageOf(r)
	if err != nil {
		return err
	}
	if old.Origin == originConfig {
		return errorf(http.StatusConflict, "image %s is declared in the config file: change it there", name)
	}
	if b.Storage != old.Storage {
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("image %s lives on storage %s; it cannot move to %s", name, old.Storage, b.Storage), field: "storage"}
	}
	im := store.Image{Name: name, Storage: b.Storage, Source: b.Source, Boot: b.Boot, Origin: originAPI}
	if err := a.deps.Store.PutImage(r.Context(), im); err != nil {
		return fmt.Errorf("store image %s: %w", name, err)
	}
	a.auditReq(r, "image.update", "image/"+name, b)
	stored, err := a.deps.Store.GetImage(r.Context(), name)
	if err != nil {
		return fmt.Errorf("read back image %s: %w", name, err)
	}
	writeJSON(w, http.StatusOK, toImageJSON(stored))
	return nil
}

// deleteImage: DELETE images/{name}[?purge=true] removes the record and,
// with purge, the image and all its versions from its storage first.
// Refused (409) while a client boots the image.
func (a *API) deleteImage(w http.ResponseWriter, r *http.Request) error {
	purge := false
	if s := r.URL.Query().Get("purge"); s != "" {
		var err error
		if purge, err = strconv.ParseBool(s); err != nil {
			return fieldError("purge", "purge %q: want true or false", s)
		}
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	if im.Origin == originConfig {
		return errorf(http.StatusConflict, "image %s is declared in the config file: remove it there", im.Name)
	}
	cs, err := a.deps.Store.ListClients(r.Context())
	if err != nil {
		return err
	}
	for _, c := range cs {
		if c.Image == im.Name {
			return errorf(http.StatusConflict, "image %s is in use: client %s boots it", im.Name, c.Name)
		}
	}
	if purge {
		st, err := a.storageOf(r.Context(), im.Name)
		if err != nil {
			return err
		}
		if err := st.DeleteImage(r.Context(), im.Name); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return storageError{fmt.Errorf("delete image %s from storage %s: %w", im.Name, im.Storage, err)}
		}
	}
	if err := a.deps.Store.DeleteImage(r.Context(), im.Name); errors.Is(err, store.ErrConflict) {
		return errorf(http.StatusConflict, "image %s: %v", im.Name, err)
	} else if err != nil {
		return err
	}
	a.auditReq(r, "image.delete", "image/"+im.Name, map[string]bool{"purge": purge})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// listVersions: GET images/{name}/versions, oldest first.
func (a *API) listVersions(w http.ResponseWriter, r *http.Request) error {
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	vs, err := a.versions(r.Context(), im.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, vs)
	return nil
}

func (a *API) versions(ctx context.Context, image string) ([]versionJSON, error) {
	st, err := a.storageOf(ctx, image)
	if err != nil {
		return nil, err
	}
	vs, err := st.ListVersions(ctx, image)
	if errors.Is(err, storage.ErrNotFound) {
		return []versionJSON{}, nil // recorded, not imported yet
	}
	if err != nil {
		return nil, storageError{fmt.Errorf("list versions of image %s: %w", image, err)}
	}
	out := make([]versionJSON, len(vs))
	for i, v := range vs {
		out[i] = toVersionJSON(v)
	}
	return out, nil
}

type versionRequest struct {
	// Action is snapshot, promote or import.
	Action string `json:"action"`
	// Client is the client whose volume promote turns into a version.
	Client string `json:"client,omitempty"`
	// Source is the raw disk file import reads.
	Source string `json:"source,omitempty"`
}

// createVersion: POST images/{name}/versions makes a new current version:
// a snapshot of the current content, a client's volume (promote), or a raw
// disk file (import) from a path under import_dirs or, with Content-Type
// application/octet-stream, from the body (uploadVersion).
func (a *API) createVersion(w http.ResponseWriter, r *http.Request) error {
	if isUpload(r) {
		return a.uploadVersion(w, r)
	}
	var req versionRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	switch req.Action {
	case "snapshot", "promote", "import":
	default:
		return fieldError("action", "action %q: want snapshot, promote or import", req.Action)
	}
	if req.Action != "promote" && req.Client != "" {
		return fieldError("client", "client goes with action promote only")
	}
	if req.Action != "import" && req.Source != "" {
		return fieldError("source", "source goes with action import only")
	}
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	var v versionJSON
	detail := map[string]any{}
	switch req.Action {
	case "snapshot":
		st, err := a.storageOf(r.Context(), im.Name)
		if err != nil {
			return err
		}
		sv, err := st.CreateVersion(r.Context(), im.Name)
		if err != nil {
			return storageError{fmt.Errorf("snapshot image %s: %w", im.Name, err)}
		}
		v = toVersionJSON(sv)
	case "promote":
		if v, err = a.promote(r, im, req.Client); err != nil {
			return err
		}
		detail["client"] = req.Client
	case "import":
		if req.Source == "" {
			return fieldError("source", "source is required to import")
		}
		src, err := a.openSource(r, "image/"+im.Name, req.Source)
		if err != nil {
			return err
		}
		defer src.Close()
		if v, _, err = a.importFrom(r.Context(), im.Name, src, req.Source); err != nil {
			return err
		}
		detail["source"] = req.Source
	}
	detail["version"] = v.Number
	a.auditReq(r, "image."+req.Action, "image/"+im.Name, detail)
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// uploadVersion imports the request body, a raw disk image of any size,
// as the image's next version. The body is read only once the image is
// known (a client sending "Expect: 100-continue" sends nothing before).
func (a *API) uploadVersion(w http.ResponseWriter, r *http.Request) error {
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	v, n, err := a.importFrom(r.Context(), im.Name, r.Body, "upload")
	if err != nil {
		return err
	}
	a.auditReq(r, "image.import", "image/"+im.Name, map[string]any{"source": "upload", "bytes": n, "version": v.Number})
	writeJSON(w, http.StatusCreated, v)
	return nil
}

// promote turns the client's volume into a new version of im: the client
// must boot an image on the same storage, and the storage must offer the
// promote capability.
func (a *API) promote(r *http.Request, im store.Image, client string) (versionJSON, error) {
	if client == "" {
		return versionJSON{}, fieldError("client", "client is required to promote")
	}
	c, err := a.deps.Store.GetClient(r.Context(), client)
	if errors.Is(err, store.ErrNotFound) {
		return versionJSON{}, fieldError("client", "no client %q", client)
	} else if err != nil {
		return versionJSON{}, err
	}
	if c.Image != im.Name {
		from, err := a.deps.Store.GetImage(r.Context(), c.Image)
		if err != nil {
			return versionJSON{}, fmt.Errorf("image %s of client %s: %w", c.Image, c.Name, err)
		}
		if from.Storage != im.Storage {
			return versionJSON{}, errorf(http.StatusConflict, "client %s boots image %s on storage %s; image %s is on %s", c.Name, c.Image, from.Storage, im.Name, im.Storage)
		}
	}
	for _, p := range a.deps.Plugins() {
		if p.Kind == "storage" && p.Name == im.Storage && len(p.Capabilities) > 0 && !slices.Contains(p.Capabilities, storage.CapabilityPromote) {
			return versionJSON{}, errorf(http.StatusNotImplemented, "storage %s cannot promote volumes", im.Storage)
		}
	}
	st, err := a.storageOf(r.Context(), im.Name)
	if err != nil {
		return versionJSON{}, err
	}
	sv, err := st.Promote(r.Context(), c.VolumeName(), im.Name)
	if errors.Is(err, storage.ErrInUse) {
		return versionJSON{}, errorf(http.StatusConflict, "volume of client %s is in use (attached): power the client off first: %v", c.Name, err)
	}
	if err != nil {
		return versionJSON{}, storageError{fmt.Errorf("promote client %s into image %s: %w", c.Name, im.Name, err)}
	}
	return toVersionJSON(sv), nil
}

type currentRequest struct {
	Version uint64 `json:"version"`
}

// setCurrentVersion: PUT images/{name}/versions/current {"version": N}
// makes version N the one new volumes clone (a roll back when older).
func (a *API) setCurrentVersion(w http.ResponseWriter, r *http.Request) error {
	var req currentRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Version == 0 {
		return fieldError("version", "version is required (a version number from 1)")
	}
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	vs, err := a.versions(r.Context(), im.Name)
	if err != nil {
		return err
	}
	var previous uint64
	i := slices.IndexFunc(vs, func(v versionJSON) bool { return v.Number == req.Version })
	for _, v := range vs {
		if v.Current {
			previous = v.Number
		}
	}
	if i < 0 {
		return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("image %s has no version %d", im.Name, req.Version), field: "version"}
	}
	st, err := a.storageOf(r.Context(), im.Name)
	if err != nil {
		return err
	}
	if err := st.SetCurrentVersion(r.Context(), im.Name, req.Version); err != nil {
		return storageError{fmt.Errorf("set current version of image %s: %w", im.Name, err)}
	}
	a.auditReq(r, "image.set_current", "image/"+im.Name, map[string]uint64{"version": req.Version, "previous": previous})
	v := vs[i]
	v.Current = true
	writeJSON(w, http.StatusOK, v)
	return nil
}

// deleteVersion: DELETE images/{name}/versions/{n}; refused (409) for the
// current version and versions volumes were cloned from.
func (a *API) deleteVersion(w http.ResponseWriter, r *http.Request) error {
	n, err := strconv.ParseUint(r.PathValue("n"), 10, 64)
	if err != nil || n == 0 {
		return errorf(http.StatusBadRequest, "version %q: want a version number from 1", r.PathValue("n"))
	}
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	st, err := a.storageOf(r.Context(), im.Name)
	if err != nil {
		return err
	}
	err = st.DeleteVersion(r.Context(), im.Name, n)
	if errors.Is(err, storage.ErrInUse) {
		return errorf(http.StatusConflict, "version %d of image %s is current or volumes were cloned from it: %v", n, im.Name, err)
	}
	if err != nil {
		return storageError{fmt.Errorf("delete version %d of image %s: %w", n, im.Name, err)}
	}
	a.auditReq(r, "image.version_delete", "image/"+im.Name, map[string]uint64{"version": n})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
