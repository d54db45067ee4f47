// Package iscsid is the "iscsi" protocol plugin: each client's volume as
// LUN 0 of the target <iqn_prefix>:<client>, for that client's initiators
// only, with CHAP when the client has a secret. See ../README.md.
//
// The iSCSI protocol itself is in the sibling packages (target: portal,
// login, sessions; scsi: the block device; pdu: framing). This package
// is what ties them to DLS: the config block, the resolver that answers
// the target's Authorize, Discover, Attach and Detach through the host's
// services (the client lookup with its CHAP secret and bound addresses,
// the volume descriptor opened with sdk/volume), and the target's hooks
// turned into boot events and metrics.
package iscsid

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/target"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Version of this plugin.
const Version = "0.1.0"

// Config is the plugin's config block.
type Config struct {
	Listen           string        `hcl:"listen,optional" format:"host_port" doc:"TCP address of the iSCSI portal"`
	MaxSessions      int           `hcl:"max_sessions,optional" doc:"most normal sessions open at once; 0: no limit"`
	QueueDepth       int           `hcl:"queue_depth,optional" doc:"commands each session may have in flight (CmdSN window)"`
	MaxRecvDataSeg   int           `hcl:"max_recv_data_segment_length,optional" doc:"largest data segment the target accepts, bytes (512 to 16777215)"`
	MaxBurstLength   int           `hcl:"max_burst_length,optional" doc:"largest solicited data burst the target allows, bytes"`
	FirstBurstLength int           `hcl:"first_burst_length,optional" doc:"largest unsolicited data burst the target allows, bytes"`
	MaxOutstandingR2 int           `hcl:"max_outstanding_r2t,optional" doc:"R2Ts outstanding per command at most"`
	Digests          bool          `hcl:"digests,optional" doc:"accept CRC32C header and data digests when initiators ask for them"`
	LoginTimeout     time.Duration `hcl:"login_timeout,optional" doc:"how long a connection may take to log in"`
	MaxLoginConns    int           `hcl:"max_login_connections,optional" doc:"connections still logging in at once; past it the oldest that has not sent a whole PDU (else the oldest) is closed"`
	EndStaleSessions bool          `hcl:"end_stale_sessions,optional" doc:"a login ends the initiator's older sessions on its target whatever their ISID: a rebooting diskless machine never logs out (false: only sessions of the same ISID, RFC 7143)"`
	BindToLease      bool          `hcl:"bind_to_lease,optional" doc:"a normal session must come from the address bound to its client's current boot (its lease, or where its proxy boot came from) or one of the client's extra_addresses; false only for protocol tests and multipath set-ups"`
	RefusedLimit     int           `hcl:"refused_login_limit,optional" doc:"refused logins from one source address within refused_login_window before further logins from it are refused at once (counted as rate_limited); 0: no limit"`
	RefusedWindow    time.Duration `hcl:"refused_login_window,optional" doc:"window of refused_login_limit"`
	MaxBufferBytes   int           `hcl:"max_buffer_bytes,optional" doc:"bytes of read and write data buffers of all sessions together; past it a command waits for buffers (then BUSY) instead of allocating (1048576 or more)"`
	DeadPeerTimeout  time.Duration `hcl:"dead_peer_timeout,optional" doc:"a connection whose peer answered nothing for this long (a machine powered off without logging out) is closed, its session ended and its volume released: TCP keepalive when idle, TCP_USER_TIMEOUT with data in flight (3s or more)"`
}

// minDeadPeerTimeout is the smallest dead_peer_timeout: keepalive's idle
// time and interval are whole seconds, at least one each.
const minDeadPeerTimeout = 3 * time.Second

// minBufferBytes is the smallest max_buffer_bytes: four 256 KiB reads.
const minBufferBytes = 1 << 20

