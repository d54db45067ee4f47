package plugintest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
)

// Timeouts the harness waits for a plugin, at most.
const (
	// startTimeout bounds how long the in-process server may take to listen.
	startTimeout = 10 * time.Second
	// callTimeout bounds each call the harness itself makes (Configure,
	// Stop, metrics).
	callTimeout = 30 * time.Second
	// stopGrace is the drain period given to the plugin's Stop at cleanup.
	stopGrace = 5 * time.Second
)

// Harness is a plugin served in the test process and the host's view of it.
// Start returns one; its fields are ready to use.
type Harness struct {
	// Base is the host's client of the plugin's base service.
	Base *BaseClient
	// Kind is the host's client of the plugin's kind; Storage, Protocol and
	// Auth return it typed.
	Kind baserpc.KindClient
	// Host is the fake host whose services the plugin was given.
	Host *FakeHost
	// Info is what the plugin answered to Info, with kind and capabilities
	// filled in by the SDK.
	Info base.Info
	// Instance is the instance name sent in Configure.
	Instance string
	// DataDir is the data directory sent in Configure.
	DataDir string

	t        testing.TB
	hostOnce sync.Once
	hostID   uint32
	stopOnce sync.Once
	stop     func()
}

// Stop stops the plugin now, as Start's cleanup would at the end of the
// test: it asks the plugin to stop (Base Stop, with a grace period), closes
// the connection and waits for the server to exit. Later calls, and the
// cleanup, do nothing. Use it to restart a plugin within a test: Stop, then
// Start a new instance on the same data directory.
func (h *Harness) Stop() { h.stopOnce.Do(h.stop) }

// Option changes how Start runs a plugin.
type Option func(*options)

type options struct {
	config    map[string]any
	configure bool
	host      *FakeHost
	instance  string
	dataDir   string
	logger    hclog.Logger
}

// WithConfig sets the plugin's config, as the host would send it after
// decoding the plugin's config {} block: attribute names as keys, durations
// as strings ("90s"), nested blocks as objects, blocks that repeat as lists
// of objects. The default is an empty config, so the plugin's defaults.
func WithConfig(cfg map[string]any) Option {
	return func(o *options) { o.config = cfg }
}

// WithoutConfigure makes Start skip Configure: the test calls
// Harness.Configure itself, for example to look at config errors.
func WithoutConfigure() Option {
	return func(o *options) { o.configure = false }
}

// WithHost gives the plugin this fake host instead of a new, empty one, so
// that the test can fill it (clients, leases, an attach function) before the
// plugin is configured.
func WithHost(h *FakeHost) Option {
	return func(o *options) { o.host = h }
}

// WithInstance sets the instance name sent in Configure (default "test").
func WithInstance(name string) Option {
	return func(o *options) { o.instance = name }
}

// WithDataDir sets the data directory sent in Configure (default: a new
// t.TempDir()).
func WithDataDir(dir string) Option {
	return func(o *options) { o.dataDir = dir }
}

