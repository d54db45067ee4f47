package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dls-project/dls/core/store"
)

// oneAtATime is a store without batches: it records each write and fails
// the client named fail.
type oneAtATime struct {
	store.Clients // unused methods
	store.AuditLog
	fail   string
	writes []string
}

func (o *oneAtATime) PutClient(_ context.Context, c store.Client) error {
	if c.Name == o.fail {
		return store.ErrConflict
	}
	o.writes = append(o.writes, "client "+c.Name)
	return nil
}

func (o *oneAtATime) AppendAudit(_ context.Context, e store.AuditEntry) error {
	o.writes = append(o.writes, "audit "+e.Object)
	return nil
}

// TestPutClientsAuditedOneByOne: a store without batches gets each client,
// then each entry, and nothing past the first error.
func TestPutClientsAuditedOneByOne(t *testing.T) {
	ctx := context.Background()
	cs := []store.Client{{Name: "a"}, {Name: "b"}}
	audit := []store.AuditEntry{{Object: "client/a"}, {Object: "client/b"}}
	st := &oneAtATime{}
	if err := store.PutClientsAudited(ctx, st, cs, audit); err != nil {
		t.Fatal(err)
	}
	want := []string{"client a", "client b", "audit client/a", "audit client/b"}
	if len(st.writes) != len(want) {
		t.Fatalf("writes %v, want %v", st.writes, want)
	}
	for i := range want {
		if st.writes[i] != want[i] {
			t.Fatalf("writes %v, want %v", st.writes, want)
		}
	}
	st = &oneAtATime{fail: "b"}
	if err := store.PutClientsAudited(ctx, st, cs, audit); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("error %v, want ErrConflict", err)
	}
	if len(st.writes) != 1 || st.writes[0] != "client a" {
		t.Errorf("writes %v after the failure, want only client a", st.writes)
	}
}
