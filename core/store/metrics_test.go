package store

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.ObserveQuery(time.Now(), errors.New("boom"))
	m.TrackConnections(func() int { return 1 })()
}

func TestMetricsRegisterAndLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("NewMetrics: %v", err)
	}
	m.ObserveQuery(time.Now(), nil)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("GatherAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 4 {
		t.Errorf("GatherAndCount = %d, %v; want 4 series", n, err)
	}

	// A second set on the same registry is refused, and leaves it as it was.
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("second NewMetrics on one registry succeeded")
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 4 {
		t.Errorf("after refused registration: %d series, %v", n, err)
	}
}

func TestMetricsUnregisteredOnFailure(t *testing.T) {
	reg := prometheus.NewRegistry()
	// Take the last family's name so registration fails part way.
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "dls_database_connections", Help: "x"}))
	if _, err := NewMetrics(reg); err == nil {
		t.Fatal("NewMetrics succeeded over a taken name")
	}
	// The three registered before the failure were taken back.
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
	if n, _ := testutil.GatherAndCount(reg, "dls_database_queries_total"); n != 0 {
		t.Errorf("dls_database_queries_total left registered")
	}
}

func TestObserveQuery(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveQuery(time.Now(), nil)
	m.ObserveQuery(time.Now(), errors.New("disk I/O error"))
	if got := testutil.ToFloat64(m.queries); got != 2 {
		t.Errorf("queries = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.errors); got != 1 {
		t.Errorf("errors = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(m.duration); got != 1 {
		t.Errorf("duration series = %d, want 1", got)
	}
}

func TestConnectionsGauge(t *testing.T) {
	m, err := NewMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := 2, 3
	untrackA := m.TrackConnections(func() int { return a })
	m.TrackConnections(func() int { return b })
	expect := func(want string) {
		t.Helper()
		exp := "# HELP dls_database_connections Open connections to the state store database.\n" +
			"# TYPE dls_database_connections gauge\n" +
			"dls_database_connections " + want + "\n"
		if err := testutil.CollectAndCompare(m.connections, strings.NewReader(exp)); err != nil {
			t.Error(err)
		}
	}
	expect("5")
	a = 7
	expect("10") // read at collect time
	untrackA()
	untrackA() // harmless twice
	expect("3")
}
