// Package pluginrpc is the wire between the DLS host and its plugin
// processes: the go-plugin handshake, the plugin sets each side serves and
// dispenses, and, in its subpackages, the gRPC adapters of the Base service
// (baserpc), of each kind (protocolrpc, storagerpc, authrpc) and of the host
// services plugins call back (hostrpc). sdk.Serve,
// sdk/plugintest and the host's supervisor use it; vendors never see it,
// which keeps the SDK's documentation to what a plugin implements or calls.
package pluginrpc

import (
	"fmt"

	"github.com/dls-project/dls/internal/pluginrpc/authrpc"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/internal/pluginrpc/protocolrpc"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Handshake is shared by the host and every plugin. It keeps a plugin binary
// from being run by hand by mistake and checks the protocol version.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  base.ProtocolVersion,
	MagicCookieKey:   "DLS_PLUGIN_MAGIC_COOKIE",
	MagicCookieValue: "7d3c1f0e-dls-diskless-boot-plugin",
}

// ServeConfig builds the go-plugin configuration serving impl as the kind
// it implements. sdk.Serve and sdk/plugintest use it.
func ServeConfig(impl base.Plugin, logger hclog.Logger) (*plugin.ServeConfig, error) {
	kind, p, err := kindPlugin(impl, logger)
	if err != nil {
		return nil, err
	}
	return &plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{base.ProtocolVersion: {kind: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpc.NewServer(append(opts, baserpc.RecoverInterceptors(logger)...)...)
		},
		Logger: logger,
	}, nil
}

func kindPlugin(impl base.Plugin, logger hclog.Logger) (string, plugin.Plugin, error) {
	switch v := impl.(type) {
	case protocol.Protocol:
		return base.KindProtocol, protocolrpc.NewPlugin(v, logger), nil
	case storage.Storage:
		return base.KindStorage, storagerpc.NewPlugin(v, logger), nil
	case auth.Auth:
		return base.KindAuth, authrpc.NewPlugin(v, logger), nil
	}
	return "", nil, fmt.Errorf("dls plugin %T implements no plugin kind (protocol.Protocol, storage.Storage or auth.Auth)", impl)
}

// HostPlugins is the plugin set the host dispenses from: one entry per kind.
// Each dispenses a baserpc.KindClient: *protocolrpc.Client,
// *storagerpc.Client or *authrpc.Client.
func HostPlugins() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{base.ProtocolVersion: {
		base.KindProtocol: protocolrpc.ClientPlugin(),
		base.KindStorage:  storagerpc.ClientPlugin(),
		base.KindAuth:     authrpc.ClientPlugin(),
	}}
}
