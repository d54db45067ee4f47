package main

// The commands that run on the host with its config file: serve, validate,
// plugins.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/dls-project/dls/core/config"
	"github.com/dls-project/dls/core/daemon"
	"github.com/dls-project/dls/core/preflight"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/go-hclog"
)

// hostFlags are the flags of serve, validate and plugins.
type hostFlags struct {
	config   string
	logLevel string
	logJSON  bool
}

func (h *hostFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&h.config, "config", "", configUsage)
	fs.StringVar(&h.logLevel, "log-level", "info", "`LEVEL` log level: trace, debug, info, warn, error")
	fs.BoolVar(&h.logJSON, "log-json", false, "log JSON lines")
}

func (h *hostFlags) logger(w io.Writer) hclog.Logger {
	return newLogger(w, h.logLevel, h.logJSON)
}

// hostCommand is serve, validate or plugins: do with the parsed flags.
func hostCommand(name, summary, help, example string, do func(ctx context.Context, c *cli, h *hostFlags) error) *command {
	var h hostFlags
	return &command{
		name: name, args: "[--config FILE]", summary: summary, help: help, example: example,
		flags: h.register,
		run: func(ctx context.Context, c *cli, _ []string) error {
			h.config = configFile(h.config, c.getenv, fileExists)
			return hostExit(c, do(ctx, c, &h))
		},
	}
}

// hostExit prints a host command's error as these commands always have:
// a config's problems as bare file:line:col lines, anything else after
// "dls:".
func hostExit(c *cli, err error) error {
	var ve validationErrors
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ve):
		fmt.Fprintln(c.stderr, ve.Error())
	default:
		fmt.Fprintln(c.stderr, "dls:", err)
	}
	return exitCode(1)
}

func serveCommand() *command {
	return hostCommand("serve", "Run the host (foreground, logs to stderr)",
		"SIGHUP reloads the config; SIGINT and SIGTERM stop the host and its plugins.\n",
		"dls serve --config /etc/dls/dls.hcl",
		func(ctx context.Context, c *cli, h *hostFlags) error {
			return serve(ctx, h.config, h.logger(c.stderr))
		})
}

func validateCommand() *command {
	var deep bool
	cmd := hostCommand("validate", "Check the config file and every plugin's config block",
		"Prints the config's warnings to standard error (they do not fail it) and\n\"FILE: ok\" when it and every plugin's config block load; each problem\nas file:line:col.\n\n"+
			"--deep also checks the config against this machine: interfaces and their\naddresses, free ports, image sources, the iPXE builds DHCP hands out, an\nabsolute boot URL on the boot interface, the iSCSI port the scripts name.\nNothing needs DLS running.\n",
		"dls validate --deep --config /etc/dls/dls.hcl",
		func(ctx context.Context, c *cli, h *hostFlags) error {
			return validate(ctx, h.config, deep, c.stdout, c.stderr, h.logger(c.stderr))
		})
	own := cmd.flags
	cmd.flags = func(fs *flag.FlagSet) {
		own(fs)
		fs.BoolVar(&deep, "deep", false, "also check the config against this machine")
	}
	return cmd
}

func pluginsCommand() *command {
	return hostCommand("plugins", "List plugins: kind, type, version, config schema",
		"Launches each plugin of the config just long enough to ask it.\n",
		"dls plugins --config dls.hcl",
		func(ctx context.Context, c *cli, h *hostFlags) error {
			return plugins(ctx, h.config, c.stdout, h.logger(c.stderr))
		})
}

func newLogger(w io.Writer, level string, json bool) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: "dls", Output: w, Level: hclog.LevelFromString(level), JSONFormat: json,
	})
}

func serve(ctx context.Context, path string, logger hclog.Logger) error {
	// Before the host binds anything: a port found in use is another
	// program's. Findings are warnings, the host starts anyway.
	preflightAtStart(ctx, path, logger)
	d, err := daemon.New(ctx, path, logger)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return d.Run(ctx, hup)
}

// validationErrors prints as file:line:col lines, one per problem.
type validationErrors []string

func (v validationErrors) Error() string { return strings.Join(v, "\n") }

