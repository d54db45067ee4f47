// Package storagerpc carries the Storage service of sdk/storage between
// the host and a storage plugin: the plugin side's server adapts a
// storage.Storage to gRPC, the host side's Client calls it, and sentinel
// errors travel as gRPC codes so that errors.Is works on both sides.
package storagerpc

import (
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// NewPlugin returns the go-plugin glue serving impl (plugin side). It
// declares the operation metrics on impl's registry: serve an impl once.
func NewPlugin(impl storage.Storage, logger hclog.Logger) plugin.Plugin {
	info := impl.Info()
	info.Kind = base.KindStorage
	info.Capabilities = nil
	if _, ok := impl.(storage.Promoter); ok {
		info.Capabilities = append(info.Capabilities, storage.CapabilityPromote)
	}
	srv := &server{impl: impl, ops: newOperations(impl)}
	return &baserpc.GRPCPlugin{
		Impl: impl, Info: info, Logger: logger,
		RegisterKind: func(s *grpc.Server, _ *plugin.GRPCBroker) error {
			dlsv1.RegisterStorageServer(s, srv)
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
