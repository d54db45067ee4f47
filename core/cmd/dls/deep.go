package main

// The deep checks (core/preflight) as validate --deep prints them and
// serve logs them.

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/preflight"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/hashicorp/go-hclog"
)

// deepFindings prints the notes of fs to stderr and returns the problems
// as validation errors (file:line:col lines), or nil when there are none.
func deepFindings(fs []preflight.Finding, stderr io.Writer) error {
	var problems validationErrors
	for _, f := range fs {
		if f.Note {
			fmt.Fprintln(stderr, f.String())
		} else {
			problems = append(problems, f.String())
		}
	}
	if len(problems) > 0 {
		return problems
	}
	return nil
}

// preflightAtStart runs the deep checks for dls serve, before the host
// binds anything (so a port in use is someone else's, not ours), and logs
// each finding as a warning: they do not stop the host. The protocol
// plugins the checks read are launched, at once, just long enough to
// decode their config blocks; a config that does not load is left to the
// host to report.
func preflightAtStart(ctx context.Context, path string, logger hclog.Logger) {
	cfg, err := config.Load(path)
	if err != nil {
		return
	}
	// The launches log nothing: the host starts these plugins next and
	// reports their problems itself. (A sub-logger's SetLevel would
	// silence the host's logger too: they share the level.)
	decoded := decodeProtocols(ctx, cfg, hclog.NewNullLogger())
	for _, f := range preflight.Check(ctx, preflight.Input{Config: cfg, Plugins: decoded}) {
		if f.Note {
			logger.Info("preflight: " + f.String())
		} else {
			logger.Warn("preflight: " + f.String())
		}
	}
}

// decodeProtocols decodes the config blocks of the protocol plugins the
// deep checks read (dhcp, tftp, iscsi) against their schemas, launching
// them in parallel; blocks whose plugin does not start or whose config
// does not decode are left out (the host reports those).
func decodeProtocols(ctx context.Context, cfg *config.Config, logger hclog.Logger) map[string][]byte {
	launcher := supervisor.NewLauncher()
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = map[string][]byte{}
	)
	for _, b := range cfg.Plugins {
		if b.Kind != config.KindProtocol || (b.Type != "dhcp" && b.Type != "tftp" && b.Type != "iscsi") {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec := supervisor.Spec{Name: b.Name, Kind: b.Kind, Type: b.Type, Path: b.BinaryPath(cfg.PluginDir), SHA256: b.SHA256}
			p, err := supervisor.Launch(ctx, spec, launcher, logger.Named(b.Name))
			if err != nil {
				return
			}
			defer p.Kill()
			schema, err := p.Base().ConfigSchema(ctx)
			if err != nil {
				return
			}
			if js, err := b.DecodeConfig(schema); err == nil {
				mu.Lock()
				out[b.Name] = js
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}
