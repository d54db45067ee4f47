package baserpc

import (
	"context"
	"fmt"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc/hostrpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Client is the host's side of the Base service of one plugin process.
type Client struct {
	rpc    dlsv1.BaseClient
	broker *plugin.GRPCBroker
}

// NewClient returns a Base client on conn. broker may be nil when the host
// offers no services.
func NewClient(conn grpc.ClientConnInterface, broker *plugin.GRPCBroker) *Client {
	return &Client{rpc: dlsv1.NewBaseClient(conn), broker: broker}
}

// Info asks the plugin who it is.
func (c *Client) Info(ctx context.Context) (base.Info, error) {
	i, err := c.rpc.Info(ctx, &dlsv1.Empty{})
	if err != nil {
		return base.Info{}, fmt.Errorf("plugin info: %w", err)
	}
	if i.GetProtocolVersion() != base.ProtocolVersion {
		return base.Info{}, fmt.Errorf("plugin speaks protocol %d, host speaks %d", i.GetProtocolVersion(), base.ProtocolVersion)
	}
	return base.Info{Kind: i.GetKind(), Type: i.GetType(), Version: i.GetVersion(), Capabilities: i.GetCapabilities()}, nil
}

// ConfigSchema returns the plugin's config schema.
func (c *Client) ConfigSchema(ctx context.Context) (*dlsv1.Schema, error) {
	s, err := c.rpc.ConfigSchema(ctx, &dlsv1.Empty{})
	if err != nil {
		return nil, fmt.Errorf("plugin config schema: %w", err)
	}
	return s, nil
}

// ServeHost offers svc to the plugin over the broker and returns the id to
// pass in Configure.
func (c *Client) ServeHost(svc host.Services) uint32 {
	if c.broker == nil {
		return 0
	}
	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, func(opts []grpc.ServerOption) *grpc.Server {
		s := grpc.NewServer(opts...)
		hostrpc.RegisterServer(s, svc)
		return s
	})
	return id
}

// ConfigureArgs is what the host sends in Configure.
type ConfigureArgs struct {
	ConfigJSON []byte
	HostID     uint32
	Instance   string
	DataDir    string
}

// Configure sends a decoded config. Semantic problems the plugin found come
// back as config.Errors with attribute paths; transport failures as error.
func (c *Client) Configure(ctx context.Context, a ConfigureArgs) (config.Errors, error) {
	r, err := c.rpc.Configure(ctx, &dlsv1.ConfigureRequest{
		ConfigJson: a.ConfigJSON, HostBrokerId: a.HostID, Instance: a.Instance, DataDir: a.DataDir,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin configure: %w", err)
	}
	return fromDiagnostics(r.GetDiagnostics()), nil
}

// DescribeMetrics returns the families the plugin declared.
func (c *Client) DescribeMetrics(ctx context.Context) ([]metrics.Desc, error) {
	r, err := c.rpc.DescribeMetrics(ctx, &dlsv1.Empty{})
	if err != nil {
		return nil, fmt.Errorf("plugin describe metrics: %w", err)
	}
	out := make([]metrics.Desc, len(r.GetMetrics()))
	for i, d := range r.GetMetrics() {
		out[i] = metricsDesc(d)
	}
	return out, nil
}

// CollectMetrics pulls the plugin's current samples. The wire form is
// returned as is: the host's collector converts it once, straight into
// Prometheus metrics.
func (c *Client) CollectMetrics(ctx context.Context) (*dlsv1.MetricSamples, error) {
	r, err := c.rpc.CollectMetrics(ctx, &dlsv1.Empty{})
	if err != nil {
		return nil, fmt.Errorf("plugin collect metrics: %w", err)
	}
	return r, nil
}

// Health returns nil when the plugin says it is healthy.
func (c *Client) Health(ctx context.Context) error {
	r, err := c.rpc.Health(ctx, &dlsv1.Empty{})
	if err != nil {
		return fmt.Errorf("plugin health: %w", err)
	}
	if !r.GetHealthy() {
		return fmt.Errorf("plugin unhealthy: %s", r.GetMessage())
	}
	return nil
}

// Stop asks the plugin to drain within grace.
func (c *Client) Stop(ctx context.Context, grace time.Duration) error {
	if _, err := c.rpc.Stop(ctx, &dlsv1.StopRequest{GraceMs: grace.Milliseconds()}); err != nil {
		return fmt.Errorf("plugin stop: %w", err)
	}
	return nil
}
