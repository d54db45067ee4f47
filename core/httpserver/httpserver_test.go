package httpserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/httpserver"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/prometheus/client_golang/prometheus"
)

// readiness is a fake Readiness.
type readiness struct {
	plugins  []supervisor.Status
	storeErr error
	storeCtx chan context.Context
	hang     bool // Store waits for its context to end
}

func (r *readiness) Plugins() []supervisor.Status { return r.plugins }

func (r *readiness) Store(ctx context.Context) error {
	if r.storeCtx != nil {
		r.storeCtx <- ctx
	}
	if r.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return r.storeErr
}

func healthy(name string) supervisor.Status {
	return supervisor.Status{Name: name, Kind: "protocol", Type: "tftp", State: "running", Healthy: true, Pid: 42}
}

func serve(t *testing.T, g prometheus.Gatherer, r httpserver.Readiness) *httptest.Server {
	t.Helper()
	if g == nil {
		g = prometheus.NewRegistry()
	}
	srv := httptest.NewServer(httpserver.Handler(g, r, time.Second))
	t.Cleanup(srv.Close)
	return srv
}

// client bounds every request, so a handler that hangs fails its test.
var client = &http.Client{Timeout: 30 * time.Second}

func do(t *testing.T, method, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

type readyzAnswer struct {
	Ready    bool                `json:"ready"`
	Store    string              `json:"store"`
	Plugins  []supervisor.Status `json:"plugins"`
	NotReady []string            `json:"not_ready"`
}

func readyz(t *testing.T, url string) (int, readyzAnswer) {
	t.Helper()
	code, h, body := do(t, http.MethodGet, url+"/readyz")
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("/readyz Content-Type %q", ct)
	}
	var a readyzAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	return code, a
}

func TestHealthz(t *testing.T) {
	// Liveness does not depend on plugins or the store.
	srv := serve(t, nil, &readiness{storeErr: errors.New("down"), plugins: []supervisor.Status{{Name: "x", State: "failed"}}})
	code, h, body := do(t, http.MethodGet, srv.URL+"/healthz")
	if code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	if h.Get("Content-Type") != "application/json" || !strings.Contains(body, `"alive"`) {
		t.Errorf("/healthz: %s %q", h.Get("Content-Type"), body)
	}
}

func TestReadyzAllGood(t *testing.T) {
	r := &readiness{plugins: []supervisor.Status{healthy("tftp"), healthy("files")}, storeCtx: make(chan context.Context, 1)}
	srv := serve(t, nil, r)
	code, a := readyz(t, srv.URL)
	if code != http.StatusOK || !a.Ready || a.Store != "ok" || len(a.NotReady) != 0 {
		t.Errorf("/readyz = %d %+v, want 200 ready", code, a)
	}
	if len(a.Plugins) != 2 || !reflect.DeepEqual(a.Plugins[0], healthy("tftp")) {
		t.Errorf("plugins %+v, want both lines as given", a.Plugins)
	}
	ctx := <-r.storeCtx
	if _, ok := ctx.Deadline(); !ok {
		t.Error("the store ping has no deadline")
	}
}

// /readyz shows what readiness depends on: a status's version,
// capabilities and time of the last change are the admin API's.
func TestReadyzLine(t *testing.T) {
	st := healthy("tftp")
	st.Version, st.Capabilities, st.Since = "1.2.3", []string{"promote"}, time.Now()
	srv := serve(t, nil, &readiness{plugins: []supervisor.Status{st}})
	_, _, body := do(t, http.MethodGet, srv.URL+"/readyz")
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(body)); err != nil {
		t.Fatalf("/readyz body %q: %v", body, err)
	}
	want := `"plugins":[{"name":"tftp","kind":"protocol","type":"tftp","state":"running","healthy":true,"pid":42,"restarts":0}]`
	if !strings.Contains(compact.String(), want) {
		t.Errorf("/readyz body %s, want %s", compact.String(), want)
	}
}

func TestReadyzNoPlugins(t *testing.T) {
	srv := serve(t, nil, &readiness{})
	if code, a := readyz(t, srv.URL); code != http.StatusOK || !a.Ready {
		t.Errorf("/readyz with no plugins = %d %+v, want 200", code, a)
	}
}

