package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/core/wol"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
)

func TestClientsCRUD(t *testing.T) {
	e := newEnv(t)
	tok := e.login("oscar").AccessToken
	body := map[string]any{"name": "pc1", "mac": "52-54-00-AB-CD-01", "image": "win11", "address": "10.0.0.21",
		"initiators": []string{"IQN.2026-01.lab:pc1-alt"}, "persistent": true, "labels": map[string]string{"room": "101"}}
	w := e.do("POST", "/clients", tok, body)
	var c clientJSON
	e.want(w, http.StatusCreated, &c)
	if w.Header().Get("Location") != "/api/v1/clients/pc1" {
		t.Errorf("Location %q", w.Header().Get("Location"))
	}
	if c.MAC != "52:54:00:ab:cd:01" || c.Address != "10.0.0.21" || !c.Persistent || c.Labels["room"] != "101" ||
		!slices.Equal(c.Initiators, []string{"iqn.2026-01.lab:pc1-alt"}) || c.CreatedAt.IsZero() {
		t.Errorf("created %+v", c)
	}
	var got clientJSON
	e.want(e.do("GET", "/clients/pc1", tok, nil), http.StatusOK, &got)
	if got.MAC != c.MAC {
		t.Errorf("get %+v", got)
	}
	// PUT replaces: fields left out are cleared.
	e.clock.Add(time.Minute)
	got = clientJSON{}
	e.want(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:ab:cd:02", "image": "win11"}), http.StatusOK, &got)
	if got.MAC != "52:54:00:ab:cd:02" || got.Address != "" || got.Persistent || got.Labels != nil || !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("replaced %+v", got)
	}
	var list []clientJSON
	e.mustCreateClient(tok, "pc0", "52:54:00:ab:cd:00")
	e.want(e.do("GET", "/clients", tok, nil), http.StatusOK, &list)
	if len(list) != 2 || list[0].Name != "pc0" || list[1].Name != "pc1" {
		t.Errorf("list %+v", list)
	}
	e.want(e.do("DELETE", "/clients/pc1", tok, nil), http.StatusNoContent, nil)
	e.wantError(e.do("GET", "/clients/pc1", tok, nil), http.StatusNotFound, `no client "pc1"`, "")
	e.wantError(e.do("DELETE", "/clients/pc1", tok, nil), http.StatusNotFound, `no client "pc1"`, "")
}

func TestVolumeReset(t *testing.T) {
	e := newEnv(t)
	tok := e.login("oscar").AccessToken
	e.mustCreateClient(tok, "pc1", "52:54:00:00:00:01")
	var v volumeJSON
	e.want(e.do("POST", "/clients/pc1/volume", tok, map[string]any{"action": "reset", "version": 1}), http.StatusOK, &v)
	if v.Name != "pc1" || v.Image != "win11" || v.Version != 1 {
		t.Errorf("volume %+v", v)
	}
	e.stor.mu.Lock()
	e.stor.attached["pc1"] = true
	e.stor.mu.Unlock()
	e.wantError(e.do("POST", "/clients/pc1/volume", tok, map[string]any{"action": "reset"}), http.StatusConflict, "in use (attached)", "")
	e.wantError(e.do("POST", "/clients/nope/volume", tok, map[string]any{"action": "reset"}), http.StatusNotFound, "no client", "")
	if got := e.st.auditActions(); slices.Index(got, "client.volume_reset") < 0 || strings.Count(strings.Join(got, " "), "volume_reset") != 1 {
		t.Errorf("audit %v", got)
	}
}

func TestWakeSendsMagicPacket(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	e := newEnv(t, func(d *Deps, _ *Options) {
		d.Waker = &wol.Sender{Broadcast: pc.LocalAddr().String(), Copies: 1}
	})
	tok := e.login("oscar").AccessToken
	e.want(e.do("POST", "/clients", tok, map[string]any{"name": "pc1", "mac": "52:54:00:12:34:56", "image": "win11"}), http.StatusCreated, nil)
	e.want(e.do("POST", "/clients/pc1/wake", tok, nil), http.StatusAccepted, nil)
	e.want(e.do("POST", "/clients/pc1/wake", tok, `{}`), http.StatusAccepted, nil)
	want, _ := wol.MagicPacket("52:54:00:12:34:56")
	buf := make([]byte, 512)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], want) {
		t.Fatalf("packet % x, %v", buf[:n], err)
	}
	e.wantError(e.do("POST", "/clients/pc9/wake", tok, nil), http.StatusNotFound, "no client", "")

	off := newEnv(t, func(d *Deps, _ *Options) { d.Waker = nil })
	off.wantError(off.do("POST", "/clients/pc1/wake", off.login("alice").AccessToken, nil), http.StatusNotImplemented, "not configured", "")
}

