// Package daemon assembles the running host: config, state store, host
// services, one supervisor per plugin instance, the metrics registry and
// the HTTP server; it reloads on SIGHUP.
package daemon

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/dls-project/dls/core/api"
	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/core/clientfeed"
	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/grants"
	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/httpserver"
	"github.com/dls-project/dls/core/pluginmetrics"
	"github.com/dls-project/dls/core/reconcile"
	"github.com/dls-project/dls/core/sessionfeed"
	"github.com/dls-project/dls/core/sessions"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/postgres"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/core/sysmetrics"
	"github.com/dls-project/dls/core/wol"
	"github.com/dls-project/dls/internal/pluginrpc/authrpc"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Daemon is the running host.
type Daemon struct {
	path   string
	logger hclog.Logger

	reg      *prometheus.Registry
	reserved map[string]bool
	store    store.Store
	feed     *clientfeed.Feed // the clients pushed to plugins (Clients.Watch)
	services *hostservices.Services
	launcher *supervisor.Launcher
	supM     *supervisor.Metrics
	grantsM  *grants.Metrics

	listening chan struct{} // closed once the HTTP listeners are bound
	addr      string
	bootAddr  string // "" without boot.listen

	reconciler *reconcile.Reconciler
	api        *api.API
	sessions   *sessions.Tracker
	live       *sessionfeed.Feed // session changes for the console's event stream
	purger     *purger

	mu        sync.Mutex
	cfg       *config.Config
	instances map[string]*instance
}

// instance is one configured plugin and its supervisor.
type instance struct {
	d      *Daemon
	sup    *supervisor.Supervisor
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	block     *config.PluginBlock
	collector *pluginmetrics.Collector
	descKey   string
}

