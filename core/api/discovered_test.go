package api

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// TestDiscoveredAdopt: a viewer lists discovered machines (order of first
// sight, MACs canonical); a viewer may not adopt; an operator adopts one
// as a client with a generated secret, and it leaves the list.
func TestDiscoveredAdopt(t *testing.T) {
	e := newEnv(t)
	t0 := e.clock.Now().Add(-time.Hour)
	e.st.discover(t, store.DiscoveredMachine{MAC: "52-54-00-CC-00-02", FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(2 * time.Minute),
		Arch: 7, VendorClass: "PXEClient:Arch:00007", Address: netip.MustParseAddr("10.0.0.1"), Count: 4})
	e.st.discover(t, store.DiscoveredMachine{MAC: "52:54:00:cc:00:01", FirstSeen: t0, LastSeen: t0})
	vera, oscar := e.login("vera").AccessToken, e.login("oscar").AccessToken

	var list []discoveredJSON
	e.want(e.do("GET", "/discovered", vera, nil), http.StatusOK, &list)
	if len(list) != 2 || list[0].MAC != "52:54:00:cc:00:01" || list[1].MAC != "52:54:00:cc:00:02" {
		t.Fatalf("discovered = %+v", list)
	}
	if m := list[1]; m.Count != 4 || m.Arch != 7 || m.Address != "10.0.0.1" || m.VendorClass != "PXEClient:Arch:00007" {
		t.Errorf("discovered[1] = %+v", m)
	}

	body := map[string]any{"name": "pc-01", "image": "win11", "labels": map[string]string{"room": "a"}}
	e.wantError(e.do("POST", "/discovered/52:54:00:cc:00:02/adopt", vera, body), http.StatusForbidden, "needs operator", "")
	e.wantError(e.do("POST", "/discovered/52:54:00:cc:00:09/adopt", oscar, body), http.StatusNotFound, "no discovered machine with MAC 52:54:00:cc:00:09", "")
	e.wantError(e.do("POST", "/discovered/nope/adopt", oscar, body), http.StatusBadRequest, "not a MAC address", "")
	e.wantError(e.do("POST", "/discovered/52:54:00:cc:00:02/adopt", oscar, map[string]any{"name": "pc-01", "image": "nope"}), http.StatusBadRequest, `no image "nope"`, "image")

	var c clientJSON
	e.want(e.do("POST", "/discovered/52-54-00-CC-00-02/adopt", oscar, body), http.StatusCreated, &c)
	if c.Name != "pc-01" || c.MAC != "52:54:00:cc:00:02" || c.Image != "win11" || !c.Persistent || c.Labels["room"] != "a" {
		t.Errorf("adopted client = %+v", c)
	}
	stored, err := e.st.GetClient(context.Background(), "pc-01")
	if err != nil || len(stored.CHAPSecret) < 12 {
		t.Errorf("adopted client has no generated CHAP secret: %v", err)
	}
	e.want(e.do("GET", "/discovered", vera, nil), http.StatusOK, &list)
	if len(list) != 1 || list[0].MAC != "52:54:00:cc:00:01" {
		t.Errorf("after adoption, discovered = %+v", list)
	}
	// The name is taken now.
	e.wantError(e.do("POST", "/discovered/52:54:00:cc:00:01/adopt", oscar, body), http.StatusConflict, "client pc-01 exists", "name")
	if !e.audited("client.adopt", "client/pc-01") {
		t.Error("adoption not audited")
	}

	e.wantError(e.do("DELETE", "/discovered/52:54:00:cc:00:01", vera, nil), http.StatusForbidden, "needs operator", "")
	e.want(e.do("DELETE", "/discovered/52:54:00:cc:00:01", oscar, nil), http.StatusNoContent, nil)
	e.want(e.do("GET", "/discovered", vera, nil), http.StatusOK, &list)
	if len(list) != 0 {
		t.Errorf("after forget, discovered = %+v", list)
	}
}

