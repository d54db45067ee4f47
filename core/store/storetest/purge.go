package storetest

// The retention purge's part of the suite.

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

func purge(t *testing.T, s store.Store, p store.PurgeRequest, want store.PurgeResult) {
	t.Helper()
	got, err := s.Purge(t.Context(), p)
	if err != nil {
		t.Fatalf("Purge(%+v): %v", p, err)
	}
	if got != want {
		t.Errorf("Purge(%+v) = %+v, want %+v", p, got, want)
	}
}

// testPurge: Purge deletes the sessions that ended, and the refresh tokens
// that expired, before its times, and nothing else: not active sessions
// however old, not recent ones, not tokens still valid (revoked or not),
// never a lease or an audit entry; a zero time keeps everything of its
// kind.
func testPurge(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := ms(time.Now())
	cut := now.Add(-24 * time.Hour)
	old, recent := cut.Add(-time.Hour), cut.Add(time.Hour)

	session := func(client, state string, ended time.Time) int64 {
		t.Helper()
		return createSession(t, s, store.Session{Client: client, State: state,
			Started: old.Add(-time.Hour), Ended: ended}).ID
	}
	goneSessions := map[string]int64{
		"done long ago":   session("pc-01", store.SessionDone, old),
		"failed long ago": session("pc-02", store.SessionFailed, old),
	}
	keptSessions := map[string]int64{
		"done recently":            session("pc-01", store.SessionDone, recent),
		"done at the cut":          session("pc-03", store.SessionDone, cut),
		"active since long ago":    session("pc-04", store.SessionActive, time.Time{}),
		"active with an old Ended": session("pc-05", store.SessionActive, old),
		"done without Ended":       session("pc-06", store.SessionDone, time.Time{}),
	}
	tok := func(hash string, expires time.Time, used, revoked bool) string {
		t.Helper()
		tk := token(hash, "alice", expires)
		tk.Used, tk.Revoked = used, revoked
		putToken(t, s, tk)
		return hash
	}
	goneTokens := []string{
		tok("h-expired", old, false, false),
		tok("h-expired-used", old, true, false),
		tok("h-expired-revoked", old, false, true),
	}
	keptTokens := []string{
		tok("h-valid", now.Add(time.Hour), false, false),
		tok("h-valid-used", now.Add(time.Hour), true, false),
		tok("h-valid-revoked", now.Add(time.Hour), false, true),
		tok("h-expired-recently", recent, false, true),
		tok("h-expired-at-cut", cut, false, false),
	}
	if err := s.AppendAudit(ctx, store.AuditEntry{Time: old.Add(-time.Hour), Action: "client.put"}); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	commitOK(t, s, lease("10.0.0.1", macA, old, store.LeaseReleased))

	check := func(when string, sessionsGone, tokensGone bool) {
		t.Helper()
		for what, id := range goneSessions {
			_, err := s.GetSession(ctx, id)
			if gone := errors.Is(err, store.ErrNotFound); gone != sessionsGone || (err != nil && !gone) {
				t.Errorf("%s: session %s: err = %v, want it gone: %v", when, what, err, sessionsGone)
			}
		}
		for what, id := range keptSessions {
			if _, err := s.GetSession(ctx, id); err != nil {
				t.Errorf("%s: session %s: %v, want it kept", when, what, err)
			}
		}
		for _, h := range goneTokens {
			_, err := s.GetRefreshToken(ctx, h)
			if gone := errors.Is(err, store.ErrNotFound); gone != tokensGone || (err != nil && !gone) {
				t.Errorf("%s: token %s: err = %v, want it gone: %v", when, h, err, tokensGone)
			}
		}
		for _, h := range keptTokens {
			if _, err := s.GetRefreshToken(ctx, h); err != nil {
				t.Errorf("%s: token %s: %v, want it kept", when, h, err)
			}
		}
		if es, err := s.ListAudit(ctx, 0); err != nil || len(es) != 1 {
			t.Errorf("%s: audit = %+v, %v; want the one entry kept", when, es, err)
		}
		if ls, err := s.LoadLeases(ctx, ""); err != nil || len(ls) != 1 {
			t.Errorf("%s: leases = %+v, %v; want the one lease kept", when, ls, err)
		}
	}

	purge(t, s, store.PurgeRequest{}, store.PurgeResult{})
	check("zero times", false, false)
	purge(t, s, store.PurgeRequest{SessionsBefore: cut}, store.PurgeResult{Sessions: len(goneSessions)})
	check("sessions purged", true, false)
	purge(t, s, store.PurgeRequest{TokensBefore: cut}, store.PurgeResult{Tokens: len(goneTokens)})
	check("tokens purged", true, true)
	purge(t, s, store.PurgeRequest{SessionsBefore: cut, TokensBefore: cut}, store.PurgeResult{})
	check("purged again", true, true)
	// Everything that ended or expired goes once the cut passes it.
	purge(t, s, store.PurgeRequest{SessionsBefore: now, TokensBefore: now},
		store.PurgeResult{Sessions: 2, Tokens: 2}) // done recently and at the cut; expired recently and at the cut
}

