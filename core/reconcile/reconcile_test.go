package reconcile

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type oneStorage struct{ st *storagerpc.Client }

func (o oneStorage) StorageForImage(context.Context, string) (*storagerpc.Client, error) {
	return o.st, nil
}

func load(t *testing.T, dir, body string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "dls.hcl")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const base = `
storage "file" "files" {}
image "lab" {
  storage = "files"
  source  = "lab.img"
}
client "pc1" {
  mac   = "52:54:00:00:00:01"
  image = "lab"
}
`

func TestApplyIsIdempotentImportsAndReportsDrift(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lab.img"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := plugintest.Start(t, file.New())
	reg := prometheus.NewRegistry()
	r, err := New(st, oneStorage{h.Storage()}, reg, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
	if err != nil {
		t.Fatal(err)
	}

	cfg := load(t, dir, base+`
client "pc2" {
  mac   = "52:54:00:00:00:02"
  image = "lab"
  chap {
    secret = "0123456789abcdef"
  }
}
`)
	rep := r.Apply(ctx, cfg)
	if len(rep.Errors) > 0 || len(rep.Created) != 3 || len(rep.Imported) != 1 {
		t.Fatalf("first pass: %+v", rep)
	}
	if vs, err := h.Storage().ListVersions(ctx, "lab"); err != nil || len(vs) != 1 {
		t.Fatalf("image not imported: %v %v", vs, err)
	}
	c, err := st.GetClient(ctx, "pc2")
	if err != nil || c.CHAPSecret != "0123456789abcdef" {
		t.Fatalf("pc2 = %+v, %v", c, err)
	}

	rep = r.Apply(ctx, cfg)
	if len(rep.Errors) > 0 || len(rep.Unchanged) != 3 || len(rep.Created)+len(rep.Updated)+len(rep.Imported) != 0 {
		t.Fatalf("second pass is not a no-op: %+v", rep)
	}

	// pc2 removed from the config, pc1 moved: drift is reported, not deleted.
	rep = r.Apply(ctx, load(t, dir, base))
	if len(rep.Drift) != 1 || rep.Drift[0] != "client/pc2" {
		t.Fatalf("drift = %v", rep.Drift)
	}
	if _, err := st.GetClient(ctx, "pc2"); err != nil {
		t.Fatalf("drifted client was deleted: %v", err)
	}
	if v := testutil.ToFloat64(r.drift); v != 1 {
		t.Errorf("dls_config_drift_objects = %v", v)
	}
}

// newReconciler opens the store of dir and a reconciler on it, as a start
// of the host does (no storage: these tests are about clients).
func newReconciler(t *testing.T, ctx context.Context, dir string) (*Reconciler, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r, err := New(st, nil, nil, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
	if err != nil {
		t.Fatal(err)
	}
	return r, st
}

const clientsOnly = `
storage "file" "files" {}
image "lab" {
  storage = "files"
  source  = "lab.img"
}
`

func TestGeneratedSecretSurvivesReloadsAndRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, st := newReconciler(t, ctx, dir)
	cfg := load(t, dir, base)
	if rep := r.Apply(ctx, cfg); len(rep.Errors) > 0 {
		t.Fatalf("first pass: %v", rep.Errors)
	}
	c, err := st.GetClient(ctx, "pc1")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.CHAPSecret) < 16 || strings.Trim(c.CHAPSecret, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" || c.CHAPMutualSecret != "" {
		t.Fatalf("pc1 without a chap block: secret %q (mutual %q), want a generated one of >= 16 [A-Za-z0-9]", c.CHAPSecret, c.CHAPMutualSecret)
	}
	generated := c.CHAPSecret

	// A reload with the same config, and one that changes the client:
	// the secret stays.
	if rep := r.Apply(ctx, cfg); len(rep.Unchanged) != 2 || len(rep.Updated) != 0 {
		t.Fatalf("second pass: %+v", rep)
	}
	cfg2 := load(t, dir, strings.Replace(base, `image = "lab"`, "image = \"lab\"\n  persistent = false", 1))
	if rep := r.Apply(ctx, cfg2); len(rep.Updated) != 1 {
		t.Fatalf("changed pass: %+v", rep)
	}
	// A restart: a new reconciler over the same database.
	st.Close()
	r2, st2 := newReconciler(t, ctx, dir)
	if rep := r2.Apply(ctx, cfg2); len(rep.Errors) > 0 || len(rep.Unchanged) != 2 {
		t.Fatalf("pass after restart: %+v", rep)
	}
	if c, err := st2.GetClient(ctx, "pc1"); err != nil || c.CHAPSecret != generated || c.Persistent {
		t.Fatalf("after reloads and a restart: %+v, %v; want secret kept", c, err)
	}

	// A rotation (as the API does: a new secret in the store) is kept.
	c, _ = st2.GetClient(ctx, "pc1")
	c.CHAPSecret = "rotated-by-admin-0001"
	if err := st2.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	r2.Apply(ctx, cfg2)
	if c, _ := st2.GetClient(ctx, "pc1"); c.CHAPSecret != "rotated-by-admin-0001" {
		t.Fatalf("rotated secret replaced by the pass: %q", c.CHAPSecret)
	}
}