// Plugin is the iscsi protocol plugin.
type Plugin struct {
	reg         *metrics.Registry
	connections prometheus.Counter
	errors      *prometheus.CounterVec
	sessions    prometheus.Gauge
	bufInUse    prometheus.Gauge
	bufLimit    prometheus.Gauge
	readBytes   prometheus.Counter
	writeBytes  prometheus.Counter
	latency     map[string]prometheus.Observer
	loginSteps  map[string]prometheus.Observer

	mu      sync.Mutex
	cfg     Config
	host    host.Services
	logger  hclog.Logger
	srv     *target.Server
	ln      net.Listener
	events  *host.Batcher
	serving bool
}

var (
	_ protocol.Protocol    = (*Plugin)(nil)
	_ base.MetricsDeclarer = (*Plugin)(nil)
	_ base.HealthChecker   = (*Plugin)(nil)
)

// Latency buckets of SCSI commands, seconds.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// New returns an unconfigured plugin.
func New() *Plugin {
	reg := metrics.NewRegistry()
	p := &Plugin{
		reg:         reg,
		connections: reg.Counter("dls_iscsi_connections_total", "iSCSI TCP connections accepted.").WithLabelValues(),
		errors:      reg.Counter("dls_iscsi_errors_total", "iSCSI logins refused, protocol errors and failed commands, by reason.", "reason"),
		sessions:    reg.Gauge("dls_iscsi_sessions", "iSCSI normal sessions open now.").WithLabelValues(),
		bufInUse:    reg.Gauge("dls_iscsi_buffer_bytes", "Bytes of read and write data buffers held by SCSI commands now.").WithLabelValues(),
		bufLimit:    reg.Gauge("dls_iscsi_buffer_limit_bytes", "Bytes of data buffers the target holds at most (max_buffer_bytes).").WithLabelValues(),
		readBytes:   reg.Counter("dls_iscsi_read_bytes_total", "Bytes read from volumes for initiators.").WithLabelValues(),
		writeBytes:  reg.Counter("dls_iscsi_written_bytes_total", "Bytes written to volumes by initiators.").WithLabelValues(),
		logger:      hclog.NewNullLogger(),
	}
	lat := reg.Histogram("dls_iscsi_command_duration_seconds", "SCSI command latency in the target, by opcode group (read, write, sync, unmap, other).", latencyBuckets, "group")
	steps := reg.Histogram("dls_iscsi_login_duration_seconds", "Successful normal logins in the target, by step: authorize (asking the host who may log in), attach (the host's attach and the volume's open, when not attached yet; during the initiator's operational-stage turn when it has one), target (the target's turns: each login PDU's arrival to its answer, summed), total (first login PDU to the final response, initiator round trips included).", latencyBuckets, "step")
	p.loginSteps = map[string]prometheus.Observer{}
	for _, s := range []string{"authorize", "attach", "target", "total"} {
		p.loginSteps[s] = steps.WithLabelValues(s)
	}
	p.latency = map[string]prometheus.Observer{}
	for _, g := range []string{"read", "write", "sync", "unmap", "other"} {
		p.latency[g] = lat.WithLabelValues(g)
	}
	return p
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info { return base.Info{Type: "iscsi", Version: Version} }

// NewConfig implements base.Plugin.
func (p *Plugin) NewConfig() any {
	d := target.DefaultLimits
	return &Config{
		Listen: "127.0.0.1:3260", QueueDepth: d.QueueDepth, MaxRecvDataSeg: d.MaxRecvDataSegmentLength,
		MaxBurstLength: d.MaxBurstLength, FirstBurstLength: d.FirstBurstLength, MaxOutstandingR2: d.MaxOutstandingR2T,
		Digests: true, LoginTimeout: 30 * time.Second, EndStaleSessions: true,
		MaxLoginConns: target.DefaultMaxLoginConnections, BindToLease: true,
		RefusedLimit: target.DefaultRefusedLoginLimit, RefusedWindow: target.DefaultRefusedLoginWindow,
		MaxBufferBytes: target.DefaultMaxBufferBytes, DeadPeerTimeout: target.DefaultDeadPeerTimeout,
	}
}

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.reg }

