package protocolrpc

import (
	"context"
	"fmt"

	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/protocol"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Client is the host's side of a protocol plugin.
type Client struct {
	base *baserpc.Client
	rpc  dlsv1.ProtocolClient
}

// Base returns the plugin's Base client.
func (c *Client) Base() *baserpc.Client { return c.base }

// Start asks the plugin to begin serving.
func (c *Client) Start(ctx context.Context) error {
	if _, err := c.rpc.Start(ctx, &dlsv1.Empty{}); err != nil {
		return fromStatus("protocol start", err)
	}
	return nil
}

// Stop asks the plugin to stop serving (the Base Stop: drain).
func (c *Client) Stop(ctx context.Context) error {
	return c.base.Stop(ctx, 0)
}

// Status returns what the plugin serves.
func (c *Client) Status(ctx context.Context) (protocol.Status, error) {
	s, err := c.rpc.Status(ctx, &dlsv1.Empty{})
	if err != nil {
		return protocol.Status{}, fromStatus("protocol status", err)
	}
	return protocol.Status{Serving: s.GetServing(), Listeners: s.GetListeners(), Message: s.GetMessage()}, nil
}

// fromStatus maps gRPC's Unimplemented back onto protocol.ErrUnimplemented,
// keeping the plugin's message; other errors are wrapped as they are.
func fromStatus(op string, err error) error {
	if status.Code(err) == codes.Unimplemented {
		return fmt.Errorf("%s: %w (%s)", op, protocol.ErrUnimplemented, status.Convert(err).Message())
	}
	return fmt.Errorf("%s: %w", op, err)
}