// New loads the config, opens the store and registers the host's metrics.
// Plugins start with Run.
func New(ctx context.Context, path string, logger hclog.Logger) (*Daemon, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	for _, w := range cfg.Warnings {
		logger.Warn(w)
	}
	d := &Daemon{
		path: path, logger: logger, cfg: cfg, reg: prometheus.NewRegistry(),
		reserved: map[string]bool{}, instances: map[string]*instance{}, launcher: supervisor.NewLauncher(),
		listening: make(chan struct{}),
	}
	if err := checkPluginUser(cfg.PluginUser, os.Geteuid()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := preparePluginDirs(cfg.DataDir, cfg.PluginUser); err != nil {
		return nil, err
	}
	hr := hostRegisterer{reg: d.reg, names: d.reserved}
	sm, err := store.NewMetrics(hr)
	if err != nil {
		return nil, err
	}
	if d.supM, err = supervisor.NewMetrics(hr); err != nil {
		return nil, err
	}
	if d.grantsM, err = grants.NewMetrics(hr); err != nil {
		return nil, err
	}
	if err := hr.Register(sysmetrics.New(sysmetrics.Options{Logger: logger.Named("sysmetrics")})); err != nil {
		return nil, fmt.Errorf("register system metrics: %w", err)
	}
	// The host process's own go_* and process_* families, as every Go
	// exporter has them: a soak watches go_goroutines and
	// process_resident_memory_bytes, and the alert rules may too.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := hr.Register(c); err != nil {
			return nil, fmt.Errorf("register the host's runtime metrics: %w", err)
		}
	}
	for _, n := range pluginmetrics.HostFamilies() {
		d.reserved[n] = true
	}
	switch cfg.Database.Type {
	case config.DatabaseSQLite:
		d.store, err = sqlite.Open(ctx, cfg.Database.Path, sm, sqlite.WithNormalSync(cfg.Database.Sync == config.SyncNormal))
	case config.DatabasePostgres:
		d.store, err = postgres.Open(ctx, cfg.Database.DSN, sm)
	default:
		err = fmt.Errorf("unknown database %q", cfg.Database.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("open state store: %w", err)
	}
	// Every client write goes through the feed's wrapper, so the DHCP
	// plugin's pushed table follows each committed change.
	d.feed = clientfeed.New(d.store)
	d.live = sessionfeed.New(0)
	d.store = clientfeed.Notify(d.store, d.feed)
	if d.purger, err = newPurger(d.store, d.sessionHistory, hr, logger.Named("purge")); err != nil {
		return nil, err
	}
	d.sessions, err = sessions.New(ctx, sessions.Options{
		Sessions: d.store, Clients: d.store, Images: d.store,
		StageTimeout: cfg.Boot.StageTimeout, Registerer: hr,
		Logger: logger.Named("sessions"), OnNewSession: func(ctx context.Context, client string) error { return d.services.ResetVolume(ctx, client) },
		OnChange: d.live.Publish,
	})
	if err != nil {
		return nil, fmt.Errorf("boot sessions: %w", err)
	}
	tpl, err := bootscript.LoadTemplates(cfg.Boot.Script, clientScripts(cfg))
	if err != nil {
		return nil, err
	}
	opts := []hostservices.Option{hostservices.WithSessions(d.sessions), hostservices.WithTemplates(tpl), hostservices.WithFeed(d.feed)}
	if cfg.Database.Type == config.DatabaseSQLite {
		// This host is the store's only writer of clients: its table is
		// exact. A shared PostgreSQL database is read as before.
		opts = append(opts, hostservices.WithFeedReads())
	}
	d.services = hostservices.New(bootSettings(cfg), d.store, d, logger.Named("host"), opts...)
	if err := d.services.RegisterMetrics(hr); err != nil {
		return nil, err
	}
	// Clients written by the config or the API get their volume made ahead
	// of their first login (volumeprep.go).
	prepared := preparingStore{Store: d.store, prepare: d.services.PrepareVolume}
	if d.reconciler, err = reconcile.New(prepared, d, hr, logger.Named("reconcile")); err != nil {
		return nil, err
	}
	d.api, err = api.New(ctx, api.Deps{
		Store:          prepared,
		Authenticators: d.authenticators,
		Storage:        api.StorageResolver(d.StorageForImage),
		Plugins:        d.Plugins,
		Waker:          &wol.Sender{},
		LiveSession:    func(ctx context.Context, client string) bool { return d.services.LiveSession(ctx, client) },
		LiveSessions:   d.live,
		ClientChanges:  d.feed,
	}, api.Options{
		KeyFile:         filepath.Join(cfg.DataDir, "api-token.key"),
		SessionLifetime: cfg.HTTP.SessionLifetime,
		ImportDirs:      cfg.ImportDirs,
		UploadDir:       filepath.Join(cfg.DataDir, "uploads"),
		UploadOwner:     uploadOwner(cfg.PluginUser),
		Registerer:      hr,
		Logger:          logger.Named("api"),
	})
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	return d, nil
}

// hostRegisterer registers the host's own collectors and remembers their
// family names: a plugin may not declare a family the host reports.
type hostRegisterer struct {
	reg   *prometheus.Registry
	names map[string]bool
}

func (h hostRegisterer) Register(c prometheus.Collector) error {
	if err := h.reg.Register(c); err != nil {
		return err
	}
	for _, n := range pluginmetrics.FamilyNames(c) {
		h.names[n] = true
	}
	return nil
}

func (h hostRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := h.Register(c); err != nil {
			panic(err) // only reached through prometheus helpers at start-up
		}
	}
}

func (h hostRegisterer) Unregister(c prometheus.Collector) bool { return h.reg.Unregister(c) }

// bootSettings derives the host services' view of the boot block.
func bootSettings(cfg *config.Config) hostservices.Boot {
	b := hostservices.Boot{
		URL: cfg.Boot.URL, IQNPrefix: cfg.Boot.IQNPrefix,
		UnknownClients: cfg.Boot.UnknownClients, DefaultImage: cfg.Boot.DefaultImage,
		MaxRegistered: cfg.Boot.MaxRegistered, MaxDiscovered: cfg.Boot.MaxDiscovered, ISCSIPort: cfg.ISCSIPort(),
	}
	if u, err := url.Parse(cfg.Boot.URL); err == nil {
		b.ServerAddress = u.Hostname()
	}
	return b
}

// sessionHistory is boot.session_history of the running config.
func (d *Daemon) sessionHistory() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg.Boot.SessionHistory
}