func TestWakeUsesClientAddress(t *testing.T) {
	e := newEnv(t)
	tok := e.login("oscar").AccessToken
	e.want(e.do("POST", "/clients", tok, map[string]any{"name": "pc1", "mac": "52:54:00:12:34:56", "image": "win11", "address": "10.0.5.20"}), http.StatusCreated, nil)
	e.want(e.do("POST", "/clients/pc1/wake", tok, nil), http.StatusAccepted, nil)
	if !slices.Equal(e.waker.woken, []string{"52:54:00:12:34:56@10.0.5.20"}) {
		t.Errorf("woken %v", e.waker.woken)
	}
}

func TestImagesAndVersions(t *testing.T) {
	e := newEnv(t)
	tok := e.login("alice").AccessToken

	// Create with a source imports version 1.
	var im imageJSON
	w := e.do("POST", "/images", tok, map[string]any{"name": "deb12", "storage": "tank", "source": e.src("deb12.raw"),
		"boot": map[string]any{"kernel": "http://h/vmlinuz", "initrd": "http://h/initrd", "cmdline": "root=iscsi", "confirm": true}})
	e.want(w, http.StatusCreated, &im)
	if im.Origin != "api" || im.Version == nil || im.Version.Number != 1 || im.Boot == nil || !im.Boot.Confirm {
		t.Fatalf("created %+v", im)
	}
	// A failed import leaves no record.
	e.wantError(e.do("POST", "/images", tok, map[string]any{"name": "bad", "storage": "tank", "source": e.src("missing.raw")}), http.StatusBadRequest, "missing.raw does not exist on the host", "source")
	if _, err := e.st.GetImage(t.Context(), "bad"); err == nil {
		t.Error("record of a failed import kept")
	}
	// Without a source: adopt what the storage holds.
	e.want(e.do("POST", "/images", tok, map[string]any{"name": "empty", "storage": "tank"}), http.StatusCreated, &im)
	var vs []versionJSON
	e.want(e.do("GET", "/images/empty/versions", tok, nil), http.StatusOK, &vs)
	if len(vs) != 0 {
		t.Errorf("versions of empty: %+v", vs)
	}

	// Snapshot, promote, import: each a new current version.
	e.mustCreateClient(tok, "pc1", "52:54:00:00:00:01")
	var v versionJSON
	e.want(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "snapshot"}), http.StatusCreated, &v)
	if v.Number != 2 || !v.Current {
		t.Errorf("snapshot %+v", v)
	}
	e.want(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "promote", "client": "pc1"}), http.StatusCreated, &v)
	if v.Number != 3 {
		t.Errorf("promote %+v", v)
	}
	e.want(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "import", "source": e.src("win11-b.raw")}), http.StatusCreated, &v)
	if v.Number != 4 {
		t.Errorf("import %+v", v)
	}
	// Promote refused while the volume is attached.
	e.stor.mu.Lock()
	e.stor.attached["pc1"] = true
	e.stor.mu.Unlock()
	e.wantError(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "promote", "client": "pc1"}), http.StatusConflict, "in use", "")

	// Roll back to 2, delete 4, keep the current one.
	e.want(e.do("PUT", "/images/win11/versions/current", tok, map[string]any{"version": 2}), http.StatusOK, &v)
	if v.Number != 2 || !v.Current {
		t.Errorf("set current %+v", v)
	}
	e.want(e.do("DELETE", "/images/win11/versions/4", tok, nil), http.StatusNoContent, nil)
	e.wantError(e.do("DELETE", "/images/win11/versions/2", tok, nil), http.StatusConflict, "is current", "")
	e.wantError(e.do("DELETE", "/images/win11/versions/4", tok, nil), http.StatusNotFound, "version 4", "")
	e.want(e.do("GET", "/images/win11/versions", tok, nil), http.StatusOK, &vs)
	if len(vs) != 3 || !vs[1].Current || vs[1].Number != 2 {
		t.Errorf("versions %+v", vs)
	}

	// PUT edits an API image; its storage stays.
	im = imageJSON{}
	e.want(e.do("PUT", "/images/deb12", tok, map[string]any{"storage": "tank", "source": "/img/deb12.raw"}), http.StatusOK, &im)
	if im.Boot != nil {
		t.Errorf("boot not replaced: %+v", im)
	}
	e.wantError(e.do("PUT", "/images/deb12", tok, map[string]any{"storage": "other"}), http.StatusBadRequest, "no storage plugin", "storage")

	// Delete: refused while booted or from the config; purge empties the storage.
	e.wantError(e.do("DELETE", "/images/win11", tok, nil), http.StatusConflict, "declared in the config", "")
	e.want(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "deb12"}), http.StatusOK, nil)
	e.wantError(e.do("DELETE", "/images/deb12", tok, nil), http.StatusConflict, "client pc1 boots it", "")
	e.want(e.do("DELETE", "/clients/pc1", tok, nil), http.StatusNoContent, nil)
	e.wantError(e.do("DELETE", "/images/deb12?purge=maybe", tok, nil), http.StatusBadRequest, "purge", "purge")
	e.want(e.do("DELETE", "/images/deb12?purge=true", tok, nil), http.StatusNoContent, nil)
	if calls := e.stor.storageCalls(); calls[len(calls)-1] != "delete deb12" {
		t.Errorf("storage calls %v", calls)
	}
	e.want(e.do("DELETE", "/images/empty", tok, nil), http.StatusNoContent, nil)
	var ims []imageJSON
	e.want(e.do("GET", "/images", tok, nil), http.StatusOK, &ims)
	if len(ims) != 1 || ims[0].Name != "win11" || ims[0].Origin != "config" {
		t.Errorf("images %+v", ims)
	}
}

