package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/storage"
)

// Staged rollout: a new version of an image goes to the clients of a ring
// (a label, ring=canary by default) first, then to everyone. start pins
// the ring's clients to the version (store.LabelVersion): their boot-time
// resets clone it, and the persistent ones get a fresh clone of it now
// (those attached at once are listed as busy, to reset later). complete
// makes the version current and unpins; abort unpins (the ring's next
// boots clone the current version again). The rollout's state is the pins.

type rolloutRequest struct {
	// Action is start, complete or abort.
	Action string `json:"action"`
	// Version and Ring, for start; Ring "KEY=VALUE", default ring=canary.
	Version uint64 `json:"version,omitempty"`
	Ring    string `json:"ring,omitempty"`
}

// rolloutJSON is a rollout's state: the version the ring is pinned to (0:
// none in progress), the pinned clients, and the persistent ones a start
// could not give a fresh clone (attached).
type rolloutJSON struct {
	Image   string   `json:"image"`
	Version uint64   `json:"version,omitempty"`
	Stage   string   `json:"stage"` // none, ring (the ring has it), done
	Clients []string `json:"clients"`
	Busy    []string `json:"busy,omitempty"`
	Current uint64   `json:"current,omitempty"`
}

// rolloutOf reads an image's rollout from its clients' pins.
func (a *API) rolloutOf(r *http.Request, image string) (rolloutJSON, []store.Client, error) {
	out := rolloutJSON{Image: image, Stage: "none", Clients: []string{}}
	cs, err := a.deps.Store.ListClients(r.Context())
	if err != nil {
		return out, nil, err
	}
	var pinned []store.Client
	for _, c := range cs {
		pin, ok := c.Labels[store.LabelVersion]
		if c.Image != image || !ok {
			continue
		}
		n, _ := strconv.ParseUint(pin, 10, 64)
		out.Version = max(out.Version, n)
		out.Clients = append(out.Clients, c.Name)
		pinned = append(pinned, c)
	}
	if len(pinned) > 0 {
		out.Stage = "ring"
	}
	return out, pinned, nil
}

// getRollout: GET images/{name}/rollout.
func (a *API) getRollout(w http.ResponseWriter, r *http.Request) error {
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	out, _, err := a.rolloutOf(r, im.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// rollout: POST images/{name}/rollout.
func (a *API) rollout(w http.ResponseWriter, r *http.Request) error {
	var req rolloutRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	im, err := a.imageOf(r)
	if err != nil {
		return err
	}
	state, pinned, err := a.rolloutOf(r, im.Name)
	if err != nil {
		return err
	}
	vs, err := a.versions(r.Context(), im.Name)
	if err != nil {
		return err
	}
	var current uint64
	for _, v := range vs {
		if v.Current {
			current = v.Number
		}
	}
	switch req.Action {
	case "start":
		if state.Stage != "none" {
			return errorf(http.StatusConflict, "image %s: a rollout of version %d is in progress (complete or abort it)", im.Name, state.Version)
		}
		if !slices.ContainsFunc(vs, func(v versionJSON) bool { return v.Number == req.Version }) {
			return &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("image %s has no version %d", im.Name, req.Version), field: "version"}
		}
		if req.Version == current {
			return fieldError("version", "version %d of image %s is already current", req.Version, im.Name)
		}
		ring := req.Ring
		if ring == "" {
			ring = "ring=canary"
		}
		key, value, ok := strings.Cut(ring, "=")
		if !ok || key == "" {
			return fieldError("ring", "ring %q: want KEY=VALUE, such as ring=canary", ring)
		}
		cs, err := a.deps.Store.ListClients(r.Context())
		if err != nil {
			return err
		}
		st, err := a.storageOf(r.Context(), im.Name)
		if err != nil {
			return err
		}
		out := rolloutJSON{Image: im.Name, Version: req.Version, Stage: "ring", Clients: []string{}, Current: current}
		for _, c := range cs {
			if c.Image != im.Name || c.Labels[key] != value {
				continue
			}
			c.Labels = maps.Clone(c.Labels)
			c.Labels[store.LabelVersion] = strconv.FormatUint(req.Version, 10)
			if err := a.deps.Store.PutClient(r.Context(), c); err != nil {
				return fmt.Errorf("rollout: pin client %s: %w", c.Name, err)
			}
			out.Clients = append(out.Clients, c.Name)
			if !c.Persistent {
				continue // its next boot clones the pinned version
			}
			_, err := st.ResetVolume(r.Context(), storage.VolumeRequest{Volume: c.VolumeName(), Image: c.Image, Version: req.Version})
			switch {
			case errors.Is(err, storage.ErrInUse):
				out.Busy = append(out.Busy, c.Name)
			case err != nil && !errors.Is(err, storage.ErrNotFound):
				return storageError{fmt.Errorf("rollout: fresh clone of version %d for client %s: %w", req.Version, c.Name, err)}
			}
		}
		if len(out.Clients) == 0 {
			return fieldError("ring", "no client of image %s has the label %s", im.Name, ring)
		}
		a.auditReq(r, "image.rollout_start", "image/"+im.Name, map[string]any{"version": req.Version, "ring": ring, "clients": out.Clients, "busy": out.Busy})
		writeJSON(w, http.StatusOK, out)
		return nil
	case "complete", "abort":
		if state.Stage == "none" {
			return errorf(http.StatusConflict, "image %s: no rollout in progress", im.Name)
		}
		if req.Action == "complete" {
			st, err := a.storageOf(r.Context(), im.Name)
			if err != nil {
				return err
			}
			if err := st.SetCurrentVersion(r.Context(), im.Name, state.Version); err != nil {
				return storageError{fmt.Errorf("rollout: set current version of image %s: %w", im.Name, err)}
			}
			current = state.Version
		}
		for _, c := range pinned {
			c.Labels = maps.Clone(c.Labels)
			delete(c.Labels, store.LabelVersion)
			if err := a.deps.Store.PutClient(r.Context(), c); err != nil {
				return fmt.Errorf("rollout: unpin client %s: %w", c.Name, err)
			}
		}
		a.auditReq(r, "image.rollout_"+req.Action, "image/"+im.Name, map[string]any{"version": state.Version, "clients": state.Clients})
		out := rolloutJSON{Image: im.Name, Version: state.Version, Stage: "none", Clients: []string{}, Current: current}
		if req.Action == "complete" {
			out.Stage = "done"
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	return fieldError("action", "action %q: want start, complete or abort", req.Action)
}
