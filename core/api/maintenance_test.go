package api

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/store"
)

// TestMaintenance: start gives the client a fresh clone and marks it; a
// second start is a conflict; an operator cannot promote, an admin can:
// the volume becomes the image's next version and the mark goes; cancel
// ends a mode without a version; every step is audited.
func TestMaintenance(t *testing.T) {
	e := newEnv(t)
	admin := e.login("alice").AccessToken
	op := e.login("oscar").AccessToken
	e.mustCreateClient(admin, "pc-01", "52:54:00:00:00:01")
	e.mustCreateClient(admin, "pc-02", "52:54:00:00:00:02")

	var m maintenanceJSON
	e.want(e.do("POST", "/clients/pc-01/maintenance", op, map[string]string{"action": "start"}), http.StatusOK, &m)
	if !m.Maintenance || m.Since.IsZero() {
		t.Errorf("start answered %+v", m)
	}
	if calls := e.stor.storageCalls(); !slices.ContainsFunc(calls, func(c string) bool { return strings.HasPrefix(c, "reset pc-01") }) {
		t.Errorf("storage calls %v: want a reset of pc-01 (a fresh clone)", calls)
	}
	c, _ := e.st.GetClient(t.Context(), "pc-01")
	if c.Labels[store.LabelMaintenance] == "" {
		t.Fatalf("pc-01 labels %v: want %s", c.Labels, store.LabelMaintenance)
	}
	e.wantError(e.do("POST", "/clients/pc-01/maintenance", op, map[string]string{"action": "start"}), http.StatusConflict, "in maintenance since", "")
	e.wantError(e.do("POST", "/clients/pc-01/maintenance", op, map[string]string{"action": "promote"}), http.StatusForbidden, "needs admin", "")
	e.wantError(e.do("POST", "/clients/pc-01/maintenance", op, map[string]string{"action": "fly"}), http.StatusBadRequest, "want start, promote or cancel", "action")

	m = maintenanceJSON{}
	e.want(e.do("POST", "/clients/pc-01/maintenance", admin, map[string]string{"action": "promote"}), http.StatusOK, &m)
	if m.Maintenance || m.Version == nil || m.Version.Number != 2 || !m.Version.Current {
		t.Errorf("promote answered %+v: want version 2, current, mode ended", m)
	}
	c, _ = e.st.GetClient(t.Context(), "pc-01")
	if _, in := c.Labels[store.LabelMaintenance]; in {
		t.Errorf("pc-01 still marked after promote: %v", c.Labels)
	}
	e.wantError(e.do("POST", "/clients/pc-01/maintenance", admin, map[string]string{"action": "cancel"}), http.StatusConflict, "not in maintenance", "")

	e.want(e.do("POST", "/clients/pc-02/maintenance", op, map[string]string{"action": "start"}), http.StatusOK, nil)
	m = maintenanceJSON{}
	e.want(e.do("POST", "/clients/pc-02/maintenance", op, map[string]string{"action": "cancel"}), http.StatusOK, &m)
	if m.Maintenance || m.Version != nil {
		t.Errorf("cancel answered %+v", m)
	}
	acts := e.st.auditActions()
	for _, want := range []string{"client.maintenance_start", "client.maintenance_promote", "client.maintenance_cancel"} {
		if !slices.Contains(acts, want) {
			t.Errorf("audit %v lacks %s", acts, want)
		}
	}
}

// TestHostMarksOnlyThroughTheirCalls: a client body cannot set, change or
// drop dls.maintenance or dls.version; a change of image drops the pin.
func TestHostMarksOnlyThroughTheirCalls(t *testing.T) {
	e := newEnv(t)
	admin := e.login("alice").AccessToken
	e.wantError(e.do("POST", "/clients", admin, map[string]any{"name": "pc-01", "mac": "52:54:00:00:00:01", "image": "win11",
		"labels": map[string]string{store.LabelVersion: "1"}}), http.StatusBadRequest, "the host's", "labels")
	e.mustCreateClient(admin, "pc-01", "52:54:00:00:00:01")
	e.want(e.do("POST", "/clients/pc-01/maintenance", admin, map[string]string{"action": "start"}), http.StatusOK, nil)
	c, _ := e.st.GetClient(t.Context(), "pc-01")
	c.Labels[store.LabelVersion] = "1" // as a rollout would
	if err := e.st.PutClient(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	since := c.Labels[store.LabelMaintenance]
	// A PUT that drops both and adds a room keeps the marks.
	e.want(e.do("PUT", "/clients/pc-01", admin, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11",
		"labels": map[string]string{"room": "r1", store.LabelMaintenance: "forged"}}), http.StatusOK, nil)
	c, _ = e.st.GetClient(t.Context(), "pc-01")
	if c.Labels[store.LabelMaintenance] != since || c.Labels[store.LabelVersion] != "1" || c.Labels["room"] != "r1" {
		t.Errorf("labels after PUT %v: want the marks kept and room=r1", c.Labels)
	}
	e.want(e.do("POST", "/images", admin, map[string]any{"name": "deb12", "storage": "tank", "source": e.src("deb12.raw")}), http.StatusCreated, nil)
	e.want(e.do("PUT", "/clients/pc-01", admin, map[string]any{"mac": "52:54:00:00:00:01", "image": "deb12"}), http.StatusOK, nil)
	c, _ = e.st.GetClient(t.Context(), "pc-01")
	if _, pinned := c.Labels[store.LabelVersion]; pinned || c.Labels[store.LabelMaintenance] != since {
		t.Errorf("labels after a change of image %v: want the pin dropped, maintenance kept", c.Labels)
	}
}
