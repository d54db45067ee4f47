package daemon

import (
	"context"

	"github.com/dls-project/dls/core/bootscript"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/internal/pluginrpc/protocolrpc"
)

// Reload re-reads the config (SIGHUP). A config that does not load changes
// nothing. Added plugins start, removed ones stop, a plugin whose binary
// changed restarts, and one whose config block changed is reconfigured in
// place (a protocol: stop, configure, start); other plugins are untouched.
func (d *Daemon) Reload(ctx context.Context) {
	cfg, err := config.Load(d.path)
	if err != nil {
		d.logger.Error("reload refused: config does not load; keeping the running config", "error", err)
		return
	}
	d.mu.Lock()
	old := d.instances
	prevCfg := d.cfg
	d.cfg = cfg
	d.mu.Unlock()
	for _, w := range cfg.Warnings {
		d.logger.Warn(w)
	}
	d.logListenChanges(prevCfg, cfg)
	if tpl, err := bootscript.LoadTemplates(cfg.Boot.Script, clientScripts(cfg)); err != nil {
		d.logger.Error("reload: script templates refused; keeping the running ones", "error", err)
	} else {
		d.services.SetTemplates(tpl)
	}
	d.sessions.SetStageTimeout(cfg.Boot.StageTimeout)
	d.api.SetImportDirs(cfg.ImportDirs)

	seen := map[string]bool{}
	var added []*config.PluginBlock
	for _, b := range cfg.StartOrder() {
		seen[b.Name] = true
		in, ok := old[b.Name]
		if !ok {
			added = append(added, b)
			continue
		}
		in.mu.Lock()
		prev := in.block
		in.mu.Unlock()
		switch {
		case prev.Kind != b.Kind || prev.Type != b.Type || prev.BinaryPath(cfg.PluginDir) != in.sup.Spec().Path || prev.SHA256 != b.SHA256:
			d.logger.Info("reload: plugin binary changed; replacing", "plugin", b.Name)
			d.stopInstance(b.Name)
			added = append(added, b)
		case prev.Grant() != b.Grant() || !prevCfg.PluginUser.Same(cfg.PluginUser):
			// A new process: the old one's broker connection keeps the
			// grant it was served with, and its uid is fixed at start.
			d.logger.Info("reload: plugin host_services or plugin user changed; replacing", "plugin", b.Name)
			d.stopInstance(b.Name)
			added = append(added, b)
		case prev.ConfigHash() != b.ConfigHash():
			d.reconfigure(ctx, in, b)
		}
	}
	for name := range old {
		if !seen[name] {
			d.logger.Info("reload: plugin removed; stopping", "plugin", name)
			d.stopInstance(name)
		}
	}
	d.startPlugins(ctx, added)
	d.reconciler.Apply(ctx, cfg)
}

func (d *Daemon) stopInstance(name string) {
	d.mu.Lock()
	in := d.instances[name]
	delete(d.instances, name)
	d.mu.Unlock()
	if in == nil {
		return
	}
	in.cancel()
	<-in.done
	in.mu.Lock()
	if in.collector != nil {
		d.reg.Unregister(in.collector)
	}
	in.mu.Unlock()
}

// reconfigure applies a changed config block to a running plugin. If the
// new block does not decode, the plugin keeps running its old config.
func (d *Daemon) reconfigure(ctx context.Context, in *instance, b *config.PluginBlock) {
	p := in.sup.Process()
	if p == nil {
		// Not running: the next start uses the new block.
		in.mu.Lock()
		in.block = b
		in.mu.Unlock()
		in.sup.Restart()
		return
	}
	js, err := in.decode(ctx, b, p)
	if err != nil {
		d.logger.Error("reload: new config refused; the plugin keeps its old one", "plugin", b.Name, "error", err)
		return
	}
	pc, isProtocol := p.Client.(*protocolrpc.Client)
	if isProtocol {
		if err := pc.Stop(ctx); err != nil {
			d.logger.Warn("reload: protocol did not stop cleanly", "plugin", b.Name, "error", err)
		}
	}
	if err := in.send(ctx, b, p, js); err != nil {
		// The plugin may hold half of the new config: start it afresh
		// with the new block, which the supervisor reports if it fails.
		d.logger.Error("reload: plugin refused the new config; restarting it", "plugin", b.Name, "error", err)
		in.mu.Lock()
		in.block = b
		in.mu.Unlock()
		in.sup.Restart()
		return
	}
	in.mu.Lock()
	in.block = b
	in.mu.Unlock()
	if isProtocol {
		if err := pc.Start(ctx); err != nil {
			d.logger.Error("reload: start after reconfigure failed; restarting the plugin", "plugin", b.Name, "error", err)
			in.sup.Restart()
			return
		}
	}
	d.logger.Info("reload: plugin reconfigured", "plugin", b.Name)
}

// logListenChanges reports listener addresses a reload cannot move: the
// listeners keep serving where they are until dls restarts.
func (d *Daemon) logListenChanges(prev, next *config.Config) {
	if prev.HTTP.Listen != next.HTTP.Listen {
		d.logger.Warn("reload: http.listen changed; restart dls to move the admin listener", "serving", d.addr, "configured", next.HTTP.Listen)
	}
	if prev.Boot.Listen != next.Boot.Listen {
		serving := d.bootAddr
		if serving == "" {
			serving = "none (/boot on http.listen)"
		}
		configured := next.Boot.Listen
		if configured == "" {
			configured = "none (/boot on http.listen)"
		}
		d.logger.Warn("reload: boot.listen changed; restart dls to move /boot", "serving", serving, "configured", configured)
	}
}
