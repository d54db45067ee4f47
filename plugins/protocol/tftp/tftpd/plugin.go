// Package tftpd is the "tftp" protocol plugin: a read-only TFTP server
// (RFC 1350, with the RFC 2347 option extension, blksize RFC 2348,
// timeout and tsize RFC 2349, windowsize RFC 7440) for first-stage boot
// files and the host's per-client iPXE scripts. See ../README.md.
//
// A request moves through: Server.loop reads it from the listen socket,
// Server.request parses it (packet.go) and starts Server.serve, which
// resolves the name (names.go, then os.Root or the host's script),
// negotiates options (options.go) and runs a sender (transfer.go) over
// the transfer's link (link.go).
package tftpd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/hashicorp/go-hclog"
)

// Version of this plugin.
const Version = "0.1.0"

// Config is the plugin's config block.
type Config struct {
	Listen             string        `hcl:"listen,optional" format:"host_port" doc:"UDP address to serve on, e.g. \"192.168.77.1:69\""`
	Root               string        `hcl:"root,optional" doc:"folder of files served (iPXE binaries); relative paths are under the plugin's data dir; created when missing"`
	Scripts            string        `hcl:"scripts,optional" doc:"folder whose <mac>.ipxe names (MAC with - or :) are the host's per-client iPXE scripts; \"\" serves none"`
	Tsize              bool          `hcl:"tsize,optional" doc:"answer the tsize option; false for firmware that aborts on it"`
	BlksizeNegotiation bool          `hcl:"blksize_negotiation,optional" doc:"answer the blksize option; false: always 512-byte blocks"`
	MaxBlksize         int           `hcl:"max_blksize,optional" doc:"largest block size granted, 8 to 65464"`
	MaxWindowsize      int           `hcl:"max_windowsize,optional" doc:"largest RFC 7440 window granted, 1 to 65535 (1: lock-step only)"`
	SinglePort         bool          `hcl:"single_port,optional" doc:"send every transfer from the listen port, for firewalled sites; default: an ephemeral port per transfer"`
	Timeout            time.Duration `hcl:"timeout,optional" doc:"first retransmission timeout when the client sets none (10ms to 255s); doubles on each retry"`
	Retries            int           `hcl:"retries,optional" doc:"times a packet is sent again before a transfer is given up, 1 to 100"`
	MaxTransfers       int           `hcl:"max_transfers,optional" doc:"concurrent transfers; a request beyond ends the oldest transfer whose client never answered, else it is dropped until one ends (the client asks again)"`
	MaxPerClient       int           `hcl:"max_transfers_per_client,optional" doc:"concurrent transfers of one client IP address; requests beyond are dropped; 0: no limit"`
	ReadBuffer         int           `hcl:"read_buffer,optional" doc:"listen socket receive buffer in bytes (capped by net.core.rmem_max without CAP_NET_ADMIN)"`
	Shim               string        `hcl:"shim,optional" doc:"file served as shimx64.efi (Secure Boot's first stage, signed by the Microsoft UEFI CA) when root holds none; \"\" serves none"`
	GRUB               string        `hcl:"grub,optional" doc:"file served as grubx64.efi (the signed GRUB shim loads) when root holds none; \"\" serves none"`
	MokManager         string        `hcl:"mok_manager,optional" doc:"file served as mmx64.efi (shim's MokManager) when root holds none; \"\" serves none"`
	GRUBConfig         string        `hcl:"grub_config,optional" doc:"GRUB's prefix folder under root: its grub.cfg chains to mac/<MAC>.cfg, the host's per-client GRUB configuration; \"\" serves none"`
	Files              string        `hcl:"files,optional" doc:"folder served under files/ (set it to the host's boot.files: GRUB fetches kernels and initrds from it over TFTP); its clients/ folder is never served; relative paths are under the plugin's data dir; \"\" serves none"`
}

