package pluginmetrics_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/core/pluginmetrics"
	"github.com/dls-project/dls/internal/fakeprotocol"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// metricsPlugin is a protocol plugin that reports a counter with labels, a
// gauge and a histogram. Once hang is set, Metrics blocks until release is
// closed.
type metricsPlugin struct {
	fakeprotocol.Mock
	reg      *metrics.Registry
	requests *prometheus.CounterVec
	sessions *prometheus.GaugeVec
	latency  *prometheus.HistogramVec

	hang    atomic.Bool
	release chan struct{}
}

var (
	_ base.MetricsDeclarer = (*metricsPlugin)(nil)
	_ protocol.Protocol    = (*metricsPlugin)(nil)
)

func newMetricsPlugin() *metricsPlugin {
	reg := metrics.NewRegistry()
	p := &metricsPlugin{
		reg: reg,
		// Labels deliberately not in alphabetical order.
		requests: reg.Counter("dls_mock_requests_total", "Requests served.", "op", "code"),
		sessions: reg.Gauge("dls_mock_sessions", "Open sessions."),
		latency:  reg.Histogram("dls_mock_latency_seconds", "Request latency.", []float64{0.1, 1}),
		release:  make(chan struct{}),
	}
	p.InfoFn = func() base.Info { return base.Info{Type: "mock", Version: "1.2.3"} }
	p.requests.WithLabelValues("read", "ok").Add(3)
	p.requests.WithLabelValues("write", "denied").Inc()
	p.sessions.WithLabelValues().Set(2)
	for _, v := range []float64{0.05, 0.5, 5} {
		p.latency.WithLabelValues().Observe(v)
	}
	return p
}

func (p *metricsPlugin) Metrics() *metrics.Registry {
	if p.hang.Load() {
		<-p.release
	}
	return p.reg
}

