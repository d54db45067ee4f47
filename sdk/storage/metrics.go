package storage

import (
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
