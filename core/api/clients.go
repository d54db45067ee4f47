package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/storage"
)

// clientNameRE: client names are DNS-label-like, so they also make valid
// volume names and IQN suffixes.
var clientNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,63}$`)

// clientBody is a client as the API takes it.
type clientBody struct {
	Name       string            `json:"name"`
	MAC        string            `json:"mac"`
	Image      string            `json:"image"`
	Address    string            `json:"address,omitempty"`
	Initiators []string          `json:"initiators,omitempty"`
	Persistent bool              `json:"persistent"`
	Labels     map[string]string `json:"labels,omitempty"`
}

// clientJSON is a client as the API shows it.
type clientJSON struct {
	clientBody
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toClientJSON(c store.Client) clientJSON {
	b := clientBody{Name: c.Name, MAC: c.MAC, Image: c.Image, Initiators: c.Initiators, Persistent: c.Persistent, Labels: c.Labels}
	if c.Address.IsValid() {
		b.Address = c.Address.String()
	}
	return clientJSON{clientBody: b, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
}

// toClient validates b and returns the client to store.
func (a *API) toClient(r *http.Request, b clientBody) (store.Client, error) {
	if !clientNameRE.MatchString(b.Name) {
		return store.Client{}, fieldError("name", "name %q: want 1-64 of a-z 0-9 . -, starting with a letter or digit", b.Name)
	}
	mac, err := store.CanonicalMAC(b.MAC)
	if err != nil || b.MAC == "" {
		return store.Client{}, fieldError("mac", "mac %q is not a MAC address (want aa:bb:cc:dd:ee:ff)", b.MAC)
	}
	c := store.Client{Name: b.Name, MAC: mac, Image: b.Image, Initiators: b.Initiators, Persistent: b.Persistent, Labels: b.Labels}
	if b.Address != "" {
		addr, err := netip.ParseAddr(b.Address)
		if err != nil || !addr.Is4() {
			return store.Client{}, fieldError("address", "address %q is not an IPv4 address", b.Address)
		}
		c.Address = addr
	}
	for _, iqn := range b.Initiators {
		if iqn == "" || len(iqn) > 223 {
			return store.Client{}, fieldError("initiators", "initiator %q: want 1-223 characters", iqn)
		}
	}
	if len(b.Labels) > 64 {
		return store.Client{}, fieldError("labels", "at most 64 labels")
	}
	for k, v := range b.Labels {
		if k == "" || len(k) > 63 || len(v) > 255 {
			return store.Client{}, fieldError("labels", "label %q: want a key of 1-63 and a value of at most 255 characters", k)
		}
	}
	if b.Image == "" {
		return store.Client{}, fieldError("image", "image is required")
	}
	if _, err := a.deps.Store.GetImage(r.Context(), b.Image); errors.Is(err, store.ErrNotFound) {
		return store.Client{}, fieldError("image", "no image %q", b.Image)
	} else if err != nil {
		return store.Client{}, fmt.Errorf("look up image %s: %w", b.Image, err)
	}
	return c, nil
}

// putClient stores c, turning the store's refusals into answers.
func (a *API) putClient(r *http.Request, c store.Client) error {
	err := a.deps.Store.PutClient(r.Context(), c)
	switch {
	case errors.Is(err, store.ErrConflict):
		return errorf(http.StatusConflict, "client %s: %v", c.Name, err)
	case errors.Is(err, store.ErrInvalid):
		return errorf(http.StatusBadRequest, "client %s: %v", c.Name, err)
	case err != nil:
		return fmt.Errorf("store client %s: %w", c.Name, err)
	}
	return nil
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) error {
	cs, err := a.deps.Store.ListClients(r.Context())
	if err != nil {
		return err
	}
	out := make([]clientJSON, len(cs))
	for i, c := range cs {
		out[i] = toClientJSON(c)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// clientOf returns the client named in the path, or a 404.
func (a *API) clientOf(r *http.Request) (store.Client, error) {
	name := r.PathValue("name")
	c, err := a.deps.Store.GetClient(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return c, errorf(http.StatusNotFound, "no client %q", name)
	}
	return c, err
}

func (a *API) getClient(w http.ResponseWriter, r *http.Request) error {
	c, err := a.clientOf(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toClientJSON(c))
	return nil
}

// createClient: POST clients; a name already taken is a 409.
func (a *API) createClient(w http.ResponseWriter, r *http.Request) error {
	var b clientBody
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	c, err := a.toClient(r, b)
	if err != nil {
		return err
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if _, err := a.deps.Store.GetClient(r.Context(), c.Name); err == nil {
		return &apiError{status: http.StatusConflict, msg: fmt.Sprintf("client %s exists (PUT %s/clients/%s replaces it)", c.Name, Prefix, c.Name), field: "name"}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err := a.putClient(r, c); err != nil {
		return err
	}
	a.auditReq(r, "client.create", "client/"+c.Name, toClientJSON(c).clientBody)
	return a.answerClient(w, r, c.Name, http.StatusCreated)
}

// updateClient: PUT clients/{name} replaces an existing client.
func (a *API) updateClient(w http.ResponseWriter, r *http.Request) error {
	var b clientBody
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	name := r.PathValue("name")
	if b.Name == "" {
		b.Name = name
	} else if b.Name != name {
		return fieldError("name", "name %q differs from the path's %q (clients cannot be renamed)", b.Name, name)
	}
	c, err := a.toClient(r, b)
	if err != nil {
		return err
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if _, err := a.clientOf(r); err != nil {
		return err
	}
	if err := a.putClient(r, c); err != nil {
		return err
	}
	a.auditReq(r, "client.update", "client/"+c.Name, toClientJSON(c).clientBody)
	return a.answerClient(w, r, c.Name, http.StatusOK)
}

// answerClient writes the client as stored.
func (a *API) answerClient(w http.ResponseWriter, r *http.Request, name string, status int) error {
	c, err := a.deps.Store.GetClient(r.Context(), name)
	if err != nil {
		return fmt.Errorf("read back client %s: %w", name, err)
	}
	if status == http.StatusCreated {
		w.Header().Set("Location", Prefix+"/clients/"+name)
	}
	writeJSON(w, status, toClientJSON(c))
	return nil
}

// deleteClient: DELETE clients/{name}. The client's volume stays on its
// storage.
func (a *API) deleteClient(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	err := a.deps.Store.DeleteClient(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, "no client %q", name)
	}
	if err != nil {
		return err
	}
	a.auditReq(r, "client.delete", "client/"+name, nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type volumeRequest struct {
	Action  string `json:"action"`
	Version uint64 `json:"version"`
}

type volumeJSON struct {
	Name    string `json:"name"`
	Image   string `json:"image"`
	Version uint64 `json:"version"`
	Size    int64  `json:"size"`
}

// clientVolume: POST clients/{name}/volume {"action":"reset","version":N}
// makes the client's volume a fresh clone of version N (0: current).
// Refused (409) while the volume is attached.
func (a *API) clientVolume(w http.ResponseWriter, r *http.Request) error {
	var req volumeRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	if req.Action != "reset" {
		return fieldError("action", "action %q: want \"reset\"", req.Action)
	}
	c, err := a.clientOf(r)
	if err != nil {
		return err
	}
	st, err := a.storageOf(c.Image)
	if err != nil {
		return err
	}
	v, err := st.ResetVolume(r.Context(), storage.VolumeRequest{Volume: c.Name, Image: c.Image, Version: req.Version})
	switch {
	case errors.Is(err, storage.ErrInUse):
		return errorf(http.StatusConflict, "volume of client %s is in use (attached): power the client off first: %v", c.Name, err)
	case errors.Is(err, storage.ErrNotFound):
		return errorf(http.StatusNotFound, "reset volume of client %s: %v", c.Name, err)
	case err != nil:
		return storageError{fmt.Errorf("reset volume of client %s: %w", c.Name, err)}
	}
	a.auditReq(r, "client.volume_reset", "client/"+c.Name, map[string]any{"image": v.Image, "version": v.Version})
	writeJSON(w, http.StatusOK, volumeJSON{Name: v.Name, Image: v.Image, Version: v.Version, Size: v.Size})
	return nil
}

// wakeClient: POST clients/{name}/wake sends a Wake-on-LAN packet.
func (a *API) wakeClient(w http.ResponseWriter, r *http.Request) error {
	var empty struct{}
	if err := decode(w, r, &empty, true); err != nil {
		return err
	}
	if a.deps.Waker == nil {
		return errorf(http.StatusNotImplemented, "wake-on-LAN is not configured on this host")
	}
	c, err := a.clientOf(r)
	if err != nil {
		return err
	}
	if err := a.deps.Waker.Wake(r.Context(), c.MAC, c.Address); err != nil {
		return fmt.Errorf("wake client %s: %w", c.Name, err)
	}
	a.auditReq(r, "client.wake", "client/"+c.Name, map[string]string{"mac": c.MAC})
	writeJSON(w, http.StatusAccepted, map[string]string{"client": c.Name, "mac": c.MAC, "status": "magic packet sent"})
	return nil
}
