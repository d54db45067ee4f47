package baserpc

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/dls-project/dls/sdk/base"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// KindClient is implemented by each kind's host-side client; the host
// handles every plugin through its Base.
type KindClient interface {
	Base() *Client
}

// GRPCPlugin is the go-plugin glue shared by every kind: it serves Base plus
// the kind's own service and builds the kind's client on the host side.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin

	// Impl is set on the plugin side only.
	Impl base.Plugin
	// Info is the plugin's identity with kind and capabilities filled in.
	Info base.Info
	// Logger is where the plugin side logs.
	Logger hclog.Logger
	// RegisterKind registers the kind's gRPC service for Impl.
	RegisterKind func(s *grpc.Server, broker *plugin.GRPCBroker) error
	// NewKindClient builds the host-side client of the kind.
	NewKindClient func(base *Client, conn *grpc.ClientConn) KindClient
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	RegisterServer(s, NewServer(p.Impl, p.Info, broker, p.Logger))
	return p.RegisterKind(s, broker)
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, conn *grpc.ClientConn) (any, error) {
	return p.NewKindClient(NewClient(conn, broker), conn), nil
}

// RecoverInterceptors turn a panic in a plugin's handler into an Internal
// error: a bug in one request must not take the plugin down with it.
func RecoverInterceptors(logger hclog.Logger) []grpc.ServerOption {
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("panic in plugin handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "%s: plugin panic: %v", info.FullMethod, r)
			}
		}()
		return h(ctx, req)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				logger.Error("panic in plugin handler", "method", info.FullMethod, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "%s: plugin panic: %v", info.FullMethod, r)
			}
		}()
		return h(srv, ss)
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream)}
}