func TestConfigSecretOverrides(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, st := newReconciler(t, ctx, dir)
	r.Apply(ctx, load(t, dir, base))
	withCHAP := load(t, dir, clientsOnly+`
client "pc1" {
  mac   = "52:54:00:00:00:01"
  image = "lab"
  chap {
    secret        = "from-the-config-1"
    mutual_secret = "mutual-from-config"
  }
}
`)
	if rep := r.Apply(ctx, withCHAP); len(rep.Updated) != 1 {
		t.Fatalf("pass with a chap block: %+v", rep)
	}
	check := func(when, secret, mutual string) {
		t.Helper()
		c, err := st.GetClient(ctx, "pc1")
		if err != nil || c.CHAPSecret != secret || c.CHAPMutualSecret != mutual {
			t.Fatalf("%s: secrets %q / %q (%v), want %q / %q", when, c.CHAPSecret, c.CHAPMutualSecret, err, secret, mutual)
		}
	}
	check("chap block added", "from-the-config-1", "mutual-from-config")

	// A secret changed behind the config's back (API rotation) loses at
	// the next reload: dls.hcl wins.
	c, _ := st.GetClient(ctx, "pc1")
	c.CHAPSecret = "rotated-by-admin-0001"
	if err := st.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if rep := r.Apply(ctx, withCHAP); len(rep.Updated) != 1 {
		t.Fatalf("pass after rotation: %+v", rep)
	}
	check("reload after a rotation", "from-the-config-1", "mutual-from-config")

	// The chap block removed: its secrets stay (no regeneration).
	r.Apply(ctx, load(t, dir, base))
	check("chap block removed", "from-the-config-1", "mutual-from-config")
}