// Addr waits until the HTTP server listens and returns its address, or ""
// when ctx ends first.
func (d *Daemon) Addr(ctx context.Context) string {
	select {
	case <-d.listening:
		return d.addr
	case <-ctx.Done():
		return ""
	}
}

// Registry is the host's metrics registry.
func (d *Daemon) Registry() *prometheus.Registry { return d.reg }

// Run starts the plugins and the HTTP server and blocks until ctx ends or
// the HTTP server fails; reload receives SIGHUP notifications.
func (d *Daemon) Run(ctx context.Context, reload <-chan os.Signal) error {
	discCtx, stopDiscovery := context.WithCancel(ctx)
	discDone := make(chan struct{})
	go func() { defer close(discDone); d.services.RunDiscovery(discCtx) }()
	if err := d.feed.Load(ctx); err != nil {
		d.logger.Warn("client table not loaded; clients are read from the store until the next resync", "error", err)
	}
	go d.feed.Run(discCtx, clientfeed.DefaultResync, func(err error) {
		d.logger.Warn("client table not compared with the store; watchers resync", "error", err)
	})
	// The last sightings are written before the store closes.
	flushDiscovered := func() { stopDiscovery(); <-discDone }
	defer flushDiscovered()
	d.startPlugins(ctx, d.cfg.StartOrder())
	// Images are imported by their storage plugins, so after they run.
	d.reconciler.Apply(ctx, d.cfg)
	prepCtx, stopPrep := context.WithCancel(ctx)
	prepDone := make(chan struct{})
	go func() { defer close(prepDone); d.services.RunVolumePrep(prepCtx) }()
	defer func() { stopPrep(); <-prepDone }()
	if err := d.services.PrepareAllVolumes(ctx); err != nil {
		d.logger.Warn("volumes not prepared ahead of their logins", "error", err)
	}

	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	ls, err := d.listen(cfg)
	if err != nil {
		d.stopAll()
		return err
	}
	go d.sessions.Run(ctx)
	stopPurge := d.purger.start(ctx)
	if d.bootAddr != "" {
		d.logger.Info("dls serving", "http", d.addr, "boot", d.bootAddr, "config", d.path, "plugins", len(cfg.Plugins))
	} else {
		d.logger.Info("dls serving", "http", d.addr, "config", d.path, "plugins", len(cfg.Plugins))
	}

	for {
		select {
		case <-ctx.Done():
			ls.shutdown(ctx)
			d.stopAll()
			stopPurge()
			flushDiscovered()
			return d.store.Close()
		case err := <-ls.errc:
			ls.shutdown(ctx)
			d.stopAll()
			stopPurge()
			flushDiscovered()
			_ = d.store.Close()
			return fmt.Errorf("http server: %w", err)
		case <-reload:
			d.Reload(ctx)
		}
	}
}

