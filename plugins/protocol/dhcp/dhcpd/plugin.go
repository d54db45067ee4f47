// Package dhcpd is the "dhcp" protocol plugin: DLS's DHCP server, with
// addresses from pools (full mode), PXE and iPXE boot answers beside the
// site's DHCP server (proxy mode) or for known clients only (reservation
// mode), and leases stored through the host before they are ACKed. See
// ../README.md.
//
// A packet moves through: server.serve reads it from a listener
// (socket.go), server.handle decodes it and asks the host for a decision,
// cached per MAC (handler.go, cache.go); an address comes from the
// in-memory lease table (leases.go), optionally probed with ICMP first
// (probe.go); the boot answer is built in pxe.go; an ACK waits for its
// lease to be committed through the host in a batch (sdk/host/leasecommit).
package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/host/clienttable"
	"github.com/dls-project/dls/sdk/host/leasecommit"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/hashicorp/go-hclog"
)

// Version of this plugin.
const Version = "0.1.0"

// Event batching: events leave at least this often, or at once when a
// batch is waiting; at most eventLimit wait (more are dropped, counted by
// the batcher).
const (
	eventInterval = 200 * time.Millisecond
	eventBatch    = 512
	eventLimit    = 65536
)

// sweepEvery is how often expired decisions and idle rate buckets are
// forgotten.
const sweepEvery = 30 * time.Second

// Plugin is the DHCP protocol plugin.
type Plugin struct {
	reg *metrics.Registry
	m   *dhcpMetrics

	mu        sync.Mutex
	set       *settings
	hs        host.Services
	logger    hclog.Logger
	run       *running // nil when not serving
	listeners []string
	message   string
}

// running is what one Start started, for Stop to end.
type running struct {
	srv       *server
	listeners []*listener
	batcher   *host.Batcher
	cancel    context.CancelFunc
	workers   sync.WaitGroup
}

var (
	_ protocol.Protocol    = (*Plugin)(nil)
	_ base.MetricsDeclarer = (*Plugin)(nil)
	_ base.HealthChecker   = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New() *Plugin {
	reg := metrics.NewRegistry()
	p := &Plugin{reg: reg, m: newMetrics(reg), logger: hclog.NewNullLogger()}
	reg.OnCollect(p.refreshGauges)
	return p
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info { return base.Info{Type: "dhcp", Version: Version} }

// NewConfig implements base.Plugin.
func (p *Plugin) NewConfig() any { return defaultConfig() }

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.reg }

// Configure implements base.Plugin.
func (p *Plugin) Configure(_ context.Context, req base.ConfigureRequest) error {
	c, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	set, err := check(*c)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.set, p.hs = set, req.Host
	if req.Logger != nil {
		p.logger = req.Logger
	}
	return nil
}

// Start implements protocol.Protocol: it loads the leases the host
// stored, opens the sockets and serves.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != nil {
		return errors.New("dhcp: already serving")
	}
	if p.set == nil {
		return errors.New("dhcp: not configured")
	}
	set := p.set
	if set.Mode == modeOff {
		p.message, p.listeners = "mode off: not answering", nil
		return nil
	}
	serverIP := set.serverIP
	if serverIP == 0 {
		a, err := interfaceAddress(set.Interface)
		if err != nil {
			return fmt.Errorf("dhcp: server address: %w", err)
		}
		serverIP = a
	}
	if set.Mode != modeProxy && p.hs.Leases == nil {
		return errors.New("dhcp: the host offers no lease service: modes full and reservation need it")
	}
	// Serving outlives the Start call, whose context ends when it
	// returns: the workers, the committer and the batcher run under its
	// values, not its cancellation, until Stop.
	serveCtx := context.WithoutCancel(ctx)
	srv := newServer(serveCtx, set, serverIP, p.hs, p.m, p.logger)
	run := &running{srv: srv}
	fail := func(err error) error {
		for _, l := range run.listeners {
			_ = l.close()
		}
		_ = srv.commits.Close(ctx)
		return fmt.Errorf("dhcp: %w", err)
	}
	if set.Mode != modeProxy {
		leases, err := p.hs.Leases.Load(ctx, "")
		if err != nil {
			return fail(fmt.Errorf("load leases: %w", err))
		}
		loaded, skipped := srv.table.load(leases)
		p.logger.Info("leases loaded", "loaded", loaded, "outside_pools", skipped)
	}
	l, err := listen(ctx, set.Interface, set.Port, set.ReceiveBuffer, false)
	if err != nil {
		return fail(err)
	}
	run.listeners = append(run.listeners, l)
	if set.Mode == modeProxy {
		pl, err := listen(ctx, set.Interface, set.ProxyPort, set.ReceiveBuffer/4, true)
		if err != nil {
			return fail(err)
		}
		run.listeners = append(run.listeners, pl)
	}
	lctx, cancel := context.WithCancel(serveCtx)
	run.cancel = cancel
	if set.ProbeTimeout > 0 && set.Mode != modeProxy {
		pr, err := newProber(set.ProbeTimeout)
		if err != nil {
			p.logger.Warn("ICMP probe off: no raw ICMP socket (needs CAP_NET_RAW)", "error", err)
		} else {
			srv.probe = pr
		}
	}
	srv.out = func(r reply) error { return r.conn.write(r) }
	if p.hs.Events != nil {
		run.batcher = host.NewBatcher(serveCtx, p.hs.Events, eventInterval, eventBatch, eventLimit)
		srv.events = run.batcher
	}
	locals := newInterfaceAddrs()
	p.listeners = nil
	for _, l := range run.listeners {
		n := set.Workers
		if l.proxy {
			n = max(1, n/8)
		}
		for range n {
			run.workers.Add(1)
			go func() {
				defer run.workers.Done()
				srv.serve(lctx, l, locals)
			}()
		}
		p.listeners = append(p.listeners, l.name)
	}
	go sweep(lctx, srv)
	if w, ok := p.hs.Clients.(host.ClientWatcher); ok && srv.known != nil {
		go srv.follow(lctx, w)
		srv.known.Wait(ctx, p.logger)
	}
	p.run = run
	p.message = fmt.Sprintf("mode %s, server %s, %d pools", set.Mode, serverIP, len(set.pools))
	p.logger.Info("serving", "mode", set.Mode, "server_ip", serverIP.String(), "sockets", p.listeners)
	return nil
}

