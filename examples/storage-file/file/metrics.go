package file

import (
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/storage"
)

// instruments are the plugin's metric families: the SDK's standard
// storage gauges (storage.NewMetrics), so that every storage plugin a host
// runs reports them with the same names, labels and help. The SDK adds and
// records the operation families on the same registry.
type instruments struct {
	reg *metrics.Registry
	std *storage.Metrics
}

func newInstruments() *instruments {
	reg := metrics.NewRegistry()
	return &instruments{reg: reg, std: storage.NewMetrics(reg)}
}

// refresh sets the gauges from the store's state and the filesystem.
func (m *instruments) refresh(st *store) {
	images, versions := st.counts()
	inv := storage.Inventory{Images: images, Versions: versions}
	inv.Capacity.Used = st.used()
	if avail, err := st.available(); err == nil {
		inv.Capacity.Available = avail
	}
	m.std.Set(inv)
}
