package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"regexp"
	"time"

	"github.com/dls-project/dls/core/chapsecret"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/storage"
)

// clientNameRE: client names are DNS-label-like, so they also make valid
// volume names and IQN suffixes.
var clientNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,63}$`)

// clientBody is a client as the API shows it and takes it, without its
// CHAP secrets: they are write-only (clientInput, chapRequest) and never
// shown, even to admins. Only a backup carries them (backupClient).
type clientBody struct {
	Name           string            `json:"name"`
	MAC            string            `json:"mac"`
	Image          string            `json:"image"`
	Address        string            `json:"address,omitempty"`
	Initiators     []string          `json:"initiators,omitempty"`
	ExtraAddresses []string          `json:"extra_addresses,omitempty"`
	Persistent     bool              `json:"persistent"`
	Labels         map[string]string `json:"labels,omitempty"`
}

// clientInput is a client as POST and PUT take it: the shown fields and,
// write-only, its CHAP secrets. A secret left out is generated (POST) or
// kept (PUT).
//
// It repeats clientBody's fields rather than embed it, so that a decoding
// error names the JSON field ("persistent"), not a Go path through the
// embedded struct.
type clientInput struct {
	Name             string            `json:"name"`
	MAC              string            `json:"mac"`
	Image            string            `json:"image"`
	Address          string            `json:"address,omitempty"`
	Initiators       []string          `json:"initiators,omitempty"`
	ExtraAddresses   []string          `json:"extra_addresses,omitempty"`
	Persistent       bool              `json:"persistent"`
	Labels           map[string]string `json:"labels,omitempty"`
	CHAPSecret       string            `json:"chap_secret,omitempty"`
	CHAPMutualSecret string            `json:"chap_mutual_secret,omitempty"`
}

// body is b without its secrets.
func (b clientInput) body() clientBody {
	return clientBody{Name: b.Name, MAC: b.MAC, Image: b.Image, Address: b.Address, Initiators: b.Initiators,
		ExtraAddresses: b.ExtraAddresses, Persistent: b.Persistent, Labels: b.Labels}
}

// clientJSON is a client as the API shows it.
type clientJSON struct {
	clientBody
	// Volume is the storage volume of a renamed client (its old name);
	// absent when the volume has the client's name.
	Volume    string    `json:"volume,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func toClientJSON(c store.Client) clientJSON {
	b := clientBody{Name: c.Name, MAC: c.MAC, Image: c.Image, Initiators: c.Initiators, Persistent: c.Persistent, Labels: c.Labels}
	if c.Address.IsValid() {
		b.Address = c.Address.String()
	}
	for _, a := range c.ExtraAddresses {
		b.ExtraAddresses = append(b.ExtraAddresses, a.String())
	}
	return clientJSON{clientBody: b, Volume: c.Volume, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt}
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
	if len(b.ExtraAddresses) > 64 {
		return store.Client{}, fieldError("extra_addresses", "at most 64 extra addresses")
	}
	for _, s := range b.ExtraAddresses {
		addr, err := netip.ParseAddr(s)
		if err != nil || addr.Zone() != "" {
			return store.Client{}, fieldError("extra_addresses", "extra address %q is not an IP address such as 10.0.0.5 (no zone)", s)
		}
		c.ExtraAddresses = append(c.ExtraAddresses, addr)
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

// createClient: POST clients; a name already taken is a 409. A client
// without chap_secret gets a generated one (CHAP is on for every client).
func (a *API) createClient(w http.ResponseWriter, r *http.Request) error {
	var b clientInput
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	c, err := a.toClient(r, b.body())
	if err != nil {
		return err
	}
	for _, k := range hostMarks {
		if _, ok := c.Labels[k]; ok {
			return fieldError("labels", "label %s is the host's: set by the maintenance and rollout calls only", k)
		}
	}
	chap, err := setSecrets(&c, b)
	if err != nil {
		return err
	}
	if c.CHAPSecret == "" {
		if c.CHAPSecret, err = chapsecret.Generate(); err != nil {
			return err
		}
		chap = "generated"
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
	a.auditReq(r, "client.create", "client/"+c.Name, clientAudit{clientBody: toClientJSON(c).clientBody, CHAP: chap})
	return a.answerClient(w, r, c.Name, http.StatusCreated)
}

// clientAudit is the audit detail of a client write: the shown fields and
// where its secrets came from ("generated", "set", "kept"), never them.
type clientAudit struct {
	clientBody
	CHAP string `json:"chap"`
}

// setSecrets validates the secrets of b and sets those given on c. It
// answers "set" when b gave one, "" otherwise.
func setSecrets(c *store.Client, b clientInput) (string, error) {
	if b.CHAPSecret == "" && b.CHAPMutualSecret == "" {
		return "", nil
	}
	if b.CHAPSecret != "" {
		if err := chapsecret.Check("chap_secret", b.CHAPSecret); err != nil {
			return "", fieldError("chap_secret", "%v", err)
		}
		c.CHAPSecret = b.CHAPSecret
	}
	if b.CHAPMutualSecret != "" {
		if err := chapsecret.Check("chap_mutual_secret", b.CHAPMutualSecret); err != nil {
			return "", fieldError("chap_mutual_secret", "%v", err)
		}
		c.CHAPMutualSecret = b.CHAPMutualSecret
	}
	if c.CHAPMutualSecret != "" && c.CHAPMutualSecret == c.CHAPSecret {
		return "", fieldError("chap_mutual_secret", "chap_mutual_secret must differ from chap_secret (RFC 3720)")
	}
	return "set", nil
}

// updateClient: PUT clients/{name} replaces an existing client. Its CHAP
// secrets are kept unless the body sets them (they are never shown, so a
// client read, edited and written back has none).
func (a *API) updateClient(w http.ResponseWriter, r *http.Request) error {
	var b clientInput
	if err := decode(w, r, &b, false); err != nil {
		return err
	}
	name := r.PathValue("name")
	if b.Name == "" {
		b.Name = name
	} else if b.Name != name {
		return fieldError("name", "name %q differs from the path's %q (clients cannot be renamed)", b.Name, name)
	}
	c, err := a.toClient(r, b.body())
	if err != nil {
		return err
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	cur, err := a.clientOf(r)
	if err != nil {
		return err
	}
	c.CHAPSecret, c.CHAPMutualSecret = cur.CHAPSecret, cur.CHAPMutualSecret
	keepHostMarks(&c, cur)
	chap, err := setSecrets(&c, b)
	if err != nil {
		return err
	}
	if c.CHAPSecret == "" { // a client from before CHAP was on by default
		if c.CHAPSecret, err = chapsecret.Generate(); err != nil {
			return err
		}
		chap = "generated"
	}
	if err := a.putClient(r, c); err != nil {
		return err
	}
	if chap == "" {
		chap = "kept"
	}
	a.auditReq(r, "client.update", "client/"+c.Name, clientAudit{clientBody: toClientJSON(c).clientBody, CHAP: chap})
	if chap != "kept" {
		a.auditReq(r, "client.chap_"+chapAction[chap], "client/"+c.Name, map[string]bool{
			"secret_changed": c.CHAPSecret != cur.CHAPSecret, "mutual_secret_changed": c.CHAPMutualSecret != cur.CHAPMutualSecret,
		})
	}
	return a.answerClient(w, r, c.Name, http.StatusOK)
}

// chapAction names the audit action of a secret change by its origin.
var chapAction = map[string]string{"set": "set", "generated": "generate", "rotated": "rotate"}

// chapRequest is the body of POST clients/{name}/chap: either rotate (a
// new generated secret, and a new mutual secret when the client has one)
// or secret (and optionally mutual_secret) to set.
type chapRequest struct {
	Rotate       bool   `json:"rotate,omitempty"`
	Secret       string `json:"secret,omitempty"`
	MutualSecret string `json:"mutual_secret,omitempty"`
}

// chapResult answers POST clients/{name}/chap; it holds no secret.
type chapResult struct {
	Client string `json:"client"`
	// Action is "rotated" or "set".
	Action       string    `json:"action"`
	MutualSecret bool      `json:"mutual_secret"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// clientCHAP: POST clients/{name}/chap rotates or sets the client's CHAP
// secrets. The answer tells what was done, never the secret: a script
// rendered after it carries the new one. A client whose dls.hcl block has
// a chap block gets that secret back at the next reload.
func (a *API) clientCHAP(w http.ResponseWriter, r *http.Request) error {
	var req chapRequest
	if err := decode(w, r, &req, false); err != nil {
		return err
	}
	switch {
	case req.Rotate && (req.Secret != "" || req.MutualSecret != ""):
		return fieldError("rotate", "give either rotate or secret, not both")
	case !req.Rotate && req.Secret == "":
		if req.MutualSecret != "" {
			return fieldError("secret", "mutual_secret needs secret")
		}
		return fieldError("rotate", `want {"rotate": true} or {"secret": "..."}`)
	}
	if req.Secret != "" {
		if err := chapsecret.Check("secret", req.Secret); err != nil {
			return fieldError("secret", "%v", err)
		}
	}
	if req.MutualSecret != "" {
		if err := chapsecret.Check("mutual_secret", req.MutualSecret); err != nil {
			return fieldError("mutual_secret", "%v", err)
		}
		if req.MutualSecret == req.Secret {
			return fieldError("mutual_secret", "mutual_secret must differ from secret (RFC 3720)")
		}
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	c, err := a.clientOf(r)
	if err != nil {
		return err
	}
	prevSecret, prevMutual := c.CHAPSecret, c.CHAPMutualSecret
	action := "set"
	if req.Rotate {
		action = "rotated"
		if c.CHAPSecret, err = chapsecret.Generate(); err != nil {
			return err
		}
		if c.CHAPMutualSecret != "" {
			if c.CHAPMutualSecret, err = chapsecret.Generate(); err != nil {
				return err
			}
		}
	} else {
		c.CHAPSecret = req.Secret
		if req.MutualSecret != "" {
			c.CHAPMutualSecret = req.MutualSecret
		}
		if c.CHAPMutualSecret == c.CHAPSecret {
			return fieldError("secret", "secret must differ from the client's mutual secret (RFC 3720)")
		}
	}
	if err := a.putClient(r, c); err != nil {
		return err
	}
	a.auditReq(r, "client.chap_"+chapAction[action], "client/"+c.Name, map[string]bool{
		"secret_changed": c.CHAPSecret != prevSecret, "mutual_secret_changed": c.CHAPMutualSecret != prevMutual,
	})
	stored, err := a.deps.Store.GetClient(r.Context(), c.Name)
	if err != nil {
		return fmt.Errorf("read back client %s: %w", c.Name, err)
	}
	writeJSON(w, http.StatusOK, chapResult{Client: c.Name, Action: action, MutualSecret: stored.CHAPMutualSecret != "", UpdatedAt: stored.UpdatedAt})
	return nil
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
	st, err := a.storageOf(r.Context(), c.Image)
	if err != nil {
		return err
	}
	v, err := st.ResetVolume(r.Context(), storage.VolumeRequest{Volume: c.VolumeName(), Image: c.Image, Version: req.Version})
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

// hostMarks are the client labels only the maintenance and rollout calls
// write: a client body can neither set nor change nor drop them.
var hostMarks = []string{store.LabelMaintenance, store.LabelVersion}

// keepHostMarks gives next the host marks of cur, whatever the body said,
// but drops a rollout pin when the image changes: it names a version of
// the old image.
func keepHostMarks(next *store.Client, cur store.Client) {
	labels := maps.Clone(next.Labels)
	for _, k := range hostMarks {
		delete(labels, k)
		if v, ok := cur.Labels[k]; ok && !(k == store.LabelVersion && next.Image != cur.Image) {
			if labels == nil {
				labels = map[string]string{}
			}
			labels[k] = v
		}
	}
	next.Labels = labels
}