// TestRenameClient: an operator renames a client; the volume keeps its
// name (so a reset goes to the same volume); refused while it boots or
// has a live iSCSI session, for a config client, and for a taken name.
func TestRenameClient(t *testing.T) {
	live := map[string]bool{}
	e := newEnv(t, func(d *Deps, _ *Options) {
		d.LiveSession = func(_ context.Context, client string) bool { return live[client] }
	})
	alice, vera := e.login("alice").AccessToken, e.login("vera").AccessToken
	e.mustCreateClient(alice, "auto-525400dd0001", "52:54:00:dd:00:01")
	e.mustCreateClient(alice, "pc-02", "52:54:00:dd:00:02")

	e.wantError(e.do("POST", "/clients/auto-525400dd0001/rename", vera, map[string]string{"name": "pc-01"}), http.StatusForbidden, "needs operator", "")
	e.wantError(e.do("POST", "/clients/auto-525400dd0001/rename", alice, map[string]string{"name": "PC 1"}), http.StatusBadRequest, "want 1-64", "name")
	e.wantError(e.do("POST", "/clients/auto-525400dd0001/rename", alice, map[string]string{"name": "pc-02"}), http.StatusConflict, "client pc-02 exists", "name")
	e.wantError(e.do("POST", "/clients/nobody/rename", alice, map[string]string{"name": "pc-09"}), http.StatusNotFound, `no client "nobody"`, "")

	live["auto-525400dd0001"] = true
	e.wantError(e.do("POST", "/clients/auto-525400dd0001/rename", alice, map[string]string{"name": "pc-01"}), http.StatusConflict, "live iSCSI session", "")
	live["auto-525400dd0001"] = false
	e.st.mu.Lock()
	e.st.sessions[7] = store.Session{ID: 7, Client: "auto-525400dd0001", State: store.SessionActive}
	e.st.mu.Unlock()
	e.wantError(e.do("POST", "/clients/auto-525400dd0001/rename", alice, map[string]string{"name": "pc-01"}), http.StatusConflict, "is booting", "")
	e.st.mu.Lock()
	for id, s := range e.st.sessions {
		s.State = store.SessionDone
		e.st.sessions[id] = s
	}
	e.st.mu.Unlock()

	var c clientJSON
	e.want(e.do("POST", "/clients/auto-525400dd0001/rename", alice, map[string]string{"name": "pc-01"}), http.StatusOK, &c)
	if c.Name != "pc-01" || c.MAC != "52:54:00:dd:00:01" || c.Volume != "auto-525400dd0001" {
		t.Errorf("renamed = %+v, want pc-01 with volume auto-525400dd0001", c)
	}
	e.want(e.do("GET", "/clients/auto-525400dd0001", alice, nil), http.StatusNotFound, nil)
	// The volume is still the old one: a reset goes to it.
	var v volumeJSON
	e.stor.calls = nil
	e.want(e.do("POST", "/clients/pc-01/volume", alice, map[string]any{"action": "reset"}), http.StatusOK, &v)
	if v.Name != "auto-525400dd0001" {
		t.Errorf("reset after rename: volume %q, want auto-525400dd0001 (calls %v)", v.Name, e.stor.calls)
	}
	if !e.audited("client.rename", "client/pc-01") {
		t.Error("rename not audited")
	}

	if err := e.st.PutClient(context.Background(), store.Client{Name: "cfg-01", MAC: "52:54:00:dd:00:03", Image: "win11",
		Labels: map[string]string{"dls.origin": "config"}}); err != nil {
		t.Fatal(err)
	}
	e.wantError(e.do("POST", "/clients/cfg-01/rename", alice, map[string]string{"name": "pc-03"}), http.StatusConflict, "declared in the config file", "")
}

// audited reports whether the audit log has action on object.
func (e *env) audited(action, object string) bool {
	e.t.Helper()
	es, err := e.st.ListAudit(context.Background(), 0)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, a := range es {
		if a.Action == action && strings.HasPrefix(a.Object, object) {
			return true
		}
	}
	return false
}