// Configure implements base.Plugin.
func (p *Plugin) Configure(_ context.Context, req base.ConfigureRequest) error {
	cp, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	c := *cp
	var errs config.Errors
	seg := func(path string, v, lo int) {
		if v < lo || v > 1<<24-1 {
			errs.Add(config.Errorf(path, "%s must be %d to 16777215", path, lo))
		}
	}
	if c.Listen == "" {
		errs.Add(config.Errorf("listen", "listen is required"))
	}
	if c.MaxSessions < 0 {
		errs.Add(config.Errorf("max_sessions", "max_sessions must be 0 (no limit) or more"))
	}
	if c.QueueDepth < 1 || c.QueueDepth > 4096 {
		errs.Add(config.Errorf("queue_depth", "queue_depth must be 1 to 4096"))
	}
	seg("max_recv_data_segment_length", c.MaxRecvDataSeg, 512)
	seg("max_burst_length", c.MaxBurstLength, 512)
	seg("first_burst_length", c.FirstBurstLength, 512)
	if c.FirstBurstLength > c.MaxBurstLength {
		errs.Add(config.Errorf("first_burst_length", "first_burst_length must not exceed max_burst_length"))
	}
	if c.MaxOutstandingR2 < 1 || c.MaxOutstandingR2 > 65535 {
		errs.Add(config.Errorf("max_outstanding_r2t", "max_outstanding_r2t must be 1 to 65535"))
	}
	if c.LoginTimeout <= 0 {
		errs.Add(config.Errorf("login_timeout", "login_timeout must be positive"))
	}
	if c.MaxLoginConns < 1 {
		errs.Add(config.Errorf("max_login_connections", "max_login_connections must be 1 or more"))
	}
	if c.RefusedLimit < 0 {
		errs.Add(config.Errorf("refused_login_limit", "refused_login_limit must be 0 (no limit) or more"))
	}
	if c.RefusedWindow <= 0 {
		errs.Add(config.Errorf("refused_login_window", "refused_login_window must be positive"))
	}
	if c.MaxBufferBytes < minBufferBytes {
		errs.Add(config.Errorf("max_buffer_bytes", "max_buffer_bytes must be %d or more", minBufferBytes))
	}
	if c.DeadPeerTimeout < minDeadPeerTimeout {
		errs.Add(config.Errorf("dead_peer_timeout", "dead_peer_timeout must be %s or more (keepalive counts whole seconds)", minDeadPeerTimeout))
	}
	if err := errs.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg, p.host = c, req.Host
	if req.Logger != nil {
		p.logger = req.Logger
	}
	return nil
}

