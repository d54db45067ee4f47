package api

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// env is an API over in-memory fakes, driven through its Handler.
type env struct {
	t      *testing.T
	api    *API
	h      http.Handler
	st     *memStore
	stor   *fakeStorage
	auth   *fakeAuth
	clock  *fakeClock
	waker  *fakeWaker
	reg    *prometheus.Registry
	key    string
	source string // RemoteAddr of the requests do sends
	// imports is the one import dir (Options.ImportDirs), holding the
	// raw images deb12.raw, win11-b.raw and b.raw; uploads is UploadDir.
	imports, uploads string
}

// src is the path of file in the import dir.
func (e *env) src(file string) string { return filepath.Join(e.imports, file) }

type fakeWaker struct {
	mu    sync.Mutex
	woken []string
}

func (w *fakeWaker) Wake(_ context.Context, mac string, addr netip.Addr) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.woken = append(w.woken, mac+"@"+addr.String())
	return nil
}

var testUsers = map[string]fakeUser{
	"alice": {password: "alice-pw", groups: []string{"staff", "admin"}},
	"oscar": {password: "oscar-pw", groups: []string{"operator"}},
	"vera":  {password: "vera-pw", groups: []string{"viewer", "staff"}},
	"nina":  {password: "nina-pw", groups: []string{"staff"}},
}

// newEnv builds an API with the users above, an image "win11" (from the
// config, on storage "tank", one version) and the given tweaks.
func newEnv(t *testing.T, tweak ...func(*Deps, *Options)) *env {
	t.Helper()
	e := &env{t: t, clock: &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, source: "192.0.2.10:40000"}
	e.st = newMemStore(e.clock.Now)
	e.stor = newFakeStorage(e.clock.Now)
	e.auth = &fakeAuth{users: maps.Clone(testUsers)}
	e.waker = &fakeWaker{}
	e.reg = prometheus.NewRegistry()
	e.key = filepath.Join(t.TempDir(), "api-token.key")
	e.imports, e.uploads = t.TempDir(), filepath.Join(t.TempDir(), "uploads")
	for i, name := range []string{"deb12.raw", "win11-b.raw", "b.raw"} {
		if err := os.WriteFile(e.src(name), bytes.Repeat([]byte{byte('a' + i)}, 1024), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := e.st.PutImage(ctx, store.Image{Name: "win11", Storage: "tank", Source: "/img/win11.raw", Origin: "config"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.stor.ImportImage(ctx, storage.ImportRequest{Image: "win11", Source: "/img/win11.raw"}); err != nil {
		t.Fatal(err)
	}
	e.stor.calls = nil
	deps := Deps{
		Store:          e.st,
		Authenticators: func() []NamedAuthenticator { return []NamedAuthenticator{{Name: "local", Authenticator: e.auth}} },
		Storage:        e.stor,
		Plugins: func() []supervisor.Status {
			return []supervisor.Status{
				{Name: "tank", Kind: "storage", Type: "zfs", State: "running", Healthy: true, Capabilities: []string{"promote"}},
				{Name: "local", Kind: "auth", Type: "local", State: "running", Healthy: true, Capabilities: []string{"user_admin"}},
			}
		},
		Waker: e.waker,
		Clock: e.clock,
	}
	opts := Options{KeyFile: e.key, Registerer: e.reg, ImportDirs: []string{e.imports}, UploadDir: e.uploads}
	for _, f := range tweak {
		f(&deps, &opts)
	}
	a, err := New(t.Context(), deps, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.api, e.h = a, a.Handler()
	return e
}

// do sends a request: body nil sends none, a string is sent as is,
// anything else as JSON. Content-Type is application/json when there is a
// body, unless hdr sets it ("" removes it).
func (e *env) do(method, path, token string, body any, hdr ...string) *httptest.ResponseRecorder {
	e.t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	r := httptest.NewRequest(method, Prefix+path, rd)
	r.RemoteAddr = e.source
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			r.Header.Del(hdr[i])
		} else {
			r.Header.Set(hdr[i], hdr[i+1])
		}
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

// want checks the status and decodes the JSON answer into out (when not
// nil).
func (e *env) want(w *httptest.ResponseRecorder, status int, out any) {
	e.t.Helper()
	if w.Code != status {
		e.t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	if out != nil {
		if err := json.Unmarshal(w.Body.Bytes(), out); err != nil {
			e.t.Fatalf("decode %s: %v", w.Body, err)
		}
	}
}

// wantError checks a 4xx answer: status, a message containing msg, and
// the field.
func (e *env) wantError(w *httptest.ResponseRecorder, status int, msg, field string) {
	e.t.Helper()
	var b errorBody
	e.want(w, status, &b)
	if !strings.Contains(b.Error, msg) {
		e.t.Errorf("error %q does not mention %q", b.Error, msg)
	}
	if b.Field != field {
		e.t.Errorf("field %q, want %q (error %q)", b.Field, field, b.Error)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("Content-Type %q", ct)
	}
}

func (e *env) login(user string) tokenPair {
	e.t.Helper()
	var p tokenPair
	e.want(e.do("POST", "/auth/login", "", map[string]string{"username": user, "password": testUsers[user].password}), http.StatusOK, &p)
	return p
}

func (e *env) failures(reason string) float64 {
	return testutil.ToFloat64(e.api.metrics.failures.WithLabelValues(reason))
}

// gauge reads a gauge from the registry.
func (e *env) gauge(name string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	e.t.Fatalf("no metric %s", name)
	return 0
}

// mustCreateClient creates a client as alice.
func (e *env) mustCreateClient(tok, name, mac string) {
	e.t.Helper()
	e.want(e.do("POST", "/clients", tok, map[string]any{"name": name, "mac": mac, "image": "win11"}), http.StatusCreated, nil)
}