// WithLogger sets the logger the plugin side logs to (default: the test
// log, at Debug level).
func WithLogger(l hclog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// Start serves impl in the test process the way sdk.Serve would in a plugin
// binary, connects to it through go-plugin as the host does, dispenses the
// plugin's kind, offers it a FakeHost over the broker, checks that its
// config schema and metric declarations are ones the host accepts, and
// configures it (see WithConfig and WithoutConfigure). Any failure fails
// the test at once.
//
// Start registers a cleanup that asks the plugin to stop (Base Stop, with a
// grace period: plugins must tolerate a Stop after the test's own Stop),
// closes the connection and waits for the server to exit; Harness.Stop
// does the same earlier.
//
// Call Start, and the Harness methods that take no testing.TB, from the
// goroutine of the test t.
func Start(t testing.TB, impl base.Plugin, opts ...Option) *Harness {
	t.Helper()
	o := options{configure: true, instance: "test"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.host == nil {
		o.host = NewFakeHost()
	}
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	logOut := newTestWriter(t)
	t.Cleanup(logOut.close) // registered first: runs last
	if o.logger == nil {
		o.logger = hclog.New(&hclog.LoggerOptions{Name: "plugin", Output: logOut, Level: hclog.Debug})
	}

	kind, ok := kindOf(impl)
	if !ok {
		t.Fatalf("plugintest: %T implements no plugin kind (protocol.Protocol, storage.Storage or auth.Auth)", impl)
	}
	cfg, err := pluginrpc.ServeConfig(impl, o.logger)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}

	// The server outlives t's context, which ends before the cleanups
	// run: the cleanup stops the plugin through it, then cancels it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	reattach := make(chan *plugin.ReattachConfig, 1)
	closed := make(chan struct{})
	cfg.Test = &plugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed}
	go plugin.Serve(cfg)

	var rc *plugin.ReattachConfig
	select {
	case rc = <-reattach:
	case <-closed:
		cancel()
		t.Fatalf("plugintest: plugin server of %T exited before serving (see the log)", impl)
	case <-time.After(startTimeout):
		cancel()
		t.Fatalf("plugintest: plugin server of %T did not start within %s", impl, startTimeout)
	}
	// go-plugin's default reattach runner finds the plugin by pid, which
	// here is the test process itself: use one that only watches the server.
	rc.ReattachFunc = func() (runner.AttachedRunner, error) { return inProcess{closed: closed, stop: cancel}, nil }

	// In reattach mode go-plugin dispenses from Plugins, not from
	// VersionedPlugins: give it the set of the version the server chose.
	hostPlugins := pluginrpc.HostPlugins()
	if hostPlugins[rc.ProtocolVersion] == nil {
		cancel()
		<-closed
		t.Fatalf("plugintest: plugin serves protocol version %d, the SDK's host side speaks %d", rc.ProtocolVersion, base.ProtocolVersion)
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  pluginrpc.Handshake,
		VersionedPlugins: hostPlugins,
		Plugins:          hostPlugins[rc.ProtocolVersion],
		Reattach:         rc,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "host", Output: logOut, Level: hclog.Warn}),
	})
	var rpc plugin.ClientProtocol
	stop := func() {
		defer cancel()
		if rpc != nil {
			// Closing the connection shuts the server down. (client.Kill
			// does not close a test-mode connection.) Cancelling the
			// server's context at the same time would race inside
			// go-plugin, so that is only the fallback.
			_ = rpc.Close()
			select {
			case <-closed:
				return
			case <-time.After(startTimeout):
			}
		}
		cancel()
		select {
		case <-closed:
		case <-time.After(startTimeout):
			t.Errorf("plugintest: plugin server of %T did not exit within %s", impl, startTimeout)
		}
	}
	if rpc, err = client.Client(); err != nil {
		stop()
		t.Fatalf("plugintest: connect to plugin: %v", err)
	}
	raw, err := rpc.Dispense(kind)
	if err != nil {
		stop()
		t.Fatalf("plugintest: dispense %s plugin: %v", kind, err)
	}
	kc, ok := raw.(baserpc.KindClient)
	if !ok {
		stop()
		t.Fatalf("plugintest: dispensed %T, not a baserpc.KindClient", raw)
	}

	h := &Harness{
		Base: kc.Base(), Kind: kc, Host: o.host,
		Instance: o.instance, DataDir: o.dataDir, t: t,
	}
	h.stop = func() {
		// Usually run as a cleanup, after t's context has ended.
		sctx, scancel := context.WithTimeout(context.WithoutCancel(t.Context()), stopGrace+callTimeout)
		defer scancel()
		if err := h.Base.Stop(sctx, stopGrace); err != nil {
			t.Errorf("plugintest: %v", err)
		}
		stop()
	}
	t.Cleanup(h.Stop)

	h.checkBase(kind)
	if o.configure {
		errs, err := h.Configure(o.config)
		if err != nil {
			t.Fatalf("plugintest: %v", err)
		}
		if len(errs) > 0 {
			t.Fatalf("plugintest: plugin refused its config:\n%s", diagnosticLines(errs))
		}
	}
	return h
}

// checkBase asks the plugin what the host asks at start and fails the test
// on answers the host would refuse.
func (h *Harness) checkBase(kind string) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), callTimeout)
	defer cancel()
	info, err := h.Base.Info(ctx)
	if err != nil {
		h.t.Fatalf("plugintest: %v", err)
	}
	if info.Kind != kind {
		h.t.Fatalf("plugintest: plugin says its kind is %q, dispensed as %q", info.Kind, kind)
	}
	if info.Type == "" {
		h.t.Fatalf("plugintest: plugin's Info has an empty Type (the type named in HCL)")
	}
	h.Info = info
	if _, err := h.Base.ConfigSchema(ctx); err != nil {
		h.t.Fatalf("plugintest: %v", err)
	}
	if _, err := h.Base.DescribeMetrics(ctx); err != nil {
		h.t.Fatalf("plugintest: %v", err)
	}
}

// Configure sends cfg (see WithConfig; nil is an empty config) to the
// plugin with the harness's instance name, data directory and fake host, as
// the host does at start and on every reload, under the context of the
// test Start was given. The plugin's config errors come back as
// config.Errors; a failed call as error.
func (h *Harness) Configure(cfg map[string]any) (config.Errors, error) {
	data := []byte("{}")
	if cfg != nil {
		var err error
		if data, err = json.Marshal(cfg); err != nil {
			return nil, fmt.Errorf("encode config as JSON: %w", err)
		}
	}
	// Offer the host services on first use: the plugin dials them during
	// Configure, and a broker id nobody dials only logs an error at close.
	h.hostOnce.Do(func() { h.hostID = h.Base.ServeHost(h.Host.Services()) })
	ctx, cancel := context.WithTimeout(h.t.Context(), callTimeout)
	defer cancel()
	return h.Base.Configure(ctx, baserpc.ConfigureArgs{
		ConfigJSON: data, HostID: h.hostID, Instance: h.Instance, DataDir: h.DataDir,
	})
}

