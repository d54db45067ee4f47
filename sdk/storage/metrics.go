package storage

import (
	"context"
	"errors"
	"time"

	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the families every storage plugin reports, declared on the
// plugin's registry. The host adds the plugin label.
type Metrics struct {
	images     *prometheus.GaugeVec
	used       *prometheus.GaugeVec
	available  *prometheus.GaugeVec
	snapshots  *prometheus.GaugeVec
	operations *prometheus.CounterVec
	durations  *prometheus.HistogramVec
}

// Operation names for Observe, the op label's values.
const (
	OpImport        = "import"
	OpCreateVersion = "create_version"
	OpDeleteVersion = "delete_version"
	OpSetCurrent    = "set_current"
	OpDeleteImage   = "delete_image"
	OpClone         = "clone"
	OpReset         = "reset"
	OpDeleteVolume  = "delete_volume"
	OpAttach        = "attach"
	OpDetach        = "detach"
	OpPromote       = "promote"
)

// NewMetrics declares the storage families on reg.
func NewMetrics(reg *metrics.Registry) *Metrics {
	return &Metrics{
		images:    reg.Gauge("dls_disk_images", "Disk images held by this storage."),
		used:      reg.Gauge("dls_storage_used_bytes", "Bytes used by images, versions and volumes."),
		available: reg.Gauge("dls_storage_available_bytes", "Bytes still available to this storage."),
		snapshots: reg.Gauge("dls_storage_snapshots", "Image versions (snapshots) held by this storage."),
		operations: reg.Counter("dls_image_operations_total",
			"Image and volume operations by op and result (ok, error).", "op", "result"),
		durations: reg.Histogram("dls_image_operation_duration_seconds",
			"Duration of image and volume operations.", []float64{.001, .01, .1, .5, 1, 5, 30, 120, 600}, "op"),
	}
}

// Observe counts one operation that started at start; use it deferred:
//
//	defer m.Observe(storage.OpClone, time.Now(), &err)
func (m *Metrics) Observe(op string, start time.Time, err *error) {
	result := "ok"
	if err != nil && *err != nil {
		result = "error"
		if errors.Is(*err, context.Canceled) {
			result = "canceled"
		}
	}
	m.operations.WithLabelValues(op, result).Inc()
	m.durations.WithLabelValues(op).Observe(time.Since(start).Seconds())
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
