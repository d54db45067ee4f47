package sqlite

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dls-project/dls/core/store"
)

// value reads one label-less family from reg: the value of a counter or
// gauge, the sample count of a histogram.
func value(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		m := f.GetMetric()[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no family %s", name)
	return 0
}

func TestMetricsCounted(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := store.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := openTemp(t, m)
	const (
		queries = "dls_database_queries_total"
		errs    = "dls_database_errors_total"
		hist    = "dls_database_query_duration_seconds"
		conns   = "dls_database_connections"
	)
	// Open itself ran queries (migrations).
	if v := value(t, reg, queries); v == 0 {
		t.Error("Open counted no queries")
	}
	if v := value(t, reg, conns); v < 1 {
		t.Errorf("%s = %v with the store open", conns, v)
	}

	check := func(what string, op func() error, wantErr bool) {
		t.Helper()
		q0, e0 := value(t, reg, queries), value(t, reg, errs)
		err := op()
		if (err != nil) != wantErr {
			t.Fatalf("%s: err = %v", what, err)
		}
		q1, e1 := value(t, reg, queries), value(t, reg, errs)
		if q1 <= q0 {
			t.Errorf("%s: %s did not grow (%v)", what, queries, q1)
		}
		if wantErr && e1 <= e0 {
			t.Errorf("%s: failure not counted in %s", what, errs)
		}
		if !wantErr && e1 != e0 {
			t.Errorf("%s: %s grew from %v to %v", what, errs, e0, e1)
		}
		if h := value(t, reg, hist); h != q1 {
			t.Errorf("%s: %v observations for %v queries: a statement went untimed", what, h, q1)
		}
	}
	ctx := t.Context()
	check("PutClient", func() error {
		return s.PutClient(ctx, store.Client{Name: "pc-01", MAC: "52:54:00:00:00:01", Initiators: []string{"iqn.x:1"}})
	}, false)
	check("ClientByMAC", func() error { _, err := s.ClientByMAC(ctx, "52:54:00:00:00:01"); return err }, false)
	// Finding nothing is an answer, not a database error.
	check("ClientByMAC unknown", func() error {
		_, err := s.ClientByMAC(ctx, "52:54:00:00:00:99")
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}, false)
	check("ListClients", func() error { _, err := s.ListClients(ctx); return err }, false)
	check("CommitLeases", func() error {
		_, err := s.CommitLeases(ctx, []store.Lease{{Pool: "lan", Address: netip.MustParseAddr("10.0.0.1"),
			MAC: "52:54:00:00:00:01", Expires: time.Now().Add(time.Hour), State: store.LeaseBound}})
		return err
	}, false)
	check("LoadLeases", func() error { _, err := s.LoadLeases(ctx, ""); return err }, false)
	check("AppendAudit", func() error { return s.AppendAudit(ctx, store.AuditEntry{Action: "x"}) }, false)
	check("ListAudit", func() error { _, err := s.ListAudit(ctx, 5); return err }, false)
	check("DeleteClient", func() error { return s.DeleteClient(ctx, "pc-01") }, false)
	check("PutImage", func() error { return s.PutImage(ctx, store.Image{Name: "lab", Boot: &store.BootProfile{Kernel: "k"}}) }, false)
	check("GetImage", func() error { _, err := s.GetImage(ctx, "lab"); return err }, false)
	check("ListImages", func() error { _, err := s.ListImages(ctx); return err }, false)
	check("DeleteImage", func() error { return s.DeleteImage(ctx, "lab") }, false)
	var sess store.Session
	check("CreateSession", func() (err error) {
		sess, err = s.CreateSession(ctx, store.Session{Client: "pc-01", TokenHash: "t1",
			Stages: map[string]time.Time{"dhcp": time.Now()}})
		return err
	}, false)
	check("UpdateSession", func() error { sess.State = store.SessionDone; return s.UpdateSession(ctx, sess) }, false)
	check("GetSession", func() error { _, err := s.GetSession(ctx, sess.ID); return err }, false)
	check("SessionByToken", func() error { _, err := s.SessionByToken(ctx, "t1"); return err }, false)
	check("ListSessions", func() error { _, err := s.ListSessions(ctx, store.SessionFilter{Client: "pc-01"}); return err }, false)
	exp := time.Now().Add(time.Hour)
	check("PutRefreshToken", func() error {
		return s.PutRefreshToken(ctx, store.RefreshToken{Hash: "r1", User: "alice", Expires: exp})
	}, false)
	check("RotateRefreshToken", func() error {
		return s.RotateRefreshToken(ctx, "r1", store.RefreshToken{Hash: "r2", User: "alice", Expires: exp})
	}, false)
	// A replayed token is an answer, not a database error.
	check("RotateRefreshToken replay", func() error {
		err := s.RotateRefreshToken(ctx, "r1", store.RefreshToken{Hash: "r3", User: "alice", Expires: exp})
		if errors.Is(err, store.ErrConflict) {
			return nil
		}
		return err
	}, false)
	check("GetRefreshToken", func() error { _, err := s.GetRefreshToken(ctx, "r2"); return err }, false)
	check("RevokeRefreshToken", func() error { return s.RevokeRefreshToken(ctx, "r2") }, false)
	check("RevokeUserTokens", func() error { return s.RevokeUserTokens(ctx, "alice") }, false)
	check("CountActiveTokens", func() error { _, err := s.CountActiveTokens(ctx, time.Now()); return err }, false)
	check("Purge", func() error {
		_, err := s.Purge(ctx, store.PurgeRequest{SessionsBefore: time.Now(), TokensBefore: time.Now()})
		return err
	}, false)
	check("Ping", func() error { return s.Ping(ctx) }, false)
	check("bad SQL", func() error { _, err := s.exec(ctx, s.write, "SELEKT 1"); return err }, true)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	check("canceled", func() error { _, err := s.ListClients(canceled); return err }, true)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := value(t, reg, conns); v != 0 {
		t.Errorf("%s = %v after Close, want 0", conns, v)
	}
}