// newServer builds the packet handler of one Start, its lease table
// empty and its committer running under ctx; the caller sets out (and
// events).
func newServer(ctx context.Context, set *settings, serverIP ip4, hs host.Services, m *dhcpMetrics, logger hclog.Logger) *server {
	return &server{
		set: set, serverIP: serverIP, table: newTable(set, serverIP),
		clients: hs.Clients, bindings: hs.Events, cache: newDecisions(set.ClientCache), known: clienttable.New(),
		limit: newLimiter(set.RateLimit, set.RateBurst), m: m, logger: logger,
		commits: leasecommit.New(ctx, hs.Leases, leasecommit.Options{Max: set.CommitBatch, Metrics: m.commit}),
	}
}

func sweep(ctx context.Context, srv *server) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			srv.cache.sweep(now)
			srv.limit.sweep(now)
		}
	}
}

// Stop implements protocol.Protocol: no new packets; leases waiting for
// their commit are stored and answered; events are sent.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	run := p.run
	p.run, p.listeners, p.message = nil, nil, "stopped"
	p.mu.Unlock()
	if run == nil {
		return nil
	}
	for _, l := range run.listeners {
		_ = l.close()
	}
	run.workers.Wait()
	run.cancel()
	var errs []error
	if err := run.srv.commits.Close(ctx); err != nil {
		errs = append(errs, err)
	}
	if run.srv.probe != nil {
		_ = run.srv.probe.close()
	}
	if run.batcher != nil {
		if err := run.batcher.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("send events: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Status implements protocol.Protocol.
func (p *Plugin) Status(context.Context) (protocol.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return protocol.Status{Serving: p.run != nil, Listeners: append([]string(nil), p.listeners...), Message: p.message}, nil
}

// Health implements base.HealthChecker: unhealthy while the host refuses
// to store leases (no ACK can leave).
func (p *Plugin) Health(context.Context) error {
	p.mu.Lock()
	run := p.run
	p.mu.Unlock()
	if run == nil {
		return nil
	}
	if err := run.srv.commits.Err(); err != nil {
		return fmt.Errorf("leases are not being stored, no ACK is sent: %w", err)
	}
	return nil
}

// refreshGauges sets the pool gauges at collection time.
func (p *Plugin) refreshGauges() {
	p.mu.Lock()
	run := p.run
	p.mu.Unlock()
	p.m.poolSize.Reset()
	p.m.poolActive.Reset()
	if run == nil {
		p.m.table.Report(nil)
		return
	}
	p.m.table.Report(run.srv.known)
	for _, st := range run.srv.table.stats() {
		p.m.poolSize.WithLabelValues(st.name).Set(float64(st.size))
		p.m.poolActive.WithLabelValues(st.name).Set(float64(st.active))
	}
}