// Storage returns the storage client, failing the test if the plugin is of
// another kind.
func (h *Harness) Storage() *StorageClient {
	h.t.Helper()
	c, ok := h.Kind.(*StorageClient)
	if !ok {
		h.t.Fatalf("plugintest: the plugin is a %s plugin, not storage", h.Info.Kind)
	}
	return c
}

// Protocol returns the protocol client, failing the test if the plugin is of
// another kind.
func (h *Harness) Protocol() *ProtocolClient {
	h.t.Helper()
	c, ok := h.Kind.(*ProtocolClient)
	if !ok {
		h.t.Fatalf("plugintest: the plugin is a %s plugin, not protocol", h.Info.Kind)
	}
	return c
}

// Auth returns the auth client, failing the test if the plugin is of
// another kind.
func (h *Harness) Auth() *AuthClient {
	h.t.Helper()
	c, ok := h.Kind.(*AuthClient)
	if !ok {
		h.t.Fatalf("plugintest: the plugin is a %s plugin, not auth", h.Info.Kind)
	}
	return c
}

// Metrics collects the plugin's samples through CollectMetrics, as the host
// does on a scrape, and returns them by family, failing t on error. Families
// the plugin declared but never touched may be absent.
func (h *Harness) Metrics(t testing.TB) []metrics.Family {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	defer cancel()
	r, err := h.Base.CollectMetrics(ctx)
	if err != nil {
		t.Fatalf("plugintest: %v", err)
	}
	out := make([]metrics.Family, len(r.GetFamilies()))
	for i, f := range r.GetFamilies() {
		out[i] = metrics.Family{Name: f.GetName(), Samples: make([]metrics.Sample, len(f.GetSamples()))}
		for j, s := range f.GetSamples() {
			out[i].Samples[j] = metrics.Sample{
				LabelValues: s.GetLabelValues(), Value: s.GetValue(),
				Count: s.GetCount(), Sum: s.GetSum(), BucketCounts: s.GetBucketCounts(),
			}
		}
	}
	return out
}

// MetricSample collects the plugin's metrics and returns the series of
// family name with the given label values (in declaration order), and
// whether it exists.
func (h *Harness) MetricSample(t testing.TB, name string, labelValues ...string) (metrics.Sample, bool) {
	t.Helper()
	for _, f := range h.Metrics(t) {
		if f.Name != name {
			continue
		}
		for _, s := range f.Samples {
			if slices.Equal(s.LabelValues, labelValues) {
				return s, true
			}
		}
	}
	return metrics.Sample{}, false
}

// MetricValue returns the value of a counter or gauge series, failing t if
// the series does not exist.
func (h *Harness) MetricValue(t testing.TB, name string, labelValues ...string) float64 {
	t.Helper()
	s, ok := h.MetricSample(t, name, labelValues...)
	if !ok {
		t.Fatalf("plugintest: no metric series %s%s", name, formatLabels(labelValues))
	}
	return s.Value
}

// WaitMetric polls the plugin's metrics until the series of family name
// with the given label values satisfies ok, and fails t after 10 s with the
// last sample seen. Plugins usually count a request after their reply has
// left, so a test that has just read the reply must wait for the count.
func (h *Harness) WaitMetric(t testing.TB, ok func(metrics.Sample) bool, name string, labelValues ...string) metrics.Sample {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, found := h.MetricSample(t, name, labelValues...)
		if found && ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugintest: %s%s never reached the wanted value; last %+v (found %v)", name, formatLabels(labelValues), s, found)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitMetricValue waits until a counter or gauge series equals want.
func (h *Harness) WaitMetricValue(t testing.TB, want float64, name string, labelValues ...string) {
	t.Helper()
	h.WaitMetric(t, func(s metrics.Sample) bool { return s.Value == want }, name, labelValues...)
}

func formatLabels(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return "{" + strings.Join(values, ",") + "}"
}

func diagnosticLines(errs config.Errors) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\t%s\n", e.Error())
	}
	return b.String()
}

// kindOf names impl's kind, in the order pluginrpc.ServeConfig checks them.
func kindOf(impl base.Plugin) (string, bool) {
	switch impl.(type) {
	case protocol.Protocol:
		return base.KindProtocol, true
	case storage.Storage:
		return base.KindStorage, true
	case auth.Auth:
		return base.KindAuth, true
	}
	return "", false
}

// inProcess is the go-plugin runner of a plugin served in this process: it
// waits for the server to exit and stops it by cancelling its context.
type inProcess struct {
	closed <-chan struct{}
	stop   context.CancelFunc
}

func (r inProcess) Wait(ctx context.Context) error {
	select {
	case <-r.closed:
	case <-ctx.Done():
	}
	return nil
}

func (r inProcess) Kill(context.Context) error {
	r.stop()
	<-r.closed
	return nil
}

func (r inProcess) ID() string { return "plugintest" }

func (r inProcess) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r inProcess) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

// testWriter sends log lines to t.Log until the test ends; after that (a
// plugin goroutine logging late) they are dropped, since t.Log would panic.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestWriter(t testing.TB) *testWriter { return &testWriter{t: t} }

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
