package storage

import (
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// NewPlugin returns the go-plugin glue serving impl (plugin side).
func NewPlugin(impl Storage, logger hclog.Logger) plugin.Plugin {
	info := impl.Info()
	info.Kind = base.KindStorage
	info.Capabilities = nil
	if _, ok := impl.(Promoter); ok {
		info.Capabilities = append(info.Capabilities, CapabilityPromote)
	}
	return &baserpc.GRPCPlugin{
		Impl: impl, Info: info, Logger: logger,
		RegisterKind: func(s *grpc.Server, _ *plugin.GRPCBroker) error {
			dlsv1.RegisterStorageServer(s, &server{impl: impl})
			return nil
		},
	}
}

// ClientPlugin returns the go-plugin glue for the host side.
func ClientPlugin() plugin.Plugin {
	return &baserpc.GRPCPlugin{NewKindClient: func(b *baserpc.Client, conn *grpc.ClientConn) baserpc.KindClient {
		return &Client{base: b, rpc: dlsv1.NewStorageClient(conn)}
	}}
}
