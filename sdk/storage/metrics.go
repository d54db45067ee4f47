package storage

import (
	"context"
	"errors"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Values of the op label, one per operation the SDK records.
const (
	OpImport        = "import"         // ImportImage
	OpCreateVersion = "create_version" // CreateVersion
	OpDeleteVersion = "delete_version" // DeleteVersion
	OpSetCurrent    = "set_current"    // SetCurrentVersion
	OpDeleteImage   = "delete_image"   // DeleteImage
	OpClone         = "clone"          // CreateVolume
	OpReset         = "reset"          // ResetVolume
	OpDeleteVolume  = "delete_volume"  // DeleteVolume
	OpAttach        = "attach"         // Attach
	OpDetach        = "detach"         // Detach
	OpPromote       = "promote"        // Promoter.Promote
)

// Metrics are the inventory gauges every storage plugin reports.
type Metrics struct {
	images    *prometheus.GaugeVec
	used      *prometheus.GaugeVec
	available *prometheus.GaugeVec
	snapshots *prometheus.GaugeVec
}

// NewMetrics declares the inventory gauges on reg, the registry the
// plugin's Metrics method returns.
func NewMetrics(reg *metrics.Registry) *Metrics {
	return &Metrics{
		images:    reg.Gauge("dls_disk_images", "Disk images held by this storage."),
		used:      reg.Gauge("dls_storage_used_bytes", "Bytes used by images, versions and volumes."),
		available: reg.Gauge("dls_storage_available_bytes", "Bytes still available to this storage."),
		snapshots: reg.Gauge("dls_storage_snapshots", "Image versions (snapshots) held by this storage."),
	}
}

// Inventory is what a storage holds, for the gauges.
type Inventory struct {
	Images   int
	Versions int
	Capacity Capacity
}

// Set updates the gauges.
func (m *Metrics) Set(inv Inventory) {
	m.images.WithLabelValues().Set(float64(inv.Images))
	m.snapshots.WithLabelValues().Set(float64(inv.Versions))
	m.used.WithLabelValues().Set(float64(inv.Capacity.Used))
	m.available.WithLabelValues().Set(float64(inv.Capacity.Available))
}

// operations are the families the SDK records around the plugin's
// operations; nil (a plugin without a registry) records nothing.
type operations struct {
	count    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newOperations declares the operation families on impl's registry, if it
// has one.
func newOperations(impl Storage) *operations {
	md, ok := impl.(base.MetricsDeclarer)
	if !ok || md.Metrics() == nil {
		return nil
	}
	reg := md.Metrics()
	return &operations{
		count: reg.Counter("dls_image_operations_total",
			"Image and volume operations by op and result (ok, error).", "op", "result"),
		duration: reg.Histogram("dls_image_operation_duration_seconds",
			"Duration of image and volume operations.", []float64{.001, .01, .1, .5, 1, 5, 30, 120, 600}, "op"),
	}
}

// observe counts one operation that started at start and ended with err.
func (o *operations) observe(op string, start time.Time, err error) {
	if o == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
		if errors.Is(err, context.Canceled) {
			result = "canceled"
		}
	}
	o.count.WithLabelValues(op, result).Inc()
	o.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