// start runs p through the real gRPC path as instance "pxe" and returns
// the harness and the plugin's declared descriptors.
func start(t *testing.T, p *metricsPlugin) (*plugintest.Harness, []metrics.Desc) {
	t.Helper()
	h := plugintest.Start(t, p, plugintest.WithInstance("pxe"))
	// Runs before the harness's cleanup: a blocked Metrics would hold up
	// the plugin server's shutdown.
	t.Cleanup(func() { close(p.release) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	descs, err := h.Base.DescribeMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return h, descs
}

func reserved() map[string]bool {
	m := map[string]bool{}
	for _, n := range pluginmetrics.HostFamilies() {
		m[n] = true
	}
	return m
}

func register(t *testing.T, c prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	return reg
}

const (
	upHelp     = "# HELP dls_plugin_up 1 when the plugin answered the last scrape, 0 when it is down, slow or broken.\n# TYPE dls_plugin_up gauge\n"
	infoHelp   = "# HELP dls_plugin_info Plugin identity; always 1.\n# TYPE dls_plugin_info gauge\n"
	errorsHelp = "# HELP dls_plugin_scrape_errors_total Scrapes in which the plugin's metrics could not be pulled.\n# TYPE dls_plugin_scrape_errors_total counter\n"
)

func TestCollectThroughRealPlugin(t *testing.T) {
	p := newMetricsPlugin()
	h, descs := start(t, p)
	c, err := pluginmetrics.New(t.Context(), "pxe", h.Info, descs, reserved(), func() *baserpc.Client { return h.Base }, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	reg := register(t, c)

	want := `
# HELP dls_mock_requests_total Requests served.
# TYPE dls_mock_requests_total counter
dls_mock_requests_total{code="denied",op="write",plugin="pxe"} 1
dls_mock_requests_total{code="ok",op="read",plugin="pxe"} 3
# HELP dls_mock_sessions Open sessions.
# TYPE dls_mock_sessions gauge
dls_mock_sessions{plugin="pxe"} 2
# HELP dls_mock_latency_seconds Request latency.
# TYPE dls_mock_latency_seconds histogram
dls_mock_latency_seconds_bucket{plugin="pxe",le="0.1"} 1
dls_mock_latency_seconds_bucket{plugin="pxe",le="1"} 2
dls_mock_latency_seconds_bucket{plugin="pxe",le="+Inf"} 3
dls_mock_latency_seconds_sum{plugin="pxe"} 5.55
dls_mock_latency_seconds_count{plugin="pxe"} 3
` + upHelp + `dls_plugin_up{plugin="pxe"} 1
` + infoHelp + `dls_plugin_info{kind="protocol",plugin="pxe",type="mock",version="1.2.3"} 1
` + errorsHelp + `dls_plugin_scrape_errors_total{plugin="pxe"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"dls_mock_requests_total", "dls_mock_sessions", "dls_mock_latency_seconds",
		"dls_plugin_up", "dls_plugin_info", "dls_plugin_scrape_errors_total"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	// A later scrape sees new samples: nothing is cached.
	p.requests.WithLabelValues("read", "ok").Inc()
	if got := gatherValue(t, reg, "dls_mock_requests_total", map[string]string{"op": "read", "code": "ok"}); got != 4 {
		t.Errorf("after one more request: %g, want 4", got)
	}
}

// gatherValue returns the value of the counter or gauge series of name whose
// labels include labels, failing t if there is none.
func gatherValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func familyNames(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

func TestPluginNotRunning(t *testing.T) {
	descs := []metrics.Desc{{Name: "dls_mock_sessions", Help: "Open sessions.", Type: metrics.Gauge}}
	var mu sync.Mutex
	var reasons []string
	c, err := pluginmetrics.New(t.Context(), "pxe", base.Info{Kind: "protocol", Type: "mock", Version: "1"}, descs, reserved(),
		func() *baserpc.Client { return nil }, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.OnError = func(err error) {
		mu.Lock()
		defer mu.Unlock()
		reasons = append(reasons, err.Error())
	}
	reg := register(t, c)
	for range 2 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	want := upHelp + `dls_plugin_up{plugin="pxe"} 0
` + errorsHelp + `dls_plugin_scrape_errors_total{plugin="pxe"} 3
`
	// The third scrape is GatherAndCompare's own.
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dls_plugin_up", "dls_plugin_scrape_errors_total"); err != nil {
		t.Error(err)
	}
	if slices.Contains(familyNames(t, reg), "dls_mock_sessions") {
		t.Error("a plugin that is not running has series")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 4 || !strings.Contains(reasons[0], "plugin pxe is not running") {
		t.Errorf("OnError got %q, want 4 x \"plugin pxe is not running\"", reasons)
	}
}

func TestSlowPluginDoesNotHoldTheScrape(t *testing.T) {
	p := newMetricsPlugin()
	h, descs := start(t, p)
	const timeout = 200 * time.Millisecond
	c, err := pluginmetrics.New(t.Context(), "pxe", h.Info, descs, reserved(), func() *baserpc.Client { return h.Base }, timeout)
	if err != nil {
		t.Fatal(err)
	}
	reg := register(t, c)
	p.hang.Store(true)

	done := make(chan error, 1)
	go func() {
		want := upHelp + `dls_plugin_up{plugin="pxe"} 0
`
		done <- testutil.GatherAndCompare(reg, strings.NewReader(want), "dls_plugin_up")
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("a scrape with a plugin stuck in Metrics did not return (pull timeout %s)", timeout)
	}
	if names := familyNames(t, reg); slices.Contains(names, "dls_mock_requests_total") {
		t.Errorf("a stuck plugin has series: %v", names)
	}
}

func TestUndeclaredFamilyRefusesWholeScrape(t *testing.T) {
	p := newMetricsPlugin()
	h, descs := start(t, p)
	// The host only knows the counter and the histogram.
	known := slices.DeleteFunc(slices.Clone(descs), func(d metrics.Desc) bool { return d.Name == "dls_mock_sessions" })
	if len(known) != len(descs)-1 {
		t.Fatalf("descriptors %+v lack dls_mock_sessions", descs)
	}
	c, err := pluginmetrics.New(t.Context(), "pxe", h.Info, known, reserved(), func() *baserpc.Client { return h.Base }, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reason atomic.Value
	c.OnError = func(err error) { reason.Store(err.Error()) }
	reg := register(t, c)

	names := familyNames(t, reg)
	for _, n := range []string{"dls_mock_requests_total", "dls_mock_latency_seconds", "dls_mock_sessions"} {
		if slices.Contains(names, n) {
			t.Errorf("family %s present in a scrape refused for an undeclared family (all or nothing)", n)
		}
	}
	if got := gatherValue(t, reg, "dls_plugin_up", nil); got != 0 {
		t.Errorf("dls_plugin_up = %g, want 0", got)
	}
	if r, _ := reason.Load().(string); !strings.Contains(r, "undeclared metric dls_mock_sessions") {
		t.Errorf("OnError got %q, want it to name the undeclared family", r)
	}
}

func TestNewRefusesBadDescriptors(t *testing.T) {
	info := base.Info{Kind: "protocol", Type: "mock", Version: "1"}
	src := func() *baserpc.Client { return nil }
	good := metrics.Desc{Name: "dls_mock_requests_total", Help: "h", Type: metrics.Counter}
	cases := []struct {
		name  string
		descs []metrics.Desc
		want  string
	}{
		{"invalid", []metrics.Desc{{Name: "dls_mock_requests", Help: "h", Type: metrics.Counter}}, "must end in _total"},
		{"reserved label", []metrics.Desc{{Name: "dls_mock", Help: "h", Type: metrics.Gauge, Labels: []string{"plugin"}}}, "reserved"},
		{"host family", []metrics.Desc{{Name: "dls_plugin_up", Help: "h", Type: metrics.Gauge}}, "metric dls_plugin_up is reported by the host"},
		{"other reserved family", []metrics.Desc{{Name: "dls_service_restarts_total", Help: "h", Type: metrics.Counter}}, "reported by the host"},
		{"duplicate", []metrics.Desc{good, good}, "metric dls_mock_requests_total declared twice"},
	}
	res := reserved()
	res["dls_service_restarts_total"] = true
	for _, tc := range cases {
		_, err := pluginmetrics.New(t.Context(), "pxe", info, tc.descs, res, src, time.Second)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "plugin pxe") {
			t.Errorf("%s: New = %v, want an error naming plugin pxe and containing %q", tc.name, err, tc.want)
		}
	}
}

func TestFamilyNames(t *testing.T) {
	descs := []metrics.Desc{
		{Name: "dls_mock_requests_total", Help: "h", Type: metrics.Counter, Labels: []string{"op"}},
		{Name: "dls_mock_latency_seconds", Help: "h", Type: metrics.Histogram, Buckets: []float64{1}},
	}
	c, err := pluginmetrics.New(t.Context(), "pxe", base.Info{}, descs, reserved(), func() *baserpc.Client { return nil }, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := pluginmetrics.FamilyNames(c)
	want := append(pluginmetrics.HostFamilies(), "dls_mock_requests_total", "dls_mock_latency_seconds")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("FamilyNames = %v, want %v", got, want)
	}

	// Any collector, and more families than FamilyNames buffers.
	many := make([]prometheus.Collector, 0, 100)
	wantMany := make([]string, 0, 100)
	for i := range 100 {
		name := "dls_g" + strings.Repeat("x", i)
		many = append(many, prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "h"}))
		wantMany = append(wantMany, name)
	}
	got = pluginmetrics.FamilyNames(collectors(many))
	slices.Sort(got)
	slices.Sort(wantMany)
	if !slices.Equal(got, wantMany) {
		t.Errorf("FamilyNames of 100 gauges: %d names, want 100", len(got))
	}
}

type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}
