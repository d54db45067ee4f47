package metrics_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dls-project/dls/sdk/metrics"
)

func TestDescValidate(t *testing.T) {
	ok := []metrics.Desc{
		{Name: "dls_tftp_requests_total", Help: "Requests.", Type: metrics.Counter, Labels: []string{"op", "result"}},
		{Name: "dls_sessions", Help: "Sessions.", Type: metrics.Gauge},
		{Name: "dls_x9", Help: "Gauge with a digit.", Type: metrics.Gauge, Labels: []string{"_private"}},
		{Name: "dls_latency_seconds", Help: "Latency.", Type: metrics.Histogram, Buckets: []float64{0.001, 0.01, 1}, Labels: []string{"op"}},
		{Name: "dls_one_bucket_bytes", Help: "Size.", Type: metrics.Histogram, Buckets: []float64{-1}},
	}
	for _, d := range ok {
		if err := d.Validate(); err != nil {
			t.Errorf("Validate(%s) = %v, want nil", d.Name, err)
		}
	}

	bad := []struct {
		d    metrics.Desc
		want string // substring of the error
	}{
		{metrics.Desc{Name: "tftp_requests_total", Help: "h", Type: metrics.Counter}, "name must match"},
		{metrics.Desc{Name: "DLS_x_total", Help: "h", Type: metrics.Counter}, "name must match"},
		{metrics.Desc{Name: "dls_", Help: "h", Type: metrics.Gauge}, "name must match"},
		{metrics.Desc{Name: "dls_x_", Help: "h", Type: metrics.Gauge}, "name must match"},
		{metrics.Desc{Name: "dls_x-y", Help: "h", Type: metrics.Gauge}, "name must match"},
		{metrics.Desc{Name: "dls_x:y", Help: "h", Type: metrics.Gauge}, "name must match"},
		{metrics.Desc{Name: "dls_x", Help: "  ", Type: metrics.Gauge}, "help text is empty"},
		{metrics.Desc{Name: "dls_requests", Help: "h", Type: metrics.Counter}, "must end in _total"},
		{metrics.Desc{Name: "dls_sessions_total", Help: "h", Type: metrics.Gauge}, "must not end in _total"},
		{metrics.Desc{Name: "dls_latency_seconds", Help: "h", Type: metrics.Histogram}, "needs buckets"},
		{metrics.Desc{Name: "dls_latency_seconds", Help: "h", Type: metrics.Histogram, Buckets: []float64{1, 0.5}}, "ascend"},
		{metrics.Desc{Name: "dls_latency_total", Help: "h", Type: metrics.Histogram, Buckets: []float64{1}}, "must not end in _total"},
		{metrics.Desc{Name: "dls_latency_count", Help: "h", Type: metrics.Histogram, Buckets: []float64{1}}, "must not end in _count"},
		{metrics.Desc{Name: "dls_latency_sum", Help: "h", Type: metrics.Histogram, Buckets: []float64{1}}, "must not end in _sum"},
		{metrics.Desc{Name: "dls_latency_bucket", Help: "h", Type: metrics.Histogram, Buckets: []float64{1}}, "must not end in _bucket"},
		{metrics.Desc{Name: "dls_x", Help: "h", Type: metrics.Type(7)}, "unknown type"},
		{metrics.Desc{Name: "dls_x_total", Help: "h", Type: metrics.Counter, Labels: []string{"plugin"}}, `"plugin" is reserved`},
		{metrics.Desc{Name: "dls_x_total", Help: "h", Type: metrics.Counter, Labels: []string{"instance"}}, `"instance" is reserved`},
		{metrics.Desc{Name: "dls_x", Help: "h", Type: metrics.Gauge, Labels: []string{"job"}}, `"job" is reserved`},
		{metrics.Desc{Name: "dls_x_seconds", Help: "h", Type: metrics.Histogram, Buckets: []float64{1}, Labels: []string{"le"}}, `"le" is reserved`},
		{metrics.Desc{Name: "dls_x_total", Help: "h", Type: metrics.Counter, Labels: []string{"op", "op"}}, `"op" declared twice`},
		{metrics.Desc{Name: "dls_x_total", Help: "h", Type: metrics.Counter, Labels: []string{"__name"}}, "invalid label name"},
		{metrics.Desc{Name: "dls_x_total", Help: "h", Type: metrics.Counter, Labels: []string{"1op"}}, "invalid label name"},
		{metrics.Desc{Name: "dls_x_total", Help: "h", Type: metrics.Counter, Labels: []string{"o-p"}}, "invalid label name"},
		{metrics.Desc{Name: "dls_x_total", Help: "h", Type: metrics.Counter, Labels: []string{""}}, "invalid label name"},
	}
	for _, tc := range bad {
		err := tc.d.Validate()
		if err == nil {
			t.Errorf("Validate(%+v) = nil, want an error containing %q", tc.d, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %q, want it to contain %q", tc.d, err, tc.want)
		}
	}
}

// Prometheus needs histogram bounds strictly ascending and finite (+Inf is
// implicit): anything else either panics in client_golang when the plugin
// observes, or yields fewer bucket counts than declared, which the host's
// proxy refuses at every scrape.
func TestDescValidateRefusesBucketsPrometheusCannotUse(t *testing.T) {
	for _, buckets := range [][]float64{
		{1, 1},
		{0.1, 1, 1, 10},
		{1, math.Inf(1)},
		{math.NaN()},
	} {
		d := metrics.Desc{Name: "dls_latency_seconds", Help: "h", Type: metrics.Histogram, Buckets: buckets}
		if err := d.Validate(); err == nil {
			t.Errorf("Validate with buckets %v = nil, want an error", buckets)
		}
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[metrics.Type]string{
		metrics.Counter: "counter", metrics.Gauge: "gauge", metrics.Histogram: "histogram", metrics.Type(9): "type(9)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", int(typ), got, want)
		}
	}
}

