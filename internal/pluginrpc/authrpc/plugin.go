// Package authrpc carries the Auth service of sdk/auth between the host and
// an auth plugin: the plugin side's server adapts an auth.Auth to gRPC, the
// host side's Client calls it, and sentinel errors travel as gRPC codes so
// that errors.Is works on both sides.
package authrpc

import (
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// NewPlugin returns the go-plugin glue serving impl (plugin side).
func NewPlugin(impl auth.Auth, logger hclog.Logger) plugin.Plugin {
	info := impl.Info()
	info.Kind = base.KindAuth
	info.Capabilities = nil
	if _, ok := impl.(auth.UserAdmin); ok {
		info.Capabilities = append(info.Capabilities, auth.CapabilityUserAdmin)
	}
	return &baserpc.GRPCPlugin{
		Impl: impl, Info: info, Logger: logger,
		RegisterKind: func(s *grpc.Server, _ *plugin.GRPCBroker) error {
			dlsv1.RegisterAuthServer(s, &server{impl: impl})
			return nil
		},
	}
}

// ClientPlugin returns the go-plugin glue for the host side.
func ClientPlugin() plugin.Plugin {
	return &baserpc.GRPCPlugin{NewKindClient: func(b *baserpc.Client, conn *grpc.ClientConn) baserpc.KindClient {
		return &Client{base: b, rpc: dlsv1.NewAuthClient(conn)}
	}}
}