func TestReadyzNotReady(t *testing.T) {
	cases := []struct {
		name      string
		r         *readiness
		notReady  []string
		storeText string
	}{
		{"plugin starting", &readiness{plugins: []supervisor.Status{healthy("tftp"), {Name: "dhcp", State: "starting"}}},
			[]string{"dhcp"}, "ok"},
		{"plugin unhealthy", &readiness{plugins: []supervisor.Status{{Name: "tftp", State: "running", Healthy: false}, healthy("files")}},
			[]string{"tftp"}, "ok"},
		{"plugin failed", &readiness{plugins: []supervisor.Status{{Name: "files", State: "failed", LastError: "binary not found"}}},
			[]string{"files"}, "ok"},
		{"store down", &readiness{plugins: []supervisor.Status{healthy("tftp")}, storeErr: errors.New("database is locked")},
			[]string{"store"}, "database is locked"},
		{"everything down", &readiness{plugins: []supervisor.Status{{Name: "a", State: "backoff"}, {Name: "b", State: "stopped"}}, storeErr: errors.New("closed")},
			[]string{"store", "a", "b"}, "closed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, nil, tc.r)
			code, a := readyz(t, srv.URL)
			if code != http.StatusServiceUnavailable || a.Ready {
				t.Errorf("/readyz = %d ready=%v, want 503 not ready", code, a.Ready)
			}
			if !slices.Equal(a.NotReady, tc.notReady) {
				t.Errorf("not_ready = %q, want %q", a.NotReady, tc.notReady)
			}
			if a.Store != tc.storeText {
				t.Errorf("store = %q, want %q", a.Store, tc.storeText)
			}
			if len(a.Plugins) != len(tc.r.plugins) {
				t.Errorf("plugins %+v, want all %d listed", a.Plugins, len(tc.r.plugins))
			}
		})
	}
}

// A store that does not answer makes /readyz answer 503, not hang.
func TestReadyzStoreHangs(t *testing.T) {
	srv := serve(t, nil, &readiness{plugins: []supervisor.Status{healthy("tftp")}, hang: true})
	code, a := readyz(t, srv.URL)
	if code != http.StatusServiceUnavailable || !slices.Equal(a.NotReady, []string{"store"}) ||
		!strings.Contains(a.Store, context.DeadlineExceeded.Error()) {
		t.Errorf("/readyz with a hung store = %d %+v, want 503 naming the store", code, a)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dls_test_requests_total", Help: "Requests."}, []string{"op"})
	reg.MustRegister(c)
	c.WithLabelValues("read").Add(3)
	srv := serve(t, reg, &readiness{})
	code, h, body := do(t, http.MethodGet, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d: %s", code, body)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("/metrics Content-Type %q", h.Get("Content-Type"))
	}
	if !strings.Contains(body, `dls_test_requests_total{op="read"} 3`) {
		t.Errorf("/metrics lacks the registry's series:\n%s", body)
	}
}

// A broken family must not hide the rest of the scrape.
func TestMetricsContinuesOnError(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dls_test_ok", Help: "Fine."})
	g.Set(1)
	reg.MustRegister(g, brokenCollector{})
	srv := serve(t, reg, &readiness{})
	code, _, body := do(t, http.MethodGet, srv.URL+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "dls_test_ok 1") {
		t.Errorf("/metrics with a broken collector = %d:\n%s\nwant 200 with the good series", code, body)
	}
}

var brokenDesc = prometheus.NewDesc("dls_test_broken", "Broken.", nil, nil)

type brokenCollector struct{}

func (brokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- brokenDesc }
func (brokenCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(brokenDesc, errors.New("plugin sent garbage"))
}

func TestMethodsAndPaths(t *testing.T) {
	srv := serve(t, nil, &readiness{})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodDelete, "/metrics", http.StatusMethodNotAllowed},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed},
		{http.MethodPut, "/readyz", http.StatusMethodNotAllowed},
		{http.MethodGet, "/nope", http.StatusNotFound},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodHead, "/healthz", http.StatusOK},
	} {
		code, h, _ := do(t, tc.method, srv.URL+tc.path)
		if code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, code, tc.want)
		}
		if code == http.StatusMethodNotAllowed && !strings.Contains(h.Get("Allow"), "GET") {
			t.Errorf("%s %s: Allow %q, want GET", tc.method, tc.path, h.Get("Allow"))
		}
	}
}