// DefaultConfig is the config with every default set.
func DefaultConfig() Config {
	return Config{
		Listen: ":69", Root: "tftp", Scripts: "mac", Tsize: true, BlksizeNegotiation: true,
		MaxBlksize: MaxBlksize, MaxWindowsize: 64, Timeout: time.Second, Retries: 5,
		MaxTransfers: 1000, ReadBuffer: 4 << 20,
		Shim: DebianShim, GRUB: DebianGRUB, MokManager: DebianMokManager, GRUBConfig: "grub",
	}
}

// check validates c and returns its settings.
func (c *Config) check() (Settings, error) {
	var errs config.Errors
	if c.Listen == "" {
		errs.Add(config.Errorf("listen", "must be a host:port"))
	}
	if c.Root == "" {
		errs.Add(config.Errorf("root", "must name a folder"))
	}
	scripts := c.Scripts
	if scripts != "" {
		rel, err := localName(scripts)
		if err != nil || rel == "." {
			errs.Add(config.Errorf("scripts", "must be a folder under root, such as \"mac\", not %q", scripts))
		}
		scripts = path.Clean(rel)
	}
	grubDir := c.GRUBConfig
	if grubDir != "" {
		rel, err := localName(grubDir)
		if err != nil || rel == "." {
			errs.Add(config.Errorf("grub_config", "must be a folder under root, such as \"grub\", not %q", grubDir))
		}
		grubDir = rel
	}
	for _, f := range []struct{ name, path, debian string }{{"shim", c.Shim, DebianShim}, {"grub", c.GRUB, DebianGRUB}, {"mok_manager", c.MokManager, DebianMokManager}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			errs.Add(config.Errorf(f.name, "must be an absolute path (Debian's: %q), or \"\" for none; not %q", f.debian, f.path))
		}
	}
	if c.MaxBlksize < MinBlksize || c.MaxBlksize > MaxBlksize {
		errs.Add(config.Errorf("max_blksize", "must be %d to %d, not %d", MinBlksize, MaxBlksize, c.MaxBlksize))
	}
	if c.MaxWindowsize < 1 || c.MaxWindowsize > MaxWindowsize {
		errs.Add(config.Errorf("max_windowsize", "must be 1 to %d, not %d", MaxWindowsize, c.MaxWindowsize))
	}
	if c.Timeout < 10*time.Millisecond || c.Timeout > MaxTimeout*time.Second {
		errs.Add(config.Errorf("timeout", "must be 10ms to 255s, not %s", c.Timeout))
	}
	if c.Retries < 1 || c.Retries > 100 {
		errs.Add(config.Errorf("retries", "must be 1 to 100, not %d", c.Retries))
	}
	if c.MaxTransfers < 1 {
		errs.Add(config.Errorf("max_transfers", "must be 1 or more, not %d", c.MaxTransfers))
	}
	if c.MaxPerClient < 0 {
		errs.Add(config.Errorf("max_transfers_per_client", "must be 0 (no limit) or more, not %d", c.MaxPerClient))
	}
	if c.ReadBuffer < 0 {
		errs.Add(config.Errorf("read_buffer", "must be 0 (the system default) or more, not %d", c.ReadBuffer))
	}
	return Settings{
		Listen: c.Listen, SinglePort: c.SinglePort, Tsize: c.Tsize, BlksizeNegotiation: c.BlksizeNegotiation,
		MaxBlksize: c.MaxBlksize, MaxWindowsize: c.MaxWindowsize, Timeout: c.Timeout, Retries: c.Retries,
		MaxTransfers: c.MaxTransfers, MaxPerClient: c.MaxPerClient, ReadBuffer: c.ReadBuffer, ScriptDir: scripts,
		Signed: SignedBoot{Shim: c.Shim, GRUB: c.GRUB, MokManager: c.MokManager, GRUBDir: grubDir, Files: c.Files},
	}, errs.Err()
}

// Plugin is the tftp protocol plugin.
type Plugin struct {
	reg *metrics.Registry
	m   *Metrics

	mu      sync.Mutex
	set     Settings
	rootDir string
	svc     host.Services
	logger  hclog.Logger
	srv     *Server
	batcher *host.Batcher
}

