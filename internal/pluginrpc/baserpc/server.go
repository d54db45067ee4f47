package baserpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc/hostrpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server adapts a Plugin to the Base gRPC service.
type Server struct {
	dlsv1.UnimplementedBaseServer
	impl   base.Plugin
	info   base.Info
	broker *plugin.GRPCBroker
	logger hclog.Logger

	mu       sync.Mutex
	hostID   uint32
	hostConn *grpc.ClientConn
	services host.Services
}

// NewServer returns the Base service for impl. broker reaches the host's
// services; info carries the kind and capabilities the kind package found.
func NewServer(impl base.Plugin, info base.Info, broker *plugin.GRPCBroker, logger hclog.Logger) *Server {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Server{impl: impl, info: info, broker: broker, logger: logger}
}

// Info implements dlsv1.BaseServer.
func (s *Server) Info(context.Context, *dlsv1.Empty) (*dlsv1.PluginInfo, error) {
	return &dlsv1.PluginInfo{
		Kind: s.info.Kind, Type: s.info.Type, Version: s.info.Version,
		Capabilities: s.info.Capabilities, ProtocolVersion: base.ProtocolVersion,
	}, nil
}

// ConfigSchema implements dlsv1.BaseServer.
func (s *Server) ConfigSchema(context.Context, *dlsv1.Empty) (*dlsv1.Schema, error) {
	cfg := s.impl.NewConfig()
	if cfg == nil {
		return &dlsv1.Schema{}, nil
	}
	sch, err := config.Schema(cfg)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "config schema: %v", err)
	}
	return sch, nil
}

// Configure implements dlsv1.BaseServer.
func (s *Server) Configure(ctx context.Context, req *dlsv1.ConfigureRequest) (*dlsv1.ConfigureResponse, error) {
	cfg := s.impl.NewConfig()
	if cfg != nil {
		if err := config.Decode(req.GetConfigJson(), cfg); err != nil {
			return &dlsv1.ConfigureResponse{Diagnostics: diagnostics(err)}, nil
		}
	}
	svc, conn, err := s.hostServices(req.GetHostBrokerId())
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "connect to host services: %v", err)
	}
	cr := base.ConfigureRequest{
		Config: cfg, Instance: req.GetInstance(), DataDir: req.GetDataDir(),
		Host: svc, Logger: s.logger.Named(req.GetInstance()),
	}
	if conn != nil {
		cr.HostConn = conn
	}
	err = s.impl.Configure(ctx, cr)
	if err != nil {
		var ce *config.Error
		var ces config.Errors
		if errors.As(err, &ce) || errors.As(err, &ces) {
			return &dlsv1.ConfigureResponse{Diagnostics: diagnostics(err)}, nil
		}
		return nil, status.Errorf(codes.FailedPrecondition, "configure: %v", err)
	}
	return &dlsv1.ConfigureResponse{}, nil
}

// hostServices dials the host's broker connection once per id.
func (s *Server) hostServices(id uint32) (host.Services, *grpc.ClientConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == 0 || s.broker == nil {
		return host.Services{}, nil, nil
	}
	if s.hostConn != nil && s.hostID == id {
		return s.services, s.hostConn, nil
	}
	conn, err := s.broker.Dial(id)
	if err != nil {
		return host.Services{}, nil, fmt.Errorf("dial broker id %d: %w", id, err)
	}
	if s.hostConn != nil {
		_ = s.hostConn.Close()
	}
	s.hostID, s.hostConn, s.services = id, conn, hostrpc.NewClient(conn)
	return s.services, conn, nil
}

// DescribeMetrics implements dlsv1.BaseServer.
func (s *Server) DescribeMetrics(context.Context, *dlsv1.Empty) (*dlsv1.MetricDescriptors, error) {
	md, ok := s.impl.(base.MetricsDeclarer)
	if !ok {
		return &dlsv1.MetricDescriptors{}, nil
	}
	descs, err := md.Metrics().Descs()
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "metric declarations: %v", err)
	}
	out := &dlsv1.MetricDescriptors{Metrics: make([]*dlsv1.MetricDescriptor, len(descs))}
	for i, d := range descs {
		out.Metrics[i] = &dlsv1.MetricDescriptor{
			Name: d.Name, Help: d.Help, Type: dlsv1.MetricDescriptor_Type(d.Type),
			Labels: d.Labels, Buckets: d.Buckets,
		}
	}
	return out, nil
}

// CollectMetrics implements dlsv1.BaseServer.
func (s *Server) CollectMetrics(context.Context, *dlsv1.Empty) (*dlsv1.MetricSamples, error) {
	md, ok := s.impl.(base.MetricsDeclarer)
	if !ok {
		return &dlsv1.MetricSamples{}, nil
	}
	fams, err := md.Metrics().Collect()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "collect metrics: %v", err)
	}
	out := &dlsv1.MetricSamples{Families: make([]*dlsv1.MetricFamily, len(fams))}
	for i, f := range fams {
		pf := &dlsv1.MetricFamily{Name: f.Name, Samples: make([]*dlsv1.Sample, len(f.Samples))}
		for j, smp := range f.Samples {
			pf.Samples[j] = &dlsv1.Sample{
				LabelValues: smp.LabelValues, Value: smp.Value,
				Count: smp.Count, Sum: smp.Sum, BucketCounts: smp.BucketCounts,
			}
		}
		out.Families[i] = pf
	}
	return out, nil
}

// Health implements dlsv1.BaseServer.
func (s *Server) Health(ctx context.Context, _ *dlsv1.Empty) (*dlsv1.HealthResponse, error) {
	hc, ok := s.impl.(base.HealthChecker)
	if !ok {
		return &dlsv1.HealthResponse{Healthy: true}, nil
	}
	if err := hc.Health(ctx); err != nil {
		return &dlsv1.HealthResponse{Healthy: false, Message: err.Error()}, nil
	}
	return &dlsv1.HealthResponse{Healthy: true}, nil
}

// Stop implements dlsv1.BaseServer.
func (s *Server) Stop(ctx context.Context, req *dlsv1.StopRequest) (*dlsv1.Empty, error) {
	if st, ok := s.impl.(base.Stopper); ok {
		grace := time.Duration(req.GetGraceMs()) * time.Millisecond
		if grace <= 0 {
			grace = 5 * time.Second
		}
		sctx, cancel := context.WithTimeout(ctx, grace)
		defer cancel()
		if err := st.Stop(sctx); err != nil {
			return nil, status.Errorf(codes.Internal, "stop: %v", err)
		}
	}
	return &dlsv1.Empty{}, nil
}

var _ dlsv1.BaseServer = (*Server)(nil)

// metricsDesc converts wire descriptors; used by the client.
func metricsDesc(d *dlsv1.MetricDescriptor) metrics.Desc {
	return metrics.Desc{
		Name: d.GetName(), Help: d.GetHelp(), Type: metrics.Type(d.GetType()),
		Labels: d.GetLabels(), Buckets: d.GetBuckets(),
	}
}