func TestExistingClientsGetSecretsAtStart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, st := newReconciler(t, ctx, dir)
	// Made through the API by an older host: no secret.
	if err := st.PutClient(ctx, store.Client{Name: "api-made", MAC: "52:54:00:00:00:09", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	if rep := r.Apply(ctx, load(t, dir, clientsOnly)); len(rep.Errors) > 0 {
		t.Fatal(rep.Errors)
	}
	c, err := st.GetClient(ctx, "api-made")
	if err != nil || len(c.CHAPSecret) < 16 {
		t.Fatalf("api-made after start: %+v, %v; want a generated secret", c, err)
	}
	es, _ := st.ListAudit(ctx, 0)
	if len(es) != 1 || es[0].Action != "client.chap_generate" || es[0].Object != "client/api-made" || strings.Contains(es[0].Detail, c.CHAPSecret) {
		t.Fatalf("audit = %+v, want one client.chap_generate without the secret", es)
	}
	// The next pass leaves it alone.
	r.Apply(ctx, load(t, dir, clientsOnly))
	if c2, _ := st.GetClient(ctx, "api-made"); c2.CHAPSecret != c.CHAPSecret {
		t.Fatal("secret regenerated by a second pass")
	}
}

func TestReloadChangesAreAudited(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, st := newReconciler(t, ctx, dir)
	audit := func() []store.AuditEntry {
		t.Helper()
		es, err := st.ListAudit(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		slices.Reverse(es) // oldest first
		return es
	}
	cfg := load(t, dir, base)
	r.Apply(ctx, cfg)
	es := audit()
	if len(es) != 1 || es[0].Action != "client.create" || es[0].Object != "client/pc1" ||
		es[0].Actor != "config" || es[0].Source != cfg.File || !strings.Contains(es[0].Detail, `"chap":"generated"`) {
		t.Fatalf("after the first pass: %+v", es)
	}
	r.Apply(ctx, cfg)
	if n := len(audit()); n != 1 {
		t.Fatalf("an unchanged pass wrote %d entries", n-1)
	}

	// One reload: pc1 changes image-less fields and gets a config secret,
	// pc2 appears; the next drops pc2.
	two := load(t, dir, clientsOnly+`
client "pc1" {
  mac             = "52:54:00:00:00:01"
  image           = "lab"
  extra_addresses = ["10.0.0.5"]
  chap {
    secret = "from-the-config-1"
  }
}
client "pc2" {
  mac   = "52:54:00:00:00:02"
  image = "lab"
}
`)
	r.Apply(ctx, two)
	r.Apply(ctx, load(t, dir, base))
	got := []string{}
	for _, e := range audit()[1:] {
		if e.Actor != "config" || e.Source != cfg.File {
			t.Errorf("entry %+v: want actor config, source %s", e, cfg.File)
		}
		for _, c := range []string{"from-the-config-1"} {
			if strings.Contains(e.Detail, c) {
				t.Errorf("entry %+v holds a secret", e)
			}
		}
		got = append(got, e.Action+" "+e.Object+" "+e.Detail)
	}
	want := []string{
		`client.update client/pc1 {"changed":["extra_addresses"]}`,
		`client.chap_set client/pc1 {"from":"config","mutual_secret_changed":false,"secret_changed":true}`,
		`client.create client/pc2 {"chap":"generated","image":"lab","mac":"52:54:00:00:00:02"}`,
		`client.update client/pc1 {"changed":["extra_addresses"]}`,
		`client.drop client/pc2 {"kept_in_store":true}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit after two reloads:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c, _ := st.GetClient(ctx, "pc1"); c.CHAPSecret != "from-the-config-1" {
		t.Errorf("pc1 secret after its chap block went: %q, want the last one kept", c.CHAPSecret)
	}
}

// TestImportErrorNamesTheOperationOnce: an image whose source cannot be
// imported is reported as "import image NAME from SOURCE: why", the
// operation said once (the storage client, the plugin and the reconciler
// each know it).
func TestImportErrorNamesTheOperationOnce(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := plugintest.Start(t, file.New())
	r, err := New(st, oneStorage{h.Storage()}, nil, hclog.New(&hclog.LoggerOptions{Output: io.Discard}))
	if err != nil {
		t.Fatal(err)
	}
	rep := r.Apply(ctx, load(t, dir, base)) // lab.img does not exist
	if len(rep.Errors) != 1 {
		t.Fatalf("errors %v, want one", rep.Errors)
	}
	msg := rep.Errors[0].Error()
	op := "import image lab from lab.img" // not found beside the config: as written
	if !strings.HasPrefix(msg, op+": ") || strings.Count(msg, "import image lab") != 1 {
		t.Errorf("error %q: want %q once, at the start", msg, op)
	}
}

// TestConfigLabels: a client block's labels land in the store beside
// dls.origin; a changed label updates the client, an admin's label added
// through the API stays, and an unchanged config is a no-op.
func TestConfigLabels(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, st := newReconciler(t, ctx, dir)
	withLabels := func(room string) string {
		return strings.Replace(base, `image = "lab"`, "image = \"lab\"\n  labels = { room = \""+room+"\" }", 1)
	}
	if rep := r.Apply(ctx, load(t, dir, withLabels("r1"))); len(rep.Errors) > 0 {
		t.Fatalf("first pass: %v", rep.Errors)
	}
	c, err := st.GetClient(ctx, "pc1")
	if err != nil || c.Labels["room"] != "r1" || c.Labels[originLabel] != OriginConfig {
		t.Fatalf("pc1 = %+v, %v: want labels room=r1 and %s", c, err, originLabel)
	}
	c.Labels["owner"] = "it"
	if err := st.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if rep := r.Apply(ctx, load(t, dir, withLabels("r1"))); len(rep.Updated) != 0 {
		t.Fatalf("unchanged labels updated the client: %+v", rep)
	}
	if rep := r.Apply(ctx, load(t, dir, withLabels("r2"))); len(rep.Updated) != 1 {
		t.Fatalf("changed room: %+v", rep)
	}
	c, _ = st.GetClient(ctx, "pc1")
	if c.Labels["room"] != "r2" || c.Labels["owner"] != "it" {
		t.Errorf("labels after the change %v: want room=r2 and the admin's owner=it", c.Labels)
	}
}
