package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// secretsOf reads the client's secrets from the store behind the API.
func (e *env) secretsOf(name string) (string, string) {
	e.t.Helper()
	c, err := e.st.GetClient(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return c.CHAPSecret, c.CHAPMutualSecret
}

// wantNoSecret fails when an answer holds a secret, or a CHAP field.
func (e *env) wantNoSecret(what, body string, secrets ...string) {
	e.t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(body, s) {
			e.t.Errorf("%s returns the secret %q: %s", what, s, body)
		}
	}
	if strings.Contains(body, "chap_secret") || strings.Contains(body, "mutual_secret\":\"") {
		e.t.Errorf("%s has a secret field: %s", what, body)
	}
}

func TestCreateGeneratesSecretNeverShown(t *testing.T) {
	var ls *leaseStore
	e := newEnv(t, withLeases(&ls))
	admin := e.login("alice").AccessToken
	w := e.do("POST", "/clients", admin, map[string]any{"name": "pc1", "mac": "52:54:00:00:00:01", "image": "win11"})
	e.want(w, http.StatusCreated, nil)
	secret, mutual := e.secretsOf("pc1")
	if len(secret) < 16 || strings.Trim(secret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" || mutual != "" {
		t.Fatalf("created without chap_secret: secret %q, mutual %q; want a generated one-way secret", secret, mutual)
	}
	e.wantNoSecret("POST clients", w.Body.String(), secret)
	// Set through the body: stored, never shown (not even to an admin).
	w = e.do("POST", "/clients", admin, map[string]any{"name": "pc2", "mac": "52:54:00:00:00:02", "image": "win11",
		"chap_secret": "given-secret-0002", "chap_mutual_secret": "given-mutual-0002"})
	e.want(w, http.StatusCreated, nil)
	if s, m := e.secretsOf("pc2"); s != "given-secret-0002" || m != "given-mutual-0002" {
		t.Fatalf("pc2 secrets %q / %q", s, m)
	}
	for _, path := range []string{"/clients", "/clients/pc1", "/clients/pc2", "/audit"} {
		w := e.do("GET", path, admin, nil)
		e.want(w, http.StatusOK, nil)
		e.wantNoSecret("GET "+path, w.Body.String(), secret, "given-secret-0002", "given-mutual-0002")
	}
	// The backup (admin only) keeps them, so a restore is faithful.
	w = e.do("GET", "/backup", admin, nil)
	e.want(w, http.StatusOK, nil)
	if !strings.Contains(w.Body.String(), secret) || !strings.Contains(w.Body.String(), "given-mutual-0002") {
		t.Error("backup lacks the secrets it must restore")
	}
}

