package plugintest_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/fakeprotocol"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/prometheus/client_golang/prometheus"
)

// echoConfig is the config of the test plugin.
type echoConfig struct {
	Greeting string        `hcl:"greeting,optional"`
	Port     int           `hcl:"port,optional"`
	Every    time.Duration `hcl:"every,optional"`
}

// echo is a tiny protocol plugin: a fakeprotocol.Mock that remembers its
// config, counts starts and reports a boot event when it starts.
type echo struct {
	*fakeprotocol.Mock
	reg    *metrics.Registry
	starts *prometheus.CounterVec

	mu      sync.Mutex
	cfg     echoConfig
	req     base.ConfigureRequest
	stopped int
}

func newEcho() *echo {
	p := &echo{reg: metrics.NewRegistry()}
	p.starts = p.reg.Counter("dls_echo_starts_total", "Times the echo plugin started.", "mode")
	p.Mock = &fakeprotocol.Mock{
		InfoFn:      func() base.Info { return base.Info{Type: "echo", Version: "1.2.3"} },
		NewConfigFn: func() any { return &echoConfig{Greeting: "hello", Port: 7} },
		ConfigureFn: func(_ context.Context, req base.ConfigureRequest) error {
			c := req.Config.(*echoConfig)
			if c.Port < 0 {
				return config.Errorf("port", "port %d is negative", c.Port)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			p.cfg, p.req = *c, req
			return nil
		},
		StartFn: func(ctx context.Context) error {
			p.starts.WithLabelValues("test").Inc()
			p.mu.Lock()
			events := p.req.Host.Events
			p.mu.Unlock()
			return events.Report(ctx, []host.Event{{
				Type: host.EventDHCPDiscover, MAC: "52:54:00:12:34:56", Attrs: map[string]string{"arch": "7"},
			}})
		},
		StopFn: func(context.Context) error {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.stopped++
			return nil
		},
	}
	return p
}

// Metrics implements base.MetricsDeclarer.
func (p *echo) Metrics() *metrics.Registry { return p.reg }

func (p *echo) state() (echoConfig, base.ConfigureRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cfg, p.req
}

func TestConfigureReachesPlugin(t *testing.T) {
	p := newEcho()
	h := plugintest.Start(t, p, plugintest.WithConfig(map[string]any{"port": 6969, "every": "90s"}), plugintest.WithInstance("lan"))

	cfg, req := p.state()
	want := echoConfig{Greeting: "hello", Port: 6969, Every: 90 * time.Second}
	if cfg != want {
		t.Errorf("plugin got config %+v, want %+v (defaults kept, values decoded)", cfg, want)
	}
	if req.Instance != "lan" || req.DataDir != h.DataDir || req.DataDir == "" {
		t.Errorf("plugin got instance %q, data dir %q; want \"lan\", %q", req.Instance, req.DataDir, h.DataDir)
	}
	if req.Host.Clients == nil || req.Host.Events == nil || req.Host.Volumes == nil || req.Host.Leases == nil {
		t.Errorf("plugin got host services %+v, want all four", req.Host)
	}
	if h.Info.Kind != base.KindProtocol || h.Info.Type != "echo" || h.Info.Version != "1.2.3" {
		t.Errorf("Info = %+v", h.Info)
	}
	if h.Protocol() == nil {
		t.Fatal("Protocol() = nil")
	}
}

func TestConfigErrors(t *testing.T) {
	h := plugintest.Start(t, newEcho(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"port": -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Path != "port" {
		t.Errorf("Configure with a negative port: %v, want one error at \"port\"", errs)
	}
	errs, err = h.Configure(map[string]any{"colour": "blue", "every": "soon"})
	if err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, e := range errs {
		paths[e.Path] = true
	}
	if !paths["colour"] || !paths["every"] {
		t.Errorf("Configure with an unknown key and a bad duration: %v, want errors at \"colour\" and \"every\"", errs)
	}
}

func TestMetricsAndEvents(t *testing.T) {
	p := newEcho()
	h := plugintest.Start(t, p)

	descs, err := h.Base.DescribeMetrics(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(descs) != 1 || descs[0].Name != "dls_echo_starts_total" || descs[0].Type != metrics.Counter ||
		len(descs[0].Labels) != 1 || descs[0].Labels[0] != "mode" {
		t.Errorf("DescribeMetrics = %+v", descs)
	}

	for range 2 {
		if err := h.Protocol().Start(t.Context()); err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	if got := h.MetricValue(t, "dls_echo_starts_total", "test"); got != 2 {
		t.Errorf("dls_echo_starts_total{mode=test} = %v, want 2", got)
	}
	if _, ok := h.MetricSample(t, "dls_echo_starts_total", "other"); ok {
		t.Errorf("found a series with a label value never used")
	}

	e := h.Host.WaitEvent(t, host.EventDHCPDiscover, 5*time.Second)
	if e.MAC != "52:54:00:12:34:56" || e.Attrs["arch"] != "7" || e.Time.IsZero() {
		t.Errorf("event = %+v", e)
	}
	if n := len(h.Host.Events()); n != 2 {
		t.Errorf("%d events recorded, want 2", n)
	}

	if err := h.Protocol().Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	p.mu.Lock()
	stopped := p.stopped
	p.mu.Unlock()
	if stopped != 1 {
		t.Errorf("plugin stopped %d times, want 1", stopped)
	}
}

// TestHostServicesOverBroker calls every fake host service from the plugin's
// side of the broker, as a plugin would.
func TestHostServicesOverBroker(t *testing.T) {
	fh := plugintest.NewFakeHost()
	fh.SetClient("52-54-00-AA-BB-CC", host.Decision{Client: "pc-01", TargetIQN: "iqn.t:pc-01", InitiatorIQN: "iqn.i:pc-01"})
	fh.PutLease(host.Lease{Pool: "lan", Address: "10.0.0.5", MAC: "52:54:00:00:00:01", State: host.LeaseBound, Expires: time.Now().Add(time.Hour)})
	p := newEcho()
	plugintest.Start(t, p, plugintest.WithHost(fh))
	_, req := p.state()
	svc, ctx := req.Host, t.Context()

	d, err := svc.Clients.Lookup(ctx, host.Query{MAC: "52:54:00:aa:bb:cc"})
	if err != nil || !d.Known || d.Client != "pc-01" {
		t.Errorf("Lookup by MAC = %+v, %v; want known pc-01", d, err)
	}
	d, err = svc.Clients.Lookup(ctx, host.Query{Initiator: "iqn.i:pc-01", Target: "iqn.t:pc-01"})
	if err != nil || d.Client != "pc-01" {
		t.Errorf("Lookup by IQN = %+v, %v; want pc-01", d, err)
	}
	if d, err := svc.Clients.Lookup(ctx, host.Query{MAC: "52:54:00:00:00:99"}); err != nil || d.Known {
		t.Errorf("Lookup of an unknown MAC = %+v, %v; want unknown, no error", d, err)
	}
	if n := len(fh.Lookups()); n != 3 {
		t.Errorf("%d lookups recorded, want 3", n)
	}

	if err := svc.Events.Report(ctx, []host.Event{{Type: "dhcp_bogus"}}); err == nil {
		t.Errorf("Report of an unknown event type succeeded")
	}

	if _, err := svc.Volumes.Attach(ctx, "pc-01"); err == nil {
		t.Errorf("Attach without an attach function succeeded")
	}

	ls, err := svc.Leases.Load(ctx, "lan")
	if err != nil || len(ls) != 1 || ls[0].Address != "10.0.0.5" {
		t.Errorf("Load = %+v, %v", ls, err)
	}
	exp := time.Now().Add(time.Hour)
	rs, err := svc.Leases.Commit(ctx, []host.Lease{
		{Pool: "lan", Address: "10.0.0.5", MAC: "52:54:00:00:00:02", State: host.LeaseBound, Expires: exp},
		{Pool: "lan", Address: "10.0.0.6", MAC: "52:54:00:00:00:02", State: host.LeaseBound, Expires: exp},
		{Pool: "lan", Address: "10.0.0.6", MAC: "52:54:00:00:00:03", State: host.LeaseBound, Expires: exp},
		{Pool: "lan", Address: "10.0.0.5", MAC: "52:54:00:00:00:01", State: host.LeaseReleased, Expires: exp},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []host.CommitResult{{Holder: "52:54:00:00:00:01"}, {OK: true}, {Holder: "52:54:00:00:00:02"}, {OK: true}}
	for i := range want {
		if rs[i] != want[i] {
			t.Errorf("Commit answer %d = %+v, want %+v", i, rs[i], want[i])
		}
	}
	// Released: another MAC may take it now.
	rs, err = svc.Leases.Commit(ctx, []host.Lease{{Pool: "lan", Address: "10.0.0.5", MAC: "52:54:00:00:00:02", State: host.LeaseBound, Expires: exp}})
	if err != nil || !rs[0].OK {
		t.Errorf("Commit of a released address = %+v, %v; want OK", rs, err)
	}
	if n := len(fh.Leases()); n != 2 {
		t.Errorf("%d leases stored, want 2", n)
	}
}

func TestFakeHostAttach(t *testing.T) {
	fh := plugintest.NewFakeHost()
	want := volume.Descriptor{Format: volume.FormatRaw, Paths: []string{"/dev/null"}, Size: 512}
	fh.SetAttach(func(_ context.Context, client string) (volume.Descriptor, error) {
		if client != "pc-01" {
			return volume.Descriptor{}, errors.New("no such client")
		}
		return want, nil
	})
	p := newEcho()
	plugintest.Start(t, p, plugintest.WithHost(fh))
	_, req := p.state()
	ctx := t.Context()

	d, err := req.Host.Volumes.Attach(ctx, "pc-01")
	if err != nil || d.Paths[0] != "/dev/null" || d.Size != 512 || d.Format != volume.FormatRaw {
		t.Errorf("Attach = %+v, %v; want %+v", d, err, want)
	}
	if _, err := req.Host.Volumes.Attach(ctx, "pc-02"); err == nil {
		t.Errorf("Attach of pc-02 succeeded")
	}
	if got := fh.Attached(); len(got) != 1 || got[0] != "pc-01" {
		t.Errorf("Attached = %v, want [pc-01]", got)
	}
	if err := req.Host.Volumes.Detach(ctx, "pc-01"); err != nil {
		t.Errorf("Detach: %v", err)
	}
	if err := req.Host.Volumes.Detach(ctx, "pc-01"); err == nil {
		t.Errorf("second Detach succeeded")
	}
	if got := fh.Attached(); len(got) != 0 {
		t.Errorf("Attached = %v after Detach, want none", got)
	}
}
