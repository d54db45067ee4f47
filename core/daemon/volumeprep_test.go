package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
)

// TestPreparingStore: a client the API or the config writes, or renames,
// is handed to the volume preparation once stored; one the store refuses
// is not.
func TestPreparingStore(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var got []string
	p := preparingStore{Store: db, prepare: func(c string) { got = append(got, c) }}
	if err := p.PutClient(ctx, store.Client{Name: "pc-01", MAC: "52:54:00:aa:00:01", Image: "lab"}); err != nil {
		t.Fatal(err)
	}
	err = p.PutClient(ctx, store.Client{Name: "pc-02", MAC: "52:54:00:aa:00:01", Image: "lab"})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutClient with pc-01's MAC: %v, want ErrConflict", err)
	}
	if err := p.RenameClient(ctx, "pc-01", "pc-03"); err != nil {
		t.Fatal(err)
	}
	if err := p.RenameClient(ctx, "nobody", "pc-04"); err == nil {
		t.Fatal("renaming a client that does not exist succeeded")
	}
	if want := []string{"pc-01", "pc-03"}; !slices.Equal(got, want) {
		t.Fatalf("prepared %q, want %q", got, want)
	}
}
