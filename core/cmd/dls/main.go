// Command dls is the DLS host and its admin tools.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &cli{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}
	return c.dispatch(ctx, commands(), "dls", args)
}

// commands is the command tree: each group in its own file.
func commands() *command {
	return &command{
		name:    "dls",
		summary: "dls — diskless-boot server",
		help:    rootHelp,
		sub: []*command{
			initCommand(), serveCommand(), validateCommand(), pluginsCommand(), userCommand(),
			loginCommand(), logoutCommand(),
			statusCommand(), clientCommand(), wakeCommand(), imageCommand(), sessionCommand(),
			backupCommand(), restoreCommand(),
			versionCommand(), completionCommand(),
		},
	}
}

const rootHelp = `init writes a site config for this machine's LAN. serve, validate,
plugins and user run on the host, with its config file (--config FILE, else
$DLS_CONFIG, else /etc/dls/dls.hcl when it exists, else ./dls.hcl); user
needs no running host. Run as root where the service user dls exists, user
hands the files it writes to dls.

The others are clients of a running host's /api/v1. Each takes
--server URL (default: $DLS_SERVER, else the server logged in to, else
` + defaultServer + `), --tls-ca FILE, --insecure and -o table|json.
Credentials live in $XDG_CONFIG_HOME/dls/credentials.json (else
~/.config/dls/credentials.json), mode 0600.
`