var (
	_ protocol.Protocol    = (*Plugin)(nil)
	_ base.MetricsDeclarer = (*Plugin)(nil)
	_ base.HealthChecker   = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New() *Plugin {
	reg := metrics.NewRegistry()
	return &Plugin{reg: reg, m: NewMetrics(reg), logger: hclog.NewNullLogger()}
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info { return base.Info{Type: "tftp", Version: Version} }

// NewConfig implements base.Plugin.
func (p *Plugin) NewConfig() any {
	c := DefaultConfig()
	return &c
}

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.reg }

// Configure implements base.Plugin. It takes effect at the next Start
// (the host stops the plugin before reconfiguring it).
func (p *Plugin) Configure(_ context.Context, req base.ConfigureRequest) error {
	c, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	set, err := c.check()
	if err != nil {
		return err
	}
	root := c.Root
	if !filepath.IsAbs(root) {
		root = filepath.Join(req.DataDir, root)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	set.Signed.Files = absFiles(set.Signed.Files, req.DataDir)
	p.set, p.rootDir, p.svc = set, root, req.Host
	if req.Logger != nil {
		p.logger = req.Logger
	}
	return nil
}

// Start implements protocol.Protocol.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return errors.New("tftp: already serving")
	}
	if p.rootDir == "" {
		return errors.New("tftp: start before configure")
	}
	if err := os.MkdirAll(p.rootDir, 0o755); err != nil {
		return fmt.Errorf("tftp root: %w", err)
	}
	if err := checkRoot(p.rootDir); err != nil {
		return err
	}
	// Serving outlives the Start call, whose context ends when it
	// returns: the server and the batcher run under its values, not its
	// cancellation, until Stop.
	serveCtx := context.WithoutCancel(ctx)
	o := ServerOptions{Root: p.rootDir, Clients: p.svc.Clients, Metrics: p.m, Logger: p.logger}
	var b *host.Batcher
	if p.svc.Events != nil {
		b = host.NewBatcher(serveCtx, p.svc.Events, 200*time.Millisecond, 64, 4096)
		o.Emit = b.Emit
	}
	srv, err := Listen(serveCtx, p.set, o)
	if err != nil {
		if b != nil {
			_ = b.Close(ctx)
		}
		return err
	}
	p.srv, p.batcher = srv, b
	p.logger.Info("tftp serving", "listen", srv.Addr().String(), "root", p.rootDir, "single_port", p.set.SinglePort)
	return nil
}

// Stop implements protocol.Protocol and base.Stopper: no new requests,
// transfers finish until ctx ends, then events are flushed.
func (p *Plugin) Stop(ctx context.Context) error {
	p.mu.Lock()
	srv, b := p.srv, p.batcher
	p.srv, p.batcher = nil, nil
	p.mu.Unlock()
	var errs []error
	if srv != nil {
		errs = append(errs, srv.Shutdown(ctx))
	}
	if b != nil {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		errs = append(errs, b.Close(fctx))
		cancel()
	}
	return errors.Join(errs...)
}

// Status implements protocol.Protocol.
func (p *Plugin) Status(context.Context) (protocol.Status, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return protocol.Status{}, nil
	}
	return protocol.Status{
		Serving:   true,
		Listeners: []string{"udp " + p.srv.Addr().String()},
		Message:   fmt.Sprintf("root %s, %d transfers active", p.rootDir, p.srv.Active()),
	}, nil
}

// Health implements base.HealthChecker: the root must be a readable
// folder.
func (p *Plugin) Health(context.Context) error {
	p.mu.Lock()
	serving, dir := p.srv != nil, p.rootDir
	p.mu.Unlock()
	if !serving {
		return nil
	}
	return checkRoot(dir)
}

func checkRoot(dir string) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("tftp root: %w", err)
	}
	defer r.Close()
	if _, err := r.Stat("."); err != nil {
		return fmt.Errorf("tftp root %s: %w", dir, err)
	}
	return nil
}