// testPurgeBatches: a purge of more than store.PurgeBatch rows deletes
// them all, over several statements.
func testPurgeBatches(t *testing.T, s store.Store) {
	st, ok := s.(store.SessionBatcher)
	if !ok {
		t.Skip("the store has no store.SessionBatcher to write many sessions quickly")
	}
	at := ms(time.Now().Add(-48 * time.Hour))
	ss := make([]store.Session, store.PurgeBatch+2)
	for i := range ss {
		ss[i] = store.Session{Client: fmt.Sprintf("pc-%04d", i), State: store.SessionDone, Started: at, Ended: at}
	}
	ss[0].State, ss[0].Ended = store.SessionActive, time.Time{}
	written, err := st.WriteSessions(t.Context(), ss)
	if err != nil {
		t.Fatalf("WriteSessions: %v", err)
	}
	purge(t, s, store.PurgeRequest{SessionsBefore: time.Now()}, store.PurgeResult{Sessions: store.PurgeBatch + 1})
	left, err := s.ListSessions(t.Context(), store.SessionFilter{Limit: store.MaxSessionLimit})
	if err != nil || len(left) != 1 || left[0].ID != written[0].ID {
		t.Errorf("sessions left = %d (%v), want the active one", len(left), err)
	}
}

// testPurgeConcurrent has a and b (two hosts on one database) purge the
// same sessions at once: between them they delete each exactly once, and
// neither fails.
func testPurgeConcurrent(t *testing.T, a, b store.Store) {
	st, ok := a.(store.SessionBatcher)
	if !ok {
		t.Skip("the store has no store.SessionBatcher to write many sessions quickly")
	}
	at := ms(time.Now().Add(-48 * time.Hour))
	ss := make([]store.Session, 2*store.PurgeBatch+1)
	for i := range ss {
		ss[i] = store.Session{Client: fmt.Sprintf("pc-%04d", i), State: store.SessionDone, Started: at, Ended: at}
	}
	if _, err := st.WriteSessions(t.Context(), ss); err != nil {
		t.Fatalf("WriteSessions: %v", err)
	}
	var (
		wg   sync.WaitGroup
		res  [2]store.PurgeResult
		errs [2]error
	)
	for i, s := range []store.Store{a, b} {
		wg.Go(func() { res[i], errs[i] = s.Purge(t.Context(), store.PurgeRequest{SessionsBefore: time.Now()}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("purge %d: %v", i, err)
		}
	}
	// What one host skipped while the other held it, the other deleted.
	if n := res[0].Sessions + res[1].Sessions; n != len(ss) {
		t.Errorf("purges deleted %d and %d sessions, %d in all; want %d", res[0].Sessions, res[1].Sessions, n, len(ss))
	}
	if left, err := b.ListSessions(t.Context(), store.SessionFilter{}); err != nil || len(left) != 0 {
		t.Errorf("sessions left = %d (%v), want none", len(left), err)
	}
}