func TestRegistryDescs(t *testing.T) {
	r := metrics.NewRegistry()
	r.Counter("dls_a_total", "A.", "zone", "app")
	r.Gauge("dls_b", "B.")
	r.Histogram("dls_c_seconds", "C.", []float64{0.5, 1}, "op")
	got, err := r.Descs()
	if err != nil {
		t.Fatal(err)
	}
	want := []metrics.Desc{
		{Name: "dls_a_total", Help: "A.", Type: metrics.Counter, Labels: []string{"zone", "app"}},
		{Name: "dls_b", Help: "B.", Type: metrics.Gauge},
		{Name: "dls_c_seconds", Help: "C.", Type: metrics.Histogram, Labels: []string{"op"}, Buckets: []float64{0.5, 1}},
	}
	if len(got) != len(want) {
		t.Fatalf("Descs() = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Help != w.Help || g.Type != w.Type || !slices.Equal(g.Labels, w.Labels) || !slices.Equal(g.Buckets, w.Buckets) {
			t.Errorf("Descs()[%d] = %+v, want %+v", i, g, w)
		}
	}

	// The registry keeps its own copy of the buckets.
	buckets := []float64{1, 2}
	r.Histogram("dls_d_seconds", "D.", buckets)
	buckets[0] = 100
	got, _ = r.Descs()
	if b := got[len(got)-1].Buckets; !slices.Equal(b, []float64{1, 2}) {
		t.Errorf("buckets after the caller changed its slice: %v, want [1 2]", b)
	}
}

func TestRegistryRecordsMistakesWithoutPanicking(t *testing.T) {
	r := metrics.NewRegistry()
	var c1, c2 any
	noPanic(t, "declare", func() {
		c1 = r.Counter("dls_requests_total", "Requests.", "op")
		c2 = r.Counter("dls_requests_total", "Requests again.", "op")
		r.Gauge("dls_bad_total", "A gauge named like a counter.")
		r.Counter("requests_total", "No prefix.")
		r.Gauge("dls_ok", "Fine.", "plugin")
	})
	if c1 == nil || c2 == nil {
		t.Fatal("Counter returned nil")
	}
	_, err := r.Descs()
	if err == nil {
		t.Fatal("Descs() = nil error after a duplicate and invalid declarations")
	}
	for _, want := range []string{
		"metric dls_requests_total declared twice",
		"dls_bad_total: a gauge's name must not end in _total",
		`"requests_total": name must match`,
		`label "plugin" is reserved`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Descs() error %q does not mention %q", err, want)
		}
	}
	// Collecting still works.
	fams, err := r.Collect()
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if len(fams) != 0 {
		t.Errorf("Collect() before any sample = %+v, want no families", fams)
	}
}

// A plugin with a declaration mistake must keep working ("the plugin keeps
// working and the host refuses the declaration"): the vectors the registry
// returned stay usable.
func TestRegistryInvalidDeclarationsStayUsable(t *testing.T) {
	r := metrics.NewRegistry()
	cases := []struct {
		name string
		use  func()
	}{
		{"counter without prefix", func() { r.Counter("requests_total", "h").WithLabelValues().Inc() }},
		{"counter with reserved label", func() { r.Counter("dls_a_total", "h", "plugin").WithLabelValues("x").Inc() }},
		{"gauge with duplicate label", func() { r.Gauge("dls_b", "h", "op", "op").WithLabelValues("x", "y").Set(1) }},
		{"histogram with descending buckets", func() { r.Histogram("dls_c_seconds", "h", []float64{2, 1}).WithLabelValues().Observe(1) }},
		{"histogram with label le", func() { r.Histogram("dls_d_seconds", "h", []float64{1}, "le").WithLabelValues("x").Observe(1) }},
		{"histogram declared twice", func() {
			r.Histogram("dls_e_seconds", "h", []float64{1})
			r.Histogram("dls_e_seconds", "h", []float64{1}).WithLabelValues().Observe(1)
		}},
	}
	for _, tc := range cases {
		noPanic(t, tc.name, tc.use)
	}
	if _, err := r.Descs(); err == nil {
		t.Error("Descs() = nil error, want the mistakes")
	}
}

