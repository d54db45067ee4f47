// Package sdk is what DLS plugin vendors import. A plugin's main is one line:
//
//	func main() { sdk.Serve(myplugin.New()) }
//
// The plugin's kind (protocol, storage or auth) is the kind interface the
// value implements; see packages sdk/protocol, sdk/storage and sdk/auth.
package sdk

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
)

// Serve runs impl as a plugin until the host stops it. It never returns
// while serving; it exits the process with status 1 when impl is not a
// plugin of any kind or the host did not start it.
func Serve(impl base.Plugin) {
	logger := NewLogger(impl.Info().Type)
	cfg, err := pluginrpc.ServeConfig(impl, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go watchParent(logger, os.Getppid(), time.Second)
	// The host drains plugins (Stop) before it kills them; a SIGTERM sent
	// to the whole process group (a terminal's ^C, a service manager) must
	// not end a plugin before that. The watchdog and the parent-death
	// signal still end it when the host is gone.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	plugin.Serve(cfg)
}

// NewLogger returns the logger plugins should use: JSON lines on stderr,
// which the host parses into its own structured log. Stdout belongs to the
// go-plugin handshake and must never be written to.
func NewLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name: name, Output: os.Stderr, JSONFormat: true, Level: hclog.Trace,
	})
}

// watchParent exits the plugin when the host that started it is gone. The
// host also sets a parent-death signal; this covers platforms without one
// and the window before it is armed.
func watchParent(logger hclog.Logger, parent int, every time.Duration) {
	for range time.Tick(every) {
		if os.Getppid() != parent {
			logger.Error("host process is gone; exiting", "parent", parent)
			os.Exit(2)
		}
	}
}
