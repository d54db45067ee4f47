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

	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Serve runs impl as a plugin until the host stops it. It never returns
// while serving; it exits the process with status 1 when impl is not a
// plugin of any kind or the host did not start it.
func Serve(impl base.Plugin) {
	logger := NewLogger(impl.Info().Type)
	cfg, err := ServeConfig(impl, logger)
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

// ServeConfig builds the go-plugin configuration serving impl. Serve and
// sdk/plugintest use it; vendors call Serve.
func ServeConfig(impl base.Plugin, logger hclog.Logger) (*plugin.ServeConfig, error) {
	kind, p, err := kindPlugin(impl, logger)
	if err != nil {
		return nil, err
	}
	return &plugin.ServeConfig{
		HandshakeConfig:  base.Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{base.ProtocolVersion: {kind: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, base.RecoverInterceptors(logger)...)...)
		},
		Logger: logger,
	}, nil
}

func kindPlugin(impl base.Plugin, logger hclog.Logger) (string, plugin.Plugin, error) {
	switch v := impl.(type) {
	case protocol.Protocol:
		return base.KindProtocol, protocol.NewPlugin(v, logger), nil
	case storage.Storage:
		return base.KindStorage, storage.NewPlugin(v, logger), nil
	case auth.Auth:
		return base.KindAuth, auth.NewPlugin(v, logger), nil
	}
	return "", nil, fmt.Errorf("dls plugin %T implements no plugin kind (protocol.Protocol, storage.Storage or auth.Auth)", impl)
}

// HostPlugins is the plugin set the host dispenses from: one entry per kind.
func HostPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{base.ProtocolVersion: {
		base.KindProtocol: protocol.ClientPlugin(),
		base.KindStorage:  storage.ClientPlugin(),
		base.KindAuth:     auth.ClientPlugin(),
	}}
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