func TestPromoteNeedsCapability(t *testing.T) {
	e := newEnv(t, func(d *Deps, _ *Options) {
		d.Plugins = func() []supervisor.Status {
			return []supervisor.Status{{Name: "tank", Kind: "storage", Capabilities: []string{"other"}}}
		}
	})
	tok := e.login("alice").AccessToken
	e.mustCreateClient(tok, "pc1", "52:54:00:00:00:01")
	e.wantError(e.do("POST", "/images/win11/versions", tok, map[string]any{"action": "promote", "client": "pc1"}), http.StatusNotImplemented, "cannot promote", "")
}

func TestStorageUnavailable(t *testing.T) {
	e := newEnv(t, func(d *Deps, _ *Options) {
		d.Storage = StorageResolver(func(context.Context, string) (*storagerpc.Client, error) {
			return nil, errors.New("storage tank is not running")
		})
	})
	tok := e.login("alice").AccessToken
	e.wantError(e.do("GET", "/images/win11/versions", tok, nil), http.StatusServiceUnavailable, "storage of image win11 is not available: storage tank is not running", "")
}

func TestSessionsPluginsAudit(t *testing.T) {
	e := newEnv(t)
	t0 := e.clock.Now()
	for i, s := range []store.Session{
		{Client: "pc1", MAC: "52:54:00:00:00:01", State: store.SessionDone, Expect: "booted", Stages: map[string]time.Time{"dhcp": t0}, TokenHash: "secret"},
		{Client: "pc2", MAC: "52:54:00:00:00:02", State: store.SessionFailed, FailedStage: "iscsi_login", Expect: "handoff"},
		{Client: "pc1", MAC: "52:54:00:00:00:01", State: store.SessionActive, Expect: "booted"},
	} {
		s.ID, s.Started = int64(i+1), t0
		e.st.sessions[s.ID] = s
	}
	tok := e.login("vera").AccessToken
	var ss []sessionJSON
	e.want(e.do("GET", "/sessions?client=pc1", tok, nil), http.StatusOK, &ss)
	if len(ss) != 2 || ss[0].ID != 3 || ss[1].ID != 1 {
		t.Errorf("sessions %+v", ss)
	}
	e.want(e.do("GET", "/sessions?state=failed&limit=5", tok, nil), http.StatusOK, &ss)
	if len(ss) != 1 || ss[0].FailedStage != "iscsi_login" {
		t.Errorf("failed %+v", ss)
	}
	e.want(e.do("GET", "/sessions?limit=1", tok, nil), http.StatusOK, &ss)
	if len(ss) != 1 {
		t.Errorf("limit 1: %d", len(ss))
	}
	w := e.do("GET", "/sessions/1", tok, nil)
	var s sessionJSON
	e.want(w, http.StatusOK, &s)
	if s.Client != "pc1" || !s.Stages["dhcp"].Equal(t0) || strings.Contains(w.Body.String(), "secret") {
		t.Errorf("session %s", w.Body)
	}

	var ps []supervisor.Status
	e.want(e.do("GET", "/plugins", tok, nil), http.StatusOK, &ps)
	if len(ps) != 2 || ps[1].Name != "tank" || !slices.Equal(ps[1].Capabilities, []string{"promote"}) {
		t.Errorf("plugins %+v", ps)
	}

	var audit []auditEntry
	e.want(e.do("GET", "/audit?limit=1", tok, nil), http.StatusOK, &audit)
	if len(audit) != 1 || audit[0].Action != "auth.login" || audit[0].Actor != "vera" {
		t.Errorf("audit %+v", audit)
	}
}