// TestPutKeepsSecrets: PUT without secrets used to drop them.
func TestPutKeepsSecrets(t *testing.T) {
	e := newEnv(t)
	tok := e.login("oscar").AccessToken
	e.want(e.do("POST", "/clients", tok, map[string]any{"name": "pc1", "mac": "52:54:00:00:00:01", "image": "win11",
		"chap_secret": "first-secret-001", "chap_mutual_secret": "first-mutual-001"}), http.StatusCreated, nil)
	e.want(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11", "persistent": true}), http.StatusOK, nil)
	if s, m := e.secretsOf("pc1"); s != "first-secret-001" || m != "first-mutual-001" {
		t.Fatalf("after PUT without secrets: %q / %q, want both kept", s, m)
	}
	// The body may set the secret; the mutual one stays.
	w := e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11", "chap_secret": "second-secret-02"})
	e.want(w, http.StatusOK, nil)
	e.wantNoSecret("PUT", w.Body.String(), "second-secret-02", "first-mutual-001")
	if s, m := e.secretsOf("pc1"); s != "second-secret-02" || m != "first-mutual-001" {
		t.Fatalf("after PUT with chap_secret: %q / %q", s, m)
	}
	acts := e.st.auditActions()
	if n := len(acts); n < 2 || acts[n-2] != "client.update" || acts[n-1] != "client.chap_set" {
		t.Errorf("audit %v, want client.update then client.chap_set", acts)
	}
	for _, en := range e.st.audit {
		if strings.Contains(en.Detail, "secret-0") || strings.Contains(en.Detail, "mutual-0") {
			t.Errorf("audit entry %+v holds a secret", en)
		}
	}
}

func TestShortSecretRefused(t *testing.T) {
	e := newEnv(t)
	tok := e.login("oscar").AccessToken
	e.wantError(e.do("POST", "/clients", tok, map[string]any{"name": "pc1", "mac": "52:54:00:00:00:01", "image": "win11", "chap_secret": "elevenchars"}),
		http.StatusBadRequest, "chap_secret is 11 characters long; CHAP secrets need at least 12", "chap_secret")
	if _, err := e.st.GetClient(context.Background(), "pc1"); err == nil {
		t.Fatal("a refused POST created the client")
	}
	e.mustCreateClient(tok, "pc1", "52:54:00:00:00:01")
	before, _ := e.secretsOf("pc1")
	e.wantError(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11", "chap_secret": "short"}),
		http.StatusBadRequest, "chap_secret is 5 characters long", "chap_secret")
	e.wantError(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11", "chap_mutual_secret": "short"}),
		http.StatusBadRequest, "chap_mutual_secret is 5 characters long", "chap_mutual_secret")
	e.wantError(e.do("POST", "/clients/pc1/chap", tok, map[string]any{"secret": "short"}),
		http.StatusBadRequest, "secret is 5 characters long", "secret")
	e.wantError(e.do("POST", "/clients/pc1/chap", tok, map[string]any{"secret": "same-as-mutual", "mutual_secret": "same-as-mutual"}),
		http.StatusBadRequest, "must differ", "mutual_secret")
	e.wantError(e.do("POST", "/clients/pc1/chap", tok, map[string]any{"rotate": true, "secret": "twelve-chars"}),
		http.StatusBadRequest, "either rotate or secret", "rotate")
	e.wantError(e.do("POST", "/clients/pc1/chap", tok, map[string]any{}), http.StatusBadRequest, `want {"rotate": true}`, "rotate")
	e.wantError(e.do("POST", "/clients/nope/chap", tok, map[string]any{"rotate": true}), http.StatusNotFound, `no client "nope"`, "")
	if after, _ := e.secretsOf("pc1"); after != before {
		t.Error("a refused request changed the secret")
	}
	// A viewer may not rotate.
	e.wantError(e.do("POST", "/clients/pc1/chap", e.login("vera").AccessToken, map[string]any{"rotate": true}), http.StatusForbidden, "needs operator", "")
}

// TestRotateChangesScriptSecret: a rotation answers no secret, is audited
// without one, and the client's next script carries the new secret.
func TestRotateChangesScriptSecret(t *testing.T) {
	e := newEnv(t)
	tok := e.login("oscar").AccessToken
	e.mustCreateClient(tok, "pc1", "52:54:00:00:00:01")
	svc := hostservices.New(hostservices.Boot{URL: "http://192.0.2.1:9180", IQNPrefix: "iqn.2026-11.io.dls", ServerAddress: "192.0.2.1"},
		scriptStore{m: e.st}, nil, hclog.NewNullLogger())
	script := func() string {
		t.Helper()
		sc, err := svc.Script(context.Background(), host.ScriptQuery{MAC: "52-54-00-00-00-01", Peer: "192.0.2.51"})
		if err != nil || !sc.Found {
			t.Fatalf("script: %+v, %v", sc, err)
		}
		return sc.Body
	}
	// The machine holds its lease: the host answers its script there only.
	if rs, err := svc.Commit(context.Background(), []host.Lease{{Pool: "lan", Address: "192.0.2.51", MAC: "52:54:00:00:00:01", Expires: time.Now().Add(time.Hour), State: host.LeaseBound}}); err != nil || !rs[0].OK {
		t.Fatalf("lease: %+v, %v", rs, err)
	}
	old, _ := e.secretsOf("pc1")
	if s := script(); !strings.Contains(s, "set password "+old) || !strings.Contains(s, "set username iqn.2026-11.io.dls:initiator:pc1") {
		t.Fatalf("script before rotation does not carry CHAP:\n%s", s)
	}

	w := e.do("POST", "/clients/pc1/chap", tok, map[string]any{"rotate": true})
	var res chapResult
	e.want(w, http.StatusOK, &res)
	if res.Client != "pc1" || res.Action != "rotated" || res.MutualSecret {
		t.Errorf("answer %+v", res)
	}
	rotated, _ := e.secretsOf("pc1")
	if rotated == old || len(rotated) < 16 {
		t.Fatalf("secret after rotation %q (before %q)", rotated, old)
	}
	e.wantNoSecret("rotate answer", w.Body.String(), rotated, old)
	if s := script(); !strings.Contains(s, "set password "+rotated) || strings.Contains(s, old) {
		t.Fatalf("script after rotation does not carry the new secret:\n%s", s)
	}
	last := e.st.audit[len(e.st.audit)-1]
	if last.Action != "client.chap_rotate" || last.Object != "client/pc1" || last.Actor != "oscar" ||
		strings.Contains(last.Detail, rotated) || strings.Contains(last.Detail, old) || !strings.Contains(last.Detail, `"secret_changed":true`) {
		t.Errorf("rotation audit %+v", last)
	}

	// Set one (as dls client chap --secret-stdin does), then rotate with a
	// mutual secret: both change.
	e.want(e.do("POST", "/clients/pc1/chap", tok, map[string]any{"secret": "chosen-secret-01", "mutual_secret": "chosen-mutual-01"}), http.StatusOK, &res)
	if s, m := e.secretsOf("pc1"); s != "chosen-secret-01" || m != "chosen-mutual-01" || res.Action != "set" || !res.MutualSecret {
		t.Fatalf("after set: %q / %q, %+v", s, m, res)
	}
	if acts := e.st.auditActions(); acts[len(acts)-1] != "client.chap_set" {
		t.Errorf("audit %v", acts)
	}
	e.want(e.do("POST", "/clients/pc1/chap", tok, map[string]any{"rotate": true}), http.StatusOK, &res)
	if s, m := e.secretsOf("pc1"); s == "chosen-secret-01" || m == "chosen-mutual-01" || m == "" || s == m {
		t.Fatalf("rotation with a mutual secret: %q / %q", s, m)
	}
}

func TestExtraAddressesThroughAPI(t *testing.T) {
	e := newEnv(t)
	tok := e.login("oscar").AccessToken
	var c clientJSON
	e.want(e.do("POST", "/clients", tok, map[string]any{"name": "pc1", "mac": "52:54:00:00:00:01", "image": "win11",
		"extra_addresses": []string{"10.0.0.5", "fd00::5", "10.0.0.5"}}), http.StatusCreated, &c)
	if !slices.Equal(c.ExtraAddresses, []string{"10.0.0.5", "fd00::5"}) {
		t.Errorf("extra_addresses %v", c.ExtraAddresses)
	}
	e.wantError(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11", "extra_addresses": []string{"10.0.0.300"}}),
		http.StatusBadRequest, `extra address "10.0.0.300" is not an IP address`, "extra_addresses")
	got, _ := e.st.GetClient(context.Background(), "pc1")
	if len(got.ExtraAddresses) != 2 {
		t.Errorf("a refused PUT changed the client: %+v", got)
	}
	c = clientJSON{}
	e.want(e.do("PUT", "/clients/pc1", tok, map[string]any{"mac": "52:54:00:00:00:01", "image": "win11"}), http.StatusOK, &c)
	if c.ExtraAddresses != nil {
		t.Errorf("PUT without extra_addresses kept %v", c.ExtraAddresses)
	}
}

// scriptStore gives the host services the API's store, for the lookups a
// script render makes; any other method would panic (nil Store).
type scriptStore struct {
	store.Store
	m *memStore
}

func (s scriptStore) ClientByMAC(ctx context.Context, mac string) (store.Client, error) {
	canonical, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Client{}, err
	}
	cs, err := s.m.ListClients(ctx)
	if err != nil {
		return store.Client{}, err
	}
	for _, c := range cs {
		if c.MAC == canonical {
			return c, nil
		}
	}
	return store.Client{}, store.ErrNotFound
}

func (s scriptStore) GetImage(ctx context.Context, name string) (store.Image, error) {
	return s.m.GetImage(ctx, name)
}

// LoadLeases and CommitLeases hold no leases: the host's binding index
// keeps the one the test commits.
func (scriptStore) LoadLeases(context.Context, string) ([]store.Lease, error) { return nil, nil }

func (scriptStore) CommitLeases(_ context.Context, ls []store.Lease) ([]store.LeaseResult, error) {
	rs := make([]store.LeaseResult, len(ls))
	for i := range rs {
		rs[i].OK = true
	}
	return rs, nil
}
