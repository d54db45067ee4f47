package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/storage"
)

// Maintenance mode (the "super client" of other diskless servers): one
// client is where the image's next version is prepared. start gives it a
// fresh clone of the image's current version that is kept across boots,
// even when the client is not persistent (the host skips its boot-time
// reset while store.LabelMaintenance is set); promote (admin) makes that
// volume the image's next, current version and ends the mode; cancel ends
// the mode and leaves the volume as it is (a non-persistent client gets a
// fresh clone at its next boot, as always).

type maintenanceRequest struct {
	// Action is start, promote or cancel.
	Action string `json:"action"`
}

type maintenanceJSON struct {
	Client string `json:"client"`
	// Maintenance: the client is in maintenance now; Since: from when.
	Maintenance bool      `json:"maintenance"`
	Since       time.Time `json:"since,omitzero"`
	// Version is, after promote, the image version made of the volume.
	Version *versionJSON `json:"version,omitempty"`
}

// clientMaintenance: POST clients/{name}/maintenance {"action": ...}.
func (a *API) clientMaintenance(w http.ResponseWriter, r *http.Request) error {
	var req maintenanceRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	switch req.Action {
	case "start", "cancel":
	case "promote":
		if p := principalOf(r); p.role < roleAdmin {
			return errorf(http.StatusForbidden, "role %s may not promote a volume to an image version (needs admin)", p.role)
		}
	default:
		return fieldError("action", "action %q: want start, promote or cancel", req.Action)
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	c, err := a.clientOf(r)
	if err != nil {
		return err
	}
	since, in := c.Labels[store.LabelMaintenance]
	out := maintenanceJSON{Client: c.Name}
	switch req.Action {
	case "start":
		if in {
			return errorf(http.StatusConflict, "client %s is in maintenance since %s", c.Name, since)
		}
		st, err := a.storageOf(r.Context(), c.Image)
		if err != nil {
			return err
		}
		v, err := st.ResetVolume(r.Context(), storage.VolumeRequest{Volume: c.VolumeName(), Image: c.Image})
		switch {
		case errors.Is(err, storage.ErrInUse):
			return errorf(http.StatusConflict, "volume of client %s is in use (attached): power the client off first: %v", c.Name, err)
		case err != nil && !errors.Is(err, storage.ErrNotFound): // not made yet: its first attach clones current
			return storageError{fmt.Errorf("maintenance of client %s: fresh clone: %w", c.Name, err)}
		}
		now := a.clock.Now().UTC()
		c.Labels = maps.Clone(c.Labels)
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[store.LabelMaintenance] = now.Format(time.RFC3339)
		if err := a.deps.Store.PutClient(r.Context(), c); err != nil {
			return fmt.Errorf("maintenance of client %s: %w", c.Name, err)
		}
		a.auditReq(r, "client.maintenance_start", "client/"+c.Name, map[string]any{"image": c.Image, "version": v.Version})
		out.Maintenance, out.Since = true, now.Truncate(time.Second)
	case "promote", "cancel":
		if !in {
			return errorf(http.StatusConflict, "client %s is not in maintenance (start it first)", c.Name)
		}
		if req.Action == "promote" {
			im, err := a.deps.Store.GetImage(r.Context(), c.Image)
			if err != nil {
				return fmt.Errorf("image %s of client %s: %w", c.Image, c.Name, err)
			}
			v, err := a.promote(r, im, c.Name)
			if err != nil {
				return err
			}
			out.Version = &v
		}
		c.Labels = maps.Clone(c.Labels)
		delete(c.Labels, store.LabelMaintenance)
		if err := a.deps.Store.PutClient(r.Context(), c); err != nil {
			return fmt.Errorf("end maintenance of client %s: %w", c.Name, err)
		}
		detail := map[string]any{"since": since}
		if out.Version != nil {
			detail["version"] = out.Version.Number
		}
		a.auditReq(r, "client.maintenance_"+req.Action, "client/"+c.Name, detail)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
