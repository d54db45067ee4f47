package storage

import (
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// NewPlugin returns the go-plugin glue serving impl (plugin side). It
// declares the operation metrics on impl's registry: serve an impl once.
func NewPlugin(impl Storage, logger hclog.Logger) plugin.Plugin {
	info := impl.Info()
	info.Kind = base.KindStorage
	info.Capabilities = nil
	if _, ok := impl.(Promoter); ok {
		info.Capabilities = append(info.Capabilities, CapabilityPromote)
	}
	srv := &server{impl: impl, ops: newOperations(impl)}
	return &base.GRPCPlugin{
		Impl: impl, Info: info, Logger: logger,
		RegisterKind: func(s *grpc.Server, _ *plugin.GRPCBroker) error {
			dlsv1.RegisterStorageServer(s, srv)
			return nil
		},
	}
}

// ClientPlugin returns the go-plugin glue for the host side.
func ClientPlugin() plugin.Plugin {
	return &base.GRPCPlugin{NewKindClient: func(b *base.Client, conn *grpc.ClientConn) base.KindClient {
		return &Client{base: b, rpc: dlsv1.NewStorageClient(conn)}
	}}
}
