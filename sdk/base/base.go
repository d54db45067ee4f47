// Package base is what every DLS plugin has in common, whatever its kind:
// identity, configuration, metrics, health and drain. The kind packages
// (protocol, storage, auth) build on it.
package base

import (
	"context"
	"google.golang.org/grpc"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/hashicorp/go-hclog"
)

// ProtocolVersion is the plugin protocol this SDK speaks. The host refuses
// plugins built against another version.
const ProtocolVersion = 1

// Plugin kinds.
const (
	KindProtocol = "protocol"
	KindStorage  = "storage"
	KindAuth     = "auth"
)

// Plugin is the base every DLS plugin implements.
type Plugin interface {
	// Info names the plugin's type and version. The SDK fills in the kind
	// and the capabilities from the interfaces the plugin implements.
	Info() Info
	// NewConfig returns a pointer to a fresh config struct with its
	// defaults set. Its hcl-tagged fields are the plugin's config schema
	// (see package sdk/config); the SDK decodes each Configure into a new
	// one. Return nil for a plugin without configuration.
	NewConfig() any
	// Configure applies a configuration the host has already validated
	// against the schema. It is called once before the plugin starts and
	// again when the admin reloads a changed config. Return *config.Error
	// values to point the admin at an attribute.
	Configure(ctx context.Context, req ConfigureRequest) error
}

// Info identifies a plugin.
type Info struct {
	// Kind is protocol, storage or auth (set by the SDK).
	Kind string
	// Type is the plugin type named in HCL: storage "<type>" "<name>".
	Type string
	// Version is the plugin's own version.
	Version string
	// Capabilities are optional features offered (set by the SDK).
	Capabilities []string
}

// ConfigureRequest carries what a plugin needs to configure itself.
type ConfigureRequest struct {
	// Config is the value NewConfig returned, decoded from the HCL block.
	Config any
	// Instance is the plugin instance name (the metric label "plugin").
	Instance string
	// DataDir is a directory the plugin may own for its state.
	DataDir string
	// Host gives access to the host's services.
	Host host.Services
	// HostConn is the connection Host runs on, for a plugin that calls
	// the host's gRPC services (sdk/proto/dlsv1) directly; nil when the
	// host offers no services. The host enforces each instance's grant on
	// its side, whichever way the plugin calls.
	HostConn grpc.ClientConnInterface
	// Logger writes structured logs to stderr, which the host collects.
	Logger hclog.Logger
}

// MetricsDeclarer is implemented by plugins that report metrics. Metrics
// must return the same registry every time: the host reads its
// declarations once per plugin start and its samples at every scrape. Use
// Registry.OnCollect to refresh gauges at collection time.
type MetricsDeclarer interface {
	Metrics() *metrics.Registry
}

// HealthChecker is implemented by plugins that can tell whether they work.
// The host calls it periodically; an error marks the plugin unhealthy.
type HealthChecker interface {
	Health(ctx context.Context) error
}

// Stopper is implemented by plugins that need to drain before the process
// is killed: close listeners, finish transfers, flush. ctx ends when the
// grace period does.
type Stopper interface {
	Stop(ctx context.Context) error
}
