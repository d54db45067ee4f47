package protocol

import (
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// NewPlugin returns the go-plugin glue serving impl (plugin side).
func NewPlugin(impl Protocol, logger hclog.Logger) plugin.Plugin {
	info := impl.Info()
	info.Kind = base.KindProtocol
	return &base.GRPCPlugin{
		Impl: impl, Info: info, Logger: logger,
		RegisterKind: func(s *grpc.Server, _ *plugin.GRPCBroker) error {
			dlsv1.RegisterProtocolServer(s, &server{impl: impl})
			return nil
		},
	}
}

// ClientPlugin returns the go-plugin glue for the host side.
func ClientPlugin() plugin.Plugin {
	return &base.GRPCPlugin{NewKindClient: func(b *base.Client, conn *grpc.ClientConn) base.KindClient {
		return &Client{base: b, rpc: dlsv1.NewProtocolClient(conn)}
	}}
}