// Start implements protocol.Protocol.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.serving {
		return errors.New("iscsi: already serving")
	}
	if p.host.Clients == nil || p.host.Volumes == nil {
		return errors.New("iscsi: the host offers no Clients or Volumes service")
	}
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("iscsi: listen on %s: %w", p.cfg.Listen, err)
	}
	// The portal outlives the Start call, whose context ends when it
	// returns: it serves under its values, not its cancellation, until
	// Stop.
	serveCtx := context.WithoutCancel(ctx)
	if p.host.Events != nil {
		p.events = host.NewBatcher(serveCtx, p.host.Events, 500*time.Millisecond, 64, 4096)
	}
	srv := &target.Server{
		Resolver: &resolver{host: p.host, logger: p.logger},
		Hooks:    p.hooks(p.events),
		Logger:   p.logger,
		Limits: target.Limits{
			MaxRecvDataSegmentLength: p.cfg.MaxRecvDataSeg, MaxBurstLength: p.cfg.MaxBurstLength,
			FirstBurstLength: p.cfg.FirstBurstLength, MaxOutstandingR2T: p.cfg.MaxOutstandingR2,
			QueueDepth: p.cfg.QueueDepth, Digests: p.cfg.Digests,
			DefaultTime2Wait: target.DefaultLimits.DefaultTime2Wait,
		},
		MaxSessions:         p.cfg.MaxSessions,
		EndStaleSessions:    p.cfg.EndStaleSessions,
		BindToAddresses:     p.cfg.BindToLease,
		RefusedLoginLimit:   refusedLimit(p.cfg.RefusedLimit),
		RefusedLoginWindow:  p.cfg.RefusedWindow,
		Vendor:              "DLS",
		Product:             "DLS iSCSI disk",
		Revision:            "0.1",
		LoginTimeout:        p.cfg.LoginTimeout,
		MaxLoginConnections: p.cfg.MaxLoginConns,
		MaxBufferBytes:      int64(p.cfg.MaxBufferBytes),
		DeadPeerTimeout:     p.cfg.DeadPeerTimeout,
	}
	p.bufLimit.Set(float64(p.cfg.MaxBufferBytes))
	p.srv, p.ln, p.serving = srv, ln, true
	go func() {
		if err := srv.Serve(serveCtx, ln); err != nil && !errors.Is(err, target.ErrClosed) {
			p.logger.Error("iscsi portal stopped", "listen", ln.Addr().String(), "error", err)
		}
	}()
	p.logger.Info("iscsi portal serving", "listen", ln.Addr().String())
	return nil
}

// Stop implements protocol.Protocol: close the portal, let commands in
// flight finish, close every volume, send the last events.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	srv, events := p.srv, p.events
	p.srv, p.ln, p.events, p.serving = nil, nil, nil, false
	p.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Close(ctx)
	}
	if events != nil {
		_ = events.Close(ctx)
	}
	return err
}

// Status implements protocol.Protocol.
func (p *Plugin) Status(context.Context) (protocol.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := protocol.Status{Serving: p.serving}
	if p.ln != nil {
		st.Listeners = []string{"tcp " + p.ln.Addr().String()}
		st.Message = fmt.Sprintf("%d sessions", p.srv.Sessions())
	}
	return st, nil
}

// Health implements base.HealthChecker.
func (p *Plugin) Health(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.serving {
		return errors.New("iscsi portal not serving")
	}
	return nil
}

// hooks turn target events into metrics and boot events.
func (p *Plugin) hooks(events *host.Batcher) target.Hooks {
	emit := func(typ string, s target.Info) {
		if events == nil {
			return
		}
		addr := s.Remote
		if h, _, err := net.SplitHostPort(s.Remote); err == nil {
			addr = h
		}
		events.Emit(host.Event{Type: typ, Client: s.Client, Address: addr, Attrs: map[string]string{
			host.AttrInitiator: s.Initiator, host.AttrTarget: s.Target, host.AttrRemote: s.Remote,
		}})
	}
	return target.Hooks{
		Connection: p.connections.Inc,
		Error:      func(reason string) { p.errors.WithLabelValues(reason).Inc() },
		Sessions:   func(d int) { p.sessions.Add(float64(d)) },
		Buffers:    func(n int64) { p.bufInUse.Set(float64(n)) },
		Login:      func(s target.Info) { emit(host.EventISCSILogin, s) },
		Logout:     func(s target.Info) { emit(host.EventISCSILogout, s) },
		Handoff:    func(s target.Info) { emit(host.EventISCSIHandoff, s) },
		LoginStep: func(step string, d time.Duration) {
			if o := p.loginSteps[step]; o != nil {
				o.Observe(d.Seconds())
			}
		},
		Command: func(group string, d time.Duration, read, written int64) {
			if o := p.latency[group]; o != nil {
				o.Observe(d.Seconds())
			}
			if read > 0 {
				p.readBytes.Add(float64(read))
			}
			if written > 0 {
				p.writeBytes.Add(float64(written))
			}
		},
	}
}

// refusedLimit maps refused_login_limit (0: no limit) to the target's
// RefusedLoginLimit (negative: no limit).
func refusedLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// resolver answers the target's questions with the host's services.
type resolver struct {
	host   host.Services
	logger hclog.Logger
}

