package file

import (
	"time"

	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// operationBuckets are the upper bounds of dls_image_operation_duration_seconds:
// a full copy of a disk image takes from milliseconds to many minutes.
var operationBuckets = []float64{.01, .1, .5, 1, 5, 10, 30, 60, 120, 300, 600}

// instruments are the plugin's metric families, declared once.
type instruments struct {
	reg        *metrics.Registry
	images     prometheus.Gauge
	snapshots  prometheus.Gauge
	used       prometheus.Gauge
	available  prometheus.Gauge
	operations *prometheus.CounterVec
	durations  *prometheus.HistogramVec
}

func newInstruments() *instruments {
	reg := metrics.NewRegistry()
	return &instruments{
		reg:       reg,
		images:    reg.Gauge("dls_disk_images", "Disk images stored.").WithLabelValues(),
		snapshots: reg.Gauge("dls_storage_snapshots", "Image versions stored.").WithLabelValues(),
		used:      reg.Gauge("dls_storage_used_bytes", "Bytes held by image versions and volumes.").WithLabelValues(),
		available: reg.Gauge("dls_storage_available_bytes", "Bytes still available on the filesystem holding the storage root.").WithLabelValues(),
		operations: reg.Counter("dls_image_operations_total",
			"Image and volume operations, successful or not, by operation.", "op"),
		durations: reg.Histogram("dls_image_operation_duration_seconds",
			"Time taken by image and volume operations, by operation.", operationBuckets, "op"),
	}
}

// observe records one operation that started at start, and refreshes the
// gauges it may have changed.
func (m *instruments) observe(op string, start time.Time, st *store) {
	m.operations.WithLabelValues(op).Inc()
	m.durations.WithLabelValues(op).Observe(time.Since(start).Seconds())
	m.refresh(st)
}

// refresh sets the gauges from the store's state and the filesystem.
func (m *instruments) refresh(st *store) {
	images, versions := st.counts()
	m.images.Set(float64(images))
	m.snapshots.Set(float64(versions))
	m.used.Set(float64(st.used()))
	if avail, err := st.available(); err == nil {
		m.available.Set(float64(avail))
	}
}
