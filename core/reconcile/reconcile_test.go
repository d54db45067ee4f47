package reconcile

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type oneStorage struct{ st *storage.Client }

func (o oneStorage) StorageForImage(string) (*storage.Client, error) { return o.st, nil }

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