// allowed reports whether initiator belongs to the decision's client.
func allowed(d host.Decision, initiator string) bool {
	if strings.EqualFold(d.InitiatorIQN, initiator) {
		return true
	}
	return slices.ContainsFunc(d.Initiators, func(i string) bool { return strings.EqualFold(i, initiator) })
}

// access is what the target needs of a decision. The CHAP user is the
// client's initiator IQN whichever of its initiators logs in; a decision
// with a secret and no user (an older host) gets that default.
func (r *resolver) access(d host.Decision) target.Access {
	a := target.Access{
		Known: true, Client: d.Client, Name: d.TargetIQN,
		CHAPUser: d.CHAPUser, CHAPSecret: d.CHAPSecret, MutualSecret: d.CHAPMutualSecret,
	}
	if a.CHAPSecret != "" && a.CHAPUser == "" {
		a.CHAPUser = d.InitiatorIQN
	}
	for _, s := range d.AllowedAddresses {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			r.logger.Warn("host gave an address that is not an IP; ignored", "client", d.Client, "address", s)
			continue
		}
		a.Addresses = append(a.Addresses, ip.Unmap().WithZone(""))
	}
	return a
}

func (r *resolver) Authorize(ctx context.Context, q target.Request) (target.Access, error) {
	peer := ""
	if q.Peer.IsValid() {
		peer = q.Peer.String()
	}
	if q.Target == "" {
		// Discovery: the initiator must belong to a client, whose CHAP
		// it then answers; it sees that client's target only.
		d, err := r.host.Clients.Lookup(ctx, host.Query{Initiator: q.Initiator, Peer: peer})
		if err != nil {
			return target.Access{}, err
		}
		if !d.Known || !allowed(d, q.Initiator) {
			return target.Access{Known: true}, nil
		}
		a := r.access(d)
		a.Allowed = true
		return a, nil
	}
	// Ask by target: whose disk is it? Then check the initiator here, so
	// that an initiator of another client is told "not allowed".
	d, err := r.host.Clients.Lookup(ctx, host.Query{Target: q.Target, Peer: peer})
	if err != nil {
		return target.Access{}, err
	}
	if !d.Known || !strings.EqualFold(d.TargetIQN, q.Target) {
		return target.Access{}, nil
	}
	a := r.access(d)
	a.Allowed = allowed(d, q.Initiator)
	return a, nil
}

func (r *resolver) Discover(ctx context.Context, initiator string) ([]string, error) {
	d, err := r.host.Clients.Lookup(ctx, host.Query{Initiator: initiator})
	if err != nil {
		return nil, err
	}
	if !d.Known || !allowed(d, initiator) || d.TargetIQN == "" {
		return nil, nil
	}
	return []string{d.TargetIQN}, nil
}

func (r *resolver) Attach(ctx context.Context, tgt string, a target.Access) (target.Volume, error) {
	desc, err := r.host.Volumes.Attach(ctx, a.Client)
	if err != nil {
		return nil, fmt.Errorf("attach volume of client %s: %w", a.Client, err)
	}
	v, err := volume.Open(desc)
	if err != nil {
		if derr := r.host.Volumes.Detach(ctx, a.Client); derr != nil {
			r.logger.Error("detach after a failed open", "client", a.Client, "error", derr)
		}
		return nil, fmt.Errorf("client %s: %w", a.Client, err)
	}
	r.logger.Info("volume attached", "client", a.Client, "target", tgt, "format", string(desc.Format), "size", desc.Size)
	return v, nil
}

func (r *resolver) Detach(ctx context.Context, tgt string, a target.Access) {
	if err := r.host.Volumes.Detach(ctx, a.Client); err != nil {
		r.logger.Error("detach volume", "client", a.Client, "target", tgt, "error", err)
		return
	}
	r.logger.Info("volume detached", "client", a.Client, "target", tgt)
}