// inspect launches each plugin of the config just long enough for fn.
func inspect(ctx context.Context, cfg *config.Config, logger hclog.Logger, fn func(b *config.PluginBlock, p *supervisor.Process) error) error {
	launcher := supervisor.NewLauncher()
	var problems validationErrors
	for _, b := range cfg.Plugins {
		spec := supervisor.Spec{Name: b.Name, Kind: b.Kind, Type: b.Type, Path: b.BinaryPath(cfg.PluginDir), SHA256: b.SHA256}
		p, err := supervisor.Launch(ctx, spec, launcher, logger.Named(b.Name))
		if err != nil {
			r := b.DeclRange
			problems = append(problems, fmt.Sprintf("%s:%d:%d: %v", r.Filename, r.Start.Line, r.Start.Column, err))
			continue
		}
		err = fn(b, p)
		p.Kill()
		if err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return problems
	}
	return nil
}

// validate prints the config's warnings to stderr (they do not fail it)
// and "ok" to stdout when it and every plugin's config block load.
func validate(ctx context.Context, path string, deep bool, stdout, stderr io.Writer, logger hclog.Logger) error {
	cfg, err := config.Load(path)
	if err != nil {
		return validationErrors{err.Error()}
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, w)
	}
	quiet := logger.ResetNamed("validate")
	quiet.SetLevel(hclog.Error)
	decoded := map[string][]byte{}
	err = inspect(ctx, cfg, quiet, func(b *config.PluginBlock, p *supervisor.Process) error {
		schema, err := p.Base().ConfigSchema(ctx)
		if err != nil {
			return fmt.Errorf("plugin %s: %w", b.Name, err)
		}
		js, err := b.DecodeConfig(schema)
		decoded[b.Name] = js
		return err
	})
	if err != nil {
		return err
	}
	if deep {
		if err := deepFindings(preflight.Check(ctx, preflight.Input{Config: cfg, Plugins: decoded}), stderr); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: ok (%d plugins; deep checks passed)\n", filepath.Base(path), len(cfg.Plugins))
		return nil
	}
	fmt.Fprintf(stdout, "%s: ok (%d plugins)\n", filepath.Base(path), len(cfg.Plugins))
	return nil
}

func plugins(ctx context.Context, path string, stdout io.Writer, logger hclog.Logger) error {
	cfg, err := config.Load(path)
	if err != nil {
		return validationErrors{err.Error()}
	}
	quiet := logger.ResetNamed("plugins")
	quiet.SetLevel(hclog.Error)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tKIND\tTYPE\tVERSION\tCAPABILITIES\tBINARY")
	type entry struct {
		name   string
		schema *dlsv1.Schema
	}
	var schemas []entry
	err = inspect(ctx, cfg, quiet, func(b *config.PluginBlock, p *supervisor.Process) error {
		schema, err := p.Base().ConfigSchema(ctx)
		if err != nil {
			return fmt.Errorf("plugin %s: %w", b.Name, err)
		}
		caps := strings.Join(p.Info.Capabilities, ",")
		if caps == "" {
			caps = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, p.Info.Kind, p.Info.Type, p.Info.Version, caps, b.BinaryPath(cfg.PluginDir))
		schemas = append(schemas, entry{b.Name, schema})
		return nil
	})
	_ = tw.Flush()
	for _, e := range schemas {
		fmt.Fprintf(stdout, "\n%s config {\n", e.name)
		printSchema(stdout, e.schema, "  ")
		fmt.Fprintln(stdout, "}")
	}
	return err
}

func printSchema(w io.Writer, s *dlsv1.Schema, indent string) {
	for _, a := range s.GetAttributes() {
		var typ any
		_ = json.Unmarshal(a.GetType(), &typ)
		req := "optional"
		if a.GetRequired() {
			req = "required"
		}
		line := fmt.Sprintf("%s%s = %v  # %s", indent, a.GetName(), typ, req)
		if a.GetFormat() != "" {
			line += ", " + a.GetFormat()
		}
		if len(a.GetDefaultJson()) > 0 {
			line += ", default " + string(a.GetDefaultJson())
		}
		if a.GetDoc() != "" {
			line += ": " + a.GetDoc()
		}
		fmt.Fprintln(w, line)
	}
	for _, b := range s.GetBlocks() {
		rep := ""
		if b.GetNesting() == dlsv1.NestedBlock_LIST {
			rep = "  # may repeat"
		}
		if b.GetDoc() != "" {
			rep += "  # " + b.GetDoc()
		}
		fmt.Fprintf(w, "%s%s {%s\n", indent, b.GetName(), rep)
		printSchema(w, b.GetBlock(), indent+"  ")
		fmt.Fprintf(w, "%s}\n", indent)
	}
}
