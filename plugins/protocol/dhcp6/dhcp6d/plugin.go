// Package dhcp6d is the "dhcp6" protocol plugin: DLS's DHCPv6 server, with
// addresses (IA_NA) from pools and PXE, UEFI HTTP boot and iPXE answers
// over IPv6 (full mode), or the boot answers alone beside the site's
// DHCPv6 server (proxy mode), and leases stored through the host before
// they are replied. Router advertisements stay the network's job. See
// ../README.md.
//
// A packet moves through: server.serve reads it from the socket
// (socket.go); server.handle decodes it, unwraps its relays, finds the
// client's MAC (client.go) and asks who it is (known.go, the host's
// pushed client table); an address comes from the in-memory lease table
// (leases.go); the boot-file URL is built in client.go; a Reply that
// binds waits for its lease to be committed through the host in a batch
// (sdk/host/leasecommit).
package dhcp6d

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
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

// commitGather is how long the first lease of a batch waits for others
// (leasecommit.Options.Gather).
const commitGather = time.Millisecond

// Plugin is the DHCPv6 protocol plugin.
type Plugin struct {
	reg *metrics.Registry
	m   *v6Metrics

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
	srv      *server
	listener *listener
	batcher  *host.Batcher
	cancel   context.CancelFunc
	workers  sync.WaitGroup
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
func (p *Plugin) Info() base.Info { return base.Info{Type: "dhcp6", Version: Version} }

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
// stored, opens the socket and serves.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.run != nil {
		return errors.New("dhcp6: already serving")
	}
	if p.set == nil {
		return errors.New("dhcp6: not configured")
	}
	set := p.set
	if set.Mode == modeOff {
		p.message, p.listeners = "mode off: not answering", nil
		return nil
	}
	mac, global, err := interfaceIdentity(set.Interface)
	if err != nil {
		return fmt.Errorf("dhcp6: %w", err)
	}
	if len(mac) != 6 {
		return fmt.Errorf("dhcp6: interface %s has no Ethernet address for the server's DUID-LL", set.Interface)
	}
	serverIP := set.serverIP
	if !serverIP.IsValid() {
		serverIP = global // may stay invalid: then no tftp:// URLs, logged below
	}
	if set.Mode == modeFull && p.hs.Leases == nil {
		return errors.New("dhcp6: the host offers no lease service: mode full needs it")
	}
	serveCtx := context.WithoutCancel(ctx)
	duid := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: mac}
	srv := newServer(serveCtx, set, duid, serverIP, p.hs, p.m, p.logger)
	run := &running{srv: srv}
	fail := func(err error) error {
		if run.listener != nil {
			_ = run.listener.close()
		}
		_ = srv.commits.Close(ctx)
		return fmt.Errorf("dhcp6: %w", err)
	}
	if set.Mode == modeFull {
		leases, err := p.hs.Leases.Load(ctx, "")
		if err != nil {
			return fail(fmt.Errorf("load leases: %w", err))
		}
		loaded, skipped := srv.table.load(leases)
		p.logger.Info("leases loaded", "loaded", loaded, "not_in_pools", skipped)
	}
	l, err := listen(ctx, set.Interface, set.Port, set.ReceiveBuffer)
	if err != nil {
		return fail(err)
	}
	run.listener = l
	srv.out = func(r reply) error { return r.conn.write(r) }
	if p.hs.Events != nil {
		run.batcher = host.NewBatcher(serveCtx, p.hs.Events, eventInterval, eventBatch, eventLimit)
		srv.events = run.batcher
	}
	lctx, cancel := context.WithCancel(serveCtx)
	run.cancel = cancel
	for range set.Workers {
		run.workers.Add(1)
		go func() {
			defer run.workers.Done()
			srv.serve(lctx, l)
		}()
	}
	if w, ok := p.hs.Clients.(host.ClientWatcher); ok {
		go srv.follow(lctx, w)
		srv.known.Wait(ctx, p.logger)
	}
	if !serverIP.IsValid() {
		p.logger.Warn("no server_ip and no global IPv6 address on the interface: PXE clients get no tftp:// boot URL", "interface", set.Interface)
	}
	p.run = run
	p.listeners = []string{l.name}
	p.message = fmt.Sprintf("mode %s, server %s, duid %x, %d pools", set.Mode, serverIP, duid.ToBytes(), len(set.pools))
	p.logger.Info("serving", "mode", set.Mode, "server_ip", serverIP.String(), "duid", net.HardwareAddr(duid.ToBytes()).String(), "socket", l.name)
	return nil
}

// newServer builds the packet handler of one Start, its lease table
// empty and its committer running under ctx; the caller sets out (and
// events).
func newServer(ctx context.Context, set *settings, duid dhcpv6.DUID, serverIP netip.Addr, hs host.Services, m *v6Metrics, logger hclog.Logger) *server {
	return &server{
		set: set, duid: duid, serverIP: serverIP, table: newTable(set, serverIP),
		clients: hs.Clients, bindings: hs.Events, known: clienttable.New(), m: m, logger: logger,
		commits: leasecommit.New(ctx, hs.Leases, leasecommit.Options{Max: set.CommitBatch, Gather: commitGather, Metrics: m.commit}),
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
	_ = run.listener.close()
	run.workers.Wait()
	run.cancel()
	var errs []error
	if err := run.srv.commits.Close(ctx); err != nil {
		errs = append(errs, err)
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
// to store leases (no Reply that binds can leave).
func (p *Plugin) Health(context.Context) error {
	p.mu.Lock()
	run := p.run
	p.mu.Unlock()
	if run == nil {
		return nil
	}
	if err := run.srv.commits.Err(); err != nil {
		return fmt.Errorf("leases are not being stored, no Reply is sent: %w", err)
	}
	return nil
}

// refreshGauges sets the pool and client table gauges at collection time.
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
		p.m.poolSize.WithLabelValues(st.name).Set(st.size)
		p.m.poolActive.WithLabelValues(st.name).Set(float64(st.active))
	}
}
