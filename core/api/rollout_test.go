package api

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/store"
)

// TestRollout: version 2 of win11 goes to the ring=canary clients first
// (pinned; the persistent one gets a fresh clone of 2 now), the others
// stay on 1; complete makes 2 current and unpins; abort unpins only.
func TestRollout(t *testing.T) {
	e := newEnv(t)
	admin := e.login("alice").AccessToken
	add := func(name, mac string, persistent bool, labels map[string]string) {
		e.want(e.do("POST", "/clients", admin, map[string]any{"name": name, "mac": mac, "image": "win11", "persistent": persistent, "labels": labels}), http.StatusCreated, nil)
	}
	add("canary-1", "52:54:00:00:00:01", true, map[string]string{"ring": "canary"})
	add("canary-2", "52:54:00:00:00:02", false, map[string]string{"ring": "canary"})
	add("pc-03", "52:54:00:00:00:03", true, nil)
	e.want(e.do("POST", "/images/win11/versions", admin, map[string]any{"action": "snapshot"}), http.StatusCreated, nil) // v2, current
	e.want(e.do("PUT", "/images/win11/versions/current", admin, map[string]any{"version": 1}), http.StatusOK, nil)

	op := e.login("oscar").AccessToken
	e.wantError(e.do("POST", "/images/win11/rollout", op, map[string]any{"action": "start", "version": 2}), http.StatusForbidden, "needs admin", "")
	e.wantError(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "start", "version": 1}), http.StatusBadRequest, "already current", "version")
	e.wantError(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "start", "version": 2, "ring": "ring=none"}), http.StatusBadRequest, "no client", "ring")

	var ro rolloutJSON
	e.want(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "start", "version": 2}), http.StatusOK, &ro)
	if ro.Stage != "ring" || ro.Version != 2 || strings.Join(ro.Clients, ",") != "canary-1,canary-2" {
		t.Fatalf("start answered %+v", ro)
	}
	if calls := e.stor.storageCalls(); !slices.Contains(calls, "reset canary-1 2") || slices.Contains(calls, "reset canary-2 2") {
		t.Errorf("storage calls %v: want a fresh clone of 2 for the persistent canary-1 only", calls)
	}
	for name, want := range map[string]string{"canary-1": "2", "canary-2": "2", "pc-03": ""} {
		c, _ := e.st.GetClient(t.Context(), name)
		if c.Labels[store.LabelVersion] != want {
			t.Errorf("%s pinned to %q, want %q", name, c.Labels[store.LabelVersion], want)
		}
	}
	e.wantError(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "start", "version": 2}), http.StatusConflict, "in progress", "")
	v := e.login("vera").AccessToken
	ro = rolloutJSON{}
	e.want(e.do("GET", "/images/win11/rollout", v, nil), http.StatusOK, &ro)
	if ro.Stage != "ring" || ro.Version != 2 || len(ro.Clients) != 2 {
		t.Errorf("GET rollout %+v", ro)
	}

	ro = rolloutJSON{}
	e.want(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "complete"}), http.StatusOK, &ro)
	if ro.Stage != "done" || ro.Current != 2 {
		t.Errorf("complete answered %+v", ro)
	}
	var vs []versionJSON
	e.want(e.do("GET", "/images/win11/versions", v, nil), http.StatusOK, &vs)
	if i := slices.IndexFunc(vs, func(x versionJSON) bool { return x.Current }); i < 0 || vs[i].Number != 2 {
		t.Errorf("versions after complete %+v: want 2 current", vs)
	}
	c, _ := e.st.GetClient(t.Context(), "canary-1")
	if _, ok := c.Labels[store.LabelVersion]; ok {
		t.Errorf("canary-1 still pinned after complete: %v", c.Labels)
	}
	e.wantError(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "abort"}), http.StatusConflict, "no rollout", "")

	// Abort: back to 1 for new boots, nothing made current.
	e.want(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "start", "version": 1}), http.StatusOK, nil)
	e.want(e.do("POST", "/images/win11/rollout", admin, map[string]any{"action": "abort"}), http.StatusOK, nil)
	e.want(e.do("GET", "/images/win11/versions", v, nil), http.StatusOK, &vs)
	if i := slices.IndexFunc(vs, func(x versionJSON) bool { return x.Current }); i < 0 || vs[i].Number != 2 {
		t.Errorf("versions after abort %+v: want 2 still current", vs)
	}
	acts := e.st.auditActions()
	for _, want := range []string{"image.rollout_start", "image.rollout_complete", "image.rollout_abort"} {
		if !slices.Contains(acts, want) {
			t.Errorf("audit %v lacks %s", acts, want)
		}
	}
}
