package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dls-project/dls/core/chapsecret"
	"github.com/dls-project/dls/core/store"
)

// Discovery and adoption: machines recorded by unknown_clients =
// "discover" (GET discovered), made clients by POST
// discovered/{mac}/adopt, and clients renamed (POST clients/{name}/rename)
// with their volume kept.

// discoveredJSON is a discovered machine as the API shows it.
type discoveredJSON struct {
	MAC         string    `json:"mac"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Arch        uint16    `json:"arch"`
	VendorClass string    `json:"vendor_class,omitempty"`
	UserClass   string    `json:"user_class,omitempty"`
	Address     string    `json:"address,omitempty"`
	Count       int64     `json:"count"`
}

func toDiscoveredJSON(m store.DiscoveredMachine) discoveredJSON {
	d := discoveredJSON{MAC: m.MAC, FirstSeen: m.FirstSeen, LastSeen: m.LastSeen, Arch: m.Arch,
		VendorClass: m.VendorClass, UserClass: m.UserClass, Count: m.Count}
	if m.Address.IsValid() {
		d.Address = m.Address.String()
	}
	return d
}

// listDiscovered: GET discovered, in order of first sight.
func (a *API) listDiscovered(w http.ResponseWriter, r *http.Request) error {
	ms, err := a.deps.Store.ListDiscovered(r.Context())
	if err != nil {
		return err
	}
	out := make([]discoveredJSON, len(ms))
	for i, m := range ms {
		out[i] = toDiscoveredJSON(m)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// discoveredOf returns the discovered machine named in the path, or a 404.
func (a *API) discoveredOf(r *http.Request) (store.DiscoveredMachine, error) {
	mac, err := store.CanonicalMAC(r.PathValue("mac"))
	if err != nil {
		return store.DiscoveredMachine{}, errorf(http.StatusBadRequest, "%q is not a MAC address (want aa:bb:cc:dd:ee:ff)", r.PathValue("mac"))
	}
	m, err := a.deps.Store.GetDiscovered(r.Context(), mac)
	if errors.Is(err, store.ErrNotFound) {
		return m, errorf(http.StatusNotFound, "no discovered machine with MAC %s (dls client discovered lists them)", mac)
	}
	return m, err
}

// forgetDiscovered: DELETE discovered/{mac}. The machine is recorded
// again when it asks to boot again.
func (a *API) forgetDiscovered(w http.ResponseWriter, r *http.Request) error {
	m, err := a.discoveredOf(r)
	if err != nil {
		return err
	}
	if err := a.deps.Store.DeleteDiscovered(r.Context(), m.MAC); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	a.auditReq(r, "discovered.forget", "discovered/"+m.MAC, nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// adoptRequest is the body of POST discovered/{mac}/adopt: the client the
// machine becomes. Persistent defaults to true.
type adoptRequest struct {
	Name       string            `json:"name"`
	Image      string            `json:"image"`
	Address    string            `json:"address,omitempty"`
	Persistent *bool             `json:"persistent,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// adoptDiscovered: POST discovered/{mac}/adopt makes the machine a client
// (with a generated CHAP secret, as every new client) and forgets it as
// discovered. Its next boot is a client's.
func (a *API) adoptDiscovered(w http.ResponseWriter, r *http.Request) error {
	var req adoptRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	m, err := a.discoveredOf(r)
	if err != nil {
		return err
	}
	persistent := req.Persistent == nil || *req.Persistent
	c, err := a.toClient(r, clientBody{Name: req.Name, MAC: m.MAC, Image: req.Image, Address: req.Address, Persistent: persistent, Labels: req.Labels})
	if err != nil {
		return err
	}
	if c.CHAPSecret, err = chapsecret.Generate(); err != nil {
		return err
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if _, err := a.deps.Store.GetClient(r.Context(), c.Name); err == nil {
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("client %s exists: pick another name", c.Name), field: "name"}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := a.putClient(r, c); err != nil {
		return err
	}
	// The client exists now: discovery no longer records its MAC, so a
	// failure here leaves a stale row, not a wrong client.
	if err := a.deps.Store.DeleteDiscovered(r.Context(), m.MAC); err != nil && !errors.Is(err, store.ErrNotFound) {
		a.logger.Warn("adopted machine still listed as discovered", "mac", m.MAC, "client", c.Name, "error", err)
	}
	a.auditReq(r, "client.adopt", "client/"+c.Name, clientAudit{clientBody: toClientJSON(c).clientBody, CHAP: "generated"})
	return a.answerClient(w, r, c.Name, http.StatusCreated)
}

// renameRequest is the body of POST clients/{name}/rename.
type renameRequest struct {
	Name string `json:"name"`
}

// renameClient: POST clients/{name}/rename gives the client a new name
// and keeps its volume (the store maps the new name to it). Refused (409)
// while the client boots or runs (an active boot session, a live iSCSI
// session): its target's name is the client's. A client declared in
// dls.hcl is renamed there, not here.
func (a *API) renameClient(w http.ResponseWriter, r *http.Request) error {
	var req renameRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if !clientNameRE.MatchString(req.Name) {
		return fieldError("name", "name %q: want 1-64 of a-z 0-9 . -, starting with a letter or digit", req.Name)
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	c, err := a.clientOf(r)
	if err != nil {
		return err
	}
	if c.Labels["dls.origin"] == "config" {
		return errorf(http.StatusConflict, "client %s is declared in the config file: rename its client block there", c.Name)
	}
	if busy, err := a.busy(r.Context(), c.Name); err != nil {
		return err
	} else if busy != "" {
		return errorf(http.StatusConflict, "client %s %s: rename it once the machine is off", c.Name, busy)
	}
	err = a.deps.Store.RenameClient(r.Context(), c.Name, req.Name)
	switch {
	case errors.Is(err, store.ErrConflict):
		return &apiError{status: http.StatusConflict, msg: err.Error(), field: "name"}
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "no client %q", c.Name)
	case err != nil:
		return err
	}
	a.auditReq(r, "client.rename", "client/"+req.Name, map[string]string{"from": c.Name, "to": req.Name, "volume": c.VolumeName()})
	return a.answerClient(w, r, req.Name, http.StatusOK)
}

// busy says what keeps client from being renamed ("" when nothing): an
// active boot session, or a live iSCSI session (Deps.LiveSession).
func (a *API) busy(ctx context.Context, client string) (string, error) {
	ss, err := a.deps.Store.ListSessions(ctx, store.SessionFilter{Client: client, State: store.SessionActive, Limit: 1})
	if err != nil {
		return "", fmt.Errorf("boot sessions of client %s: %w", client, err)
	}
	if len(ss) > 0 {
		return fmt.Sprintf("is booting (session %d)", ss[0].ID), nil
	}
	if a.deps.LiveSession != nil && a.deps.LiveSession(ctx, client) {
		return "has a live iSCSI session", nil
	}
	return "", nil
}
