// Package protocolrpc carries the Protocol service of sdk/protocol between
// the host and a protocol plugin: the plugin side's server adapts a
// protocol.Protocol to gRPC and the host side's Client calls it.
package protocolrpc

import (
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/protocol"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// NewPlugin returns the go-plugin glue serving impl (plugin side).
func NewPlugin(impl protocol.Protocol, logger hclog.Logger) plugin.Plugin {
	info := impl.Info()
	info.Kind = base.KindProtocol
	return &baserpc.GRPCPlugin{
		Impl: impl, Info: info, Logger: logger,
		RegisterKind: func(s *grpc.Server, _ *plugin.GRPCBroker) error {
			dlsv1.RegisterProtocolServer(s, &server{impl: impl})
			return nil
		},
	}
}

// ClientPlugin returns the go-plugin glue for the host side.
func ClientPlugin() plugin.Plugin {
	return &baserpc.GRPCPlugin{NewKindClient: func(b *baserpc.Client, conn *grpc.ClientConn) baserpc.KindClient {
		return &Client{base: b, rpc: dlsv1.NewProtocolClient(conn)}
	}}
}