func noPanic(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("%s: panic: %v", what, p)
		}
	}()
	fn()
}

func TestCollectLabelValuesInDeclaredOrder(t *testing.T) {
	r := metrics.NewRegistry()
	// Not alphabetical: Prometheus sorts label pairs by name internally.
	c := r.Counter("dls_requests_total", "Requests.", "zone", "method", "app")
	c.WithLabelValues("z1", "GET", "a1").Add(3)
	c.WithLabelValues("z2", "PUT", "a2").Inc()
	g := r.Gauge("dls_sessions", "Sessions.", "b", "a")
	g.WithLabelValues("bee", "ay").Set(7)

	fams, err := r.Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, s := range f.Samples {
			got[f.Name+"{"+strings.Join(s.LabelValues, ",")+"}"] = s.Value
		}
	}
	want := map[string]float64{
		"dls_requests_total{z1,GET,a1}": 3,
		"dls_requests_total{z2,PUT,a2}": 1,
		"dls_sessions{bee,ay}":          7,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Collect() = %v, want %v", got, want)
	}
}

func TestCollectHistogram(t *testing.T) {
	r := metrics.NewRegistry()
	h := r.Histogram("dls_latency_seconds", "Latency.", []float64{0.1, 1, 10}, "op")
	for _, v := range []float64{0.05, 0.1, 0.5, 5, 50} {
		h.WithLabelValues("read").Observe(v)
	}
	h.WithLabelValues("write") // a series with no observations

	fams, err := r.Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 1 || fams[0].Name != "dls_latency_seconds" || len(fams[0].Samples) != 2 {
		t.Fatalf("Collect() = %+v, want one family with two series", fams)
	}
	for _, s := range fams[0].Samples {
		var wantCounts []uint64
		var wantCount uint64
		var wantSum float64
		switch s.LabelValues[0] {
		case "read":
			// le=0.1 holds 0.05 and 0.1 (bounds are inclusive); cumulative.
			wantCounts, wantCount, wantSum = []uint64{2, 3, 4}, 5, 55.65
		case "write":
			wantCounts = []uint64{0, 0, 0}
		default:
			t.Fatalf("unexpected series %v", s.LabelValues)
		}
		if !slices.Equal(s.BucketCounts, wantCounts) {
			t.Errorf("%v: BucketCounts = %v, want %v (cumulative, one per declared bucket)", s.LabelValues, s.BucketCounts, wantCounts)
		}
		if s.Count != wantCount || math.Abs(s.Sum-wantSum) > 1e-9 {
			t.Errorf("%v: Count, Sum = %d, %g, want %d, %g", s.LabelValues, s.Count, s.Sum, wantCount, wantSum)
		}
		if s.Value != 0 {
			t.Errorf("%v: Value = %g, want 0 for a histogram", s.LabelValues, s.Value)
		}
	}
}

func TestCollectRunsOnCollectHooksFirst(t *testing.T) {
	r := metrics.NewRegistry()
	g := r.Gauge("dls_pool_free_bytes", "Free bytes.")
	var calls []string
	free := 0.0
	r.OnCollect(func() { calls = append(calls, "first"); free += 100; g.WithLabelValues().Set(free) })
	r.OnCollect(func() { calls = append(calls, "second") })

	for want := 100.0; want <= 200; want += 100 {
		fams, err := r.Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(fams) != 1 || len(fams[0].Samples) != 1 || fams[0].Samples[0].Value != want {
			t.Fatalf("Collect() = %+v, want dls_pool_free_bytes %g set by the hook", fams, want)
		}
	}
	if want := []string{"first", "second", "first", "second"}; !slices.Equal(calls, want) {
		t.Errorf("hooks ran %v, want %v", calls, want)
	}
}

// A hook may read the registry without deadlocking.
func TestOnCollectHookMayUseRegistry(t *testing.T) {
	r := metrics.NewRegistry()
	r.OnCollect(func() { _, _ = r.Descs() })
	if _, err := r.Collect(); err != nil {
		t.Fatal(err)
	}
}

func TestNilRegistry(t *testing.T) {
	var r *metrics.Registry
	if d, err := r.Descs(); d != nil || err != nil {
		t.Errorf("nil Descs() = %v, %v", d, err)
	}
	if f, err := r.Collect(); f != nil || err != nil {
		t.Errorf("nil Collect() = %v, %v", f, err)
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	r := metrics.NewRegistry()
	c := r.Counter("dls_requests_total", "Requests.", "op")
	r.OnCollect(func() {})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for range 200 {
				c.WithLabelValues(fmt.Sprint(i)).Inc()
			}
		})
		wg.Go(func() {
			for range 20 {
				if _, err := r.Collect(); err != nil {
					t.Error(err)
					return
				}
				r.OnCollect(func() {})
			}
		})
	}
	wg.Wait()
	fams, err := r.Collect()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, s := range fams[0].Samples {
		total += s.Value
	}
	if total != 800 {
		t.Errorf("total = %g, want 800", total)
	}
}
