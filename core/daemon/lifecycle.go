package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/grants"
	"github.com/dls-project/dls/core/pluginmetrics"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/internal/pluginrpc/protocolrpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/metrics"
)

// Setup implements supervisor.Lifecycle: decode the plugin's config block
// against the schema it declares, configure it, bring its metrics into the
// host's registry, and start a protocol serving.
func (in *instance) Setup(ctx context.Context, spec supervisor.Spec, p *supervisor.Process) error {
	in.mu.Lock()
	block := in.block
	in.mu.Unlock()
	js, err := in.decode(ctx, block, p)
	if err != nil {
		return err
	}
	if err := in.send(ctx, block, p, js); err != nil {
		return err
	}
	descs, err := p.Base().DescribeMetrics(ctx)
	if err != nil {
		return supervisor.Permanent(fmt.Errorf("plugin %s: %w", spec.Name, err))
	}
	if err := in.setCollector(ctx, p.Info, descs); err != nil {
		return supervisor.Permanent(err)
	}
	if pc, ok := p.Client.(*protocolrpc.Client); ok {
		if err := pc.Start(ctx); err != nil {
			return fmt.Errorf("plugin %s: %w", spec.Name, err)
		}
	}
	return nil
}

// decode decodes block's config body against the schema p declares.
// Errors name file:line:col.
func (in *instance) decode(ctx context.Context, block *config.PluginBlock, p *supervisor.Process) ([]byte, error) {
	schema, err := p.Base().ConfigSchema(ctx)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", block.Name, err)
	}
	js, err := block.DecodeConfig(schema)
	if err != nil {
		return nil, supervisor.Permanent(err)
	}
	return js, nil
}

// send configures p with a decoded config. The plugin's own findings come
// back with attribute paths and are reported at file:line:col.
func (in *instance) send(ctx context.Context, block *config.PluginBlock, p *supervisor.Process, js []byte) error {
	dataDir := in.d.pluginDataDir(block.Name)
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return fmt.Errorf("plugin %s: create data dir: %w", block.Name, err)
	}
	if cred := in.sup.Spec().Credential; cred != nil {
		if err := ownPluginDir(dataDir, cred.Uid, cred.Gid); err != nil {
			return fmt.Errorf("plugin %s: %w", block.Name, err)
		}
	}
	// The instance sees the host services through its own guard: what its
	// grant leaves out is refused in the host (core/grants).
	svc := grants.Guard(in.d.services.For(), grants.Plugin{Name: block.Name, Kind: block.Kind, Type: block.Type}, block.Grant(), in.d.grantsM)
	hostID := p.Base().ServeHost(svc)
	diags, err := p.Base().Configure(ctx, baserpc.ConfigureArgs{ConfigJSON: js, HostID: hostID, Instance: block.Name, DataDir: dataDir})
	if err != nil {
		return fmt.Errorf("plugin %s: %w", block.Name, err)
	}
	if len(diags) > 0 {
		return supervisor.Permanent(block.ConfigureError(diags))
	}
	return nil
}

// Teardown implements supervisor.Lifecycle. The collector stays registered:
// while the plugin is down it reports dls_plugin_up 0.
func (in *instance) Teardown(supervisor.Spec, *supervisor.Process) {}

// setCollector (re)registers the instance's metrics proxy when the plugin's
// identity or declarations changed. ctx is the base of the collector's
// scrapes (see pluginmetrics.New).
func (in *instance) setCollector(ctx context.Context, info base.Info, descs []metrics.Desc) error {
	key := fmt.Sprintf("%s|%s|%s|%v", info.Kind, info.Type, info.Version, descs)
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.collector != nil && in.descKey == key {
		return nil
	}
	in.d.mu.Lock()
	timeout := in.d.cfg.HTTP.ScrapeTimeout
	in.d.mu.Unlock()
	name := in.block.Name
	c, err := pluginmetrics.New(ctx, name, info, descs, in.d.reserved, func() *baserpc.Client {
		if p := in.sup.Process(); p != nil {
			return p.Base()
		}
		return nil
	}, timeout)
	if err != nil {
		return err
	}
	c.OnError = func(err error) { in.d.logger.Debug("plugin scrape failed", "plugin", name, "error", err) }
	if in.collector != nil {
		in.d.reg.Unregister(in.collector)
	}
	if err := in.d.reg.Register(c); err != nil {
		in.collector = nil
		return fmt.Errorf("plugin %s: metrics: %w", name, err)
	}
	in.collector, in.descKey = c, key
	return nil
}
