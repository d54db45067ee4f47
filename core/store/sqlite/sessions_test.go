package sqlite

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

func TestWriteSessions(t *testing.T) {
	st, _ := openTemp(t, nil)
	ctx := context.Background()
	at := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	sess := func(client string) store.Session {
		return store.Session{Client: client, MAC: "52:54:00:00:00:01", State: store.SessionActive, Expect: "handoff",
			Started: at, Stages: map[string]time.Time{"dhcp": at}}
	}
	got, err := st.WriteSessions(ctx, []store.Session{sess("pc-01"), sess("pc-02")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID == 0 || got[1].ID == 0 || got[0].ID == got[1].ID {
		t.Fatalf("created %+v", got)
	}
	upd := got[0]
	upd.Stages["script"] = at.Add(time.Second)
	got2, err := st.WriteSessions(ctx, []store.Session{upd, sess("pc-03")})
	if err != nil {
		t.Fatal(err)
	}
	if got2[0].ID != upd.ID || got2[1].ID == 0 {
		t.Fatalf("written %+v", got2)
	}
	if s, err := st.GetSession(ctx, upd.ID); err != nil || s.Stages["script"].IsZero() {
		t.Errorf("updated session %+v, %v", s, err)
	}

	// All or none: an update of a missing session fails the batch, and
	// the session created beside it is not there.
	gone := sess("pc-04")
	gone.ID = 9999
	if _, err := st.WriteSessions(ctx, []store.Session{sess("pc-05"), gone}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("batch with a missing session: %v", err)
	}
	all, err := st.ListSessions(ctx, store.SessionFilter{Limit: store.MaxSessionLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Client == "pc-05" {
			t.Errorf("pc-05 stored by a failed batch: %+v", s)
		}
	}
	if len(all) != 3 {
		t.Errorf("%d sessions stored, want 3", len(all))
	}
}