// startPlugins starts instances in order: storage and auth first, then the
// protocols, which ask the host for volumes held by storage plugins.
func (d *Daemon) startPlugins(ctx context.Context, blocks []*config.PluginBlock) {
	var first, later []*config.PluginBlock
	for _, b := range blocks {
		if b.Kind == base.KindProtocol {
			later = append(later, b)
		} else {
			first = append(first, b)
		}
	}
	for _, group := range [][]*config.PluginBlock{first, later} {
		var started []*instance
		for _, b := range group {
			started = append(started, d.startInstance(ctx, b))
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		for _, in := range started {
			in.sup.WaitSettled(wctx)
		}
		cancel()
	}
}

func (d *Daemon) startInstance(ctx context.Context, b *config.PluginBlock) *instance {
	in := &instance{d: d, block: b, done: make(chan struct{})}
	spec := d.spec(b)
	in.sup = supervisor.New(spec, in, d.launcher, d.supM, d.logger)
	// Register a collector before the first start so dls_plugin_up is 0
	// (not absent) for a plugin that never came up.
	in.setCollector(ctx, base.Info{Kind: b.Kind, Type: b.Type}, nil)
	ictx, cancel := context.WithCancel(ctx)
	in.cancel = cancel
	d.mu.Lock()
	d.instances[b.Name] = in
	d.mu.Unlock()
	go func() {
		defer close(in.done)
		in.sup.Run(ictx)
	}()
	return in
}

func (d *Daemon) spec(b *config.PluginBlock) supervisor.Spec {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	cred, caps := pluginCredential(cfg.PluginUser, b.Kind)
	return supervisor.Spec{
		Name: b.Name, Kind: b.Kind, Type: b.Type,
		Path:       b.BinaryPath(cfg.PluginDir),
		SHA256:     b.SHA256,
		Env:        pluginEnv(d.pluginDataDir(b.Name)),
		Credential: cred, AmbientCaps: caps,
		Restart: supervisor.RestartPolicy{
			InitialDelay: b.Restart.InitialDelay, MaxDelay: b.Restart.MaxDelay,
			MaxFailures: b.Restart.MaxFailures, ResetAfter: b.Restart.ResetAfter,
		},
	}
}

func (d *Daemon) pluginDataDir(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return filepath.Join(d.cfg.DataDir, "plugins", name)
}

// pluginEnv is the whole environment a plugin gets: go-plugin's own
// variables are added to it, nothing else of the host's leaks through.
func pluginEnv(dataDir string) []string {
	env := []string{"DLS_PLUGIN_DATA_DIR=" + dataDir}
	for _, k := range []string{"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// stopAll stops protocols first (they use the others), then the rest.
func (d *Daemon) stopAll() {
	d.mu.Lock()
	var protocols, others []*instance
	for _, in := range d.instances {
		if in.sup.Spec().Kind == base.KindProtocol {
			protocols = append(protocols, in)
		} else {
			others = append(others, in)
		}
	}
	d.mu.Unlock()
	for _, group := range [][]*instance{protocols, others} {
		for _, in := range group {
			in.cancel()
		}
		for _, in := range group {
			<-in.done
		}
	}
}

// StorageForImage implements hostservices.StorageResolver: the running
// storage plugin that holds image, per the store.
func (d *Daemon) StorageForImage(ctx context.Context, image string) (*storagerpc.Client, error) {
	im, err := d.store.GetImage(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", image, err)
	}
	d.mu.Lock()
	in := d.instances[im.Storage]
	d.mu.Unlock()
	if in == nil {
		return nil, fmt.Errorf("image %s: storage %q is not configured", image, im.Storage)
	}
	p := in.sup.Process()
	if p == nil {
		return nil, fmt.Errorf("image %s: storage %s is not running", image, im.Storage)
	}
	st, ok := p.Client.(*storagerpc.Client)
	if !ok {
		return nil, fmt.Errorf("image %s: plugin %s is not a storage plugin", image, im.Storage)
	}
	return st, nil
}

// clientScripts maps clients to their own script templates.
func clientScripts(cfg *config.Config) map[string]string {
	out := map[string]string{}
	for _, c := range cfg.Clients {
		if c.Script != "" {
			out[c.Name] = c.Script
		}
	}
	return out
}

// authenticators lists the running auth plugins in config order.
func (d *Daemon) authenticators() []api.NamedAuthenticator {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	var out []api.NamedAuthenticator
	for _, b := range cfg.Plugins {
		if b.Kind != base.KindAuth {
			continue
		}
		d.mu.Lock()
		in := d.instances[b.Name]
		d.mu.Unlock()
		if in == nil {
			continue
		}
		if p := in.sup.Process(); p != nil {
			if ac, ok := p.Client.(*authrpc.Client); ok {
				out = append(out, api.NamedAuthenticator{Name: b.Name, Authenticator: ac})
			}
		}
	}
	return out
}

// Compile-time check that the daemon answers /readyz.
var _ httpserver.Readiness = (*Daemon)(nil)

// Plugins implements httpserver.Readiness and lists the plugins for the
// admin API: every instance's supervisor status, by name. The statuses
// are read outside d.mu: Status waits for the supervisor's own lock.
func (d *Daemon) Plugins() []supervisor.Status {
	d.mu.Lock()
	ins := make([]*instance, 0, len(d.instances))
	for _, in := range d.instances {
		ins = append(ins, in)
	}
	d.mu.Unlock()
	out := make([]supervisor.Status, 0, len(ins))
	for _, in := range ins {
		out = append(out, in.sup.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Store implements httpserver.Readiness.
func (d *Daemon) Store(ctx context.Context) error { return d.store.Ping(ctx) }