// TestEveryWriteIsAudited runs each write once and checks its entry: who,
// what, on what, from where, and a detail without secrets.
func TestEveryWriteIsAudited(t *testing.T) {
	e := newEnv(t)
	e.source = "203.0.113.5:51000"
	tok := e.login("alice").AccessToken
	steps := []struct {
		method, path string
		body         any
		action       string
		object       string
	}{
		{"POST", "/images", map[string]any{"name": "deb12", "storage": "tank", "source": e.src("deb12.raw")}, "image.create", "image/deb12"},
		{"PUT", "/images/deb12", map[string]any{"storage": "tank", "boot": map[string]any{"kernel": "k"}}, "image.update", "image/deb12"},
		{"POST", "/clients", map[string]any{"name": "pc1", "mac": "52:54:00:00:00:01", "image": "deb12"}, "client.create", "client/pc1"},
		{"PUT", "/clients/pc1", map[string]any{"mac": "52:54:00:00:00:01", "image": "win11", "persistent": true}, "client.update", "client/pc1"},
		{"POST", "/clients/pc1/volume", map[string]any{"action": "reset"}, "client.volume_reset", "client/pc1"},
		{"POST", "/clients/pc1/wake", nil, "client.wake", "client/pc1"},
		{"POST", "/images/win11/versions", map[string]any{"action": "snapshot"}, "image.snapshot", "image/win11"},
		{"POST", "/images/win11/versions", map[string]any{"action": "promote", "client": "pc1"}, "image.promote", "image/win11"},
		{"POST", "/images/win11/versions", map[string]any{"action": "import", "source": e.src("b.raw")}, "image.import", "image/win11"},
		{"PUT", "/images/win11/versions/current", map[string]any{"version": 1}, "image.set_current", "image/win11"},
		{"DELETE", "/images/win11/versions/4", nil, "image.version_delete", "image/win11"},
		{"DELETE", "/clients/pc1", nil, "client.delete", "client/pc1"},
		{"DELETE", "/images/deb12", nil, "image.delete", "image/deb12"},
	}
	for _, s := range steps {
		w := e.do(s.method, s.path, tok, s.body)
		if w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", s.method, s.path, w.Code, w.Body)
		}
		last := e.st.audit[len(e.st.audit)-1]
		if last.Action != s.action || last.Object != s.object || last.Actor != "alice" || last.Source != "203.0.113.5" || !last.Time.Equal(e.clock.Now()) {
			t.Errorf("%s %s: audit %+v", s.method, s.path, last)
		}
		if last.Detail != "" && !json.Valid([]byte(last.Detail)) {
			t.Errorf("%s: detail %q is not JSON", s.action, last.Detail)
		}
	}
	// Visible through the API, newest first.
	var audit []auditEntry
	e.want(e.do("GET", "/audit", tok, nil), http.StatusOK, &audit)
	if len(audit) != len(steps)+1 || audit[0].Action != "image.delete" || audit[len(audit)-1].Action != "auth.login" {
		t.Errorf("audit %+v", audit)
	}
	for _, a := range e.st.audit {
		if strings.Contains(a.Detail, "alice-pw") || strings.Contains(a.Detail, "token") {
			t.Errorf("secret in audit detail: %+v", a)
		}
	}
	if d := e.st.audit[len(e.st.audit)-4].Detail; d != `{"previous":4,"version":1}` {
		t.Errorf("set_current detail %s", d)
	}
}

// TestImageStorageDefault: POST images without a storage takes the host's
// only storage plugin; with several it is a 400 that names them, with
// none a 400 that says what to add.
func TestImageStorageDefault(t *testing.T) {
	storages := []supervisor.Status{{Name: "tank", Kind: "storage"}, {Name: "local", Kind: "auth"}}
	e := newEnv(t, func(d *Deps, _ *Options) {
		d.Plugins = func() []supervisor.Status { return storages }
	})
	tok := e.login("alice").AccessToken
	var im imageJSON
	e.want(e.do("POST", "/images", tok, map[string]any{"name": "one"}), http.StatusCreated, &im)
	if im.Storage != "tank" {
		t.Errorf("image on storage %q, want tank", im.Storage)
	}
	storages = append(storages, supervisor.Status{Name: "files", Kind: "storage"})
	e.wantError(e.do("POST", "/images", tok, map[string]any{"name": "two"}), http.StatusBadRequest,
		"this host has 2 storage plugins (files, tank): name one with storage (dls image add NAME --storage files)", "storage")
	e.nothingCreated("two")
	storages = []supervisor.Status{{Name: "local", Kind: "auth"}}
	e.wantError(e.do("POST", "/images", tok, map[string]any{"name": "three"}), http.StatusBadRequest,
		"this host has no storage plugin: add a storage block", "storage")
	// PUT still names it: an image never moves.
	e.wantError(e.do("PUT", "/images/one", tok, map[string]any{}), http.StatusBadRequest, "storage is required", "storage")
}
