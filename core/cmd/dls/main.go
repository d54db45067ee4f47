// Command dls is the DLS host and its admin tools.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `dls — diskless-boot server

Usage:
  dls serve    --config FILE   run the host (foreground, logs to stderr)
  dls validate --config FILE   check FILE and every plugin's config block
  dls plugins  --config FILE   list plugins: kind, type, version, config schema
  dls user add NAME --password-stdin --role admin|operator|viewer --config FILE
  dls user passwd|delete|list ...   (runs the auth plugin; no host needed)
  dls version

` + apiUsage

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if cmd == "user" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return user(ctx, rest, os.Stdin, stdout, stderr)
	}
	if isAPICommand(cmd) {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return apiCommand(ctx, cmd, rest, os.Stdin, stdout, stderr)
	}
	fs := flag.NewFlagSet("dls "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "dls.hcl", "config file")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	logJSON := fs.Bool("log-json", false, "log JSON lines")
	switch cmd {
	case "serve", "validate", "plugins":
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "dls", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "dls: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	logger := newLogger(stderr, *logLevel, *logJSON)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch cmd {
	case "serve":
		err = serve(ctx, *cfgPath, logger)
	case "validate":
		err = validate(ctx, *cfgPath, stdout, stderr, logger)
	case "plugins":
		err = plugins(ctx, *cfgPath, stdout, logger)
	}
	if err != nil {
		var ve validationErrors
		if errors.As(err, &ve) {
			fmt.Fprintln(stderr, ve.Error())
		} else {
			fmt.Fprintln(stderr, "dls:", err)
		}
		return 1
	}
	return 0
}
