package clienttable

import (
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a plugin's series about how it decides clients: from its
// Table, or by a Lookup each.
type Metrics struct {
	// Lookups counts the decisions the plugin asked of the host one
	// machine at a time (Clients.Lookup).
	Lookups prometheus.Counter

	version, clients, live *prometheus.GaugeVec
}

// NewMetrics declares, in reg, prefix+"_host_lookups_total" and the table
// gauges prefix+"_client_table_version", "_client_table_clients" and
// "_client_table_live" (e.g. prefix "dls_dhcp").
func NewMetrics(reg *metrics.Registry, prefix string) Metrics {
	return Metrics{
		Lookups: reg.Counter(prefix+"_host_lookups_total",
			"Boot decisions asked of the host one machine at a time (Clients.Lookup): while the pushed client table is not live, and to register unknown machines.").WithLabelValues(),
		version: reg.Gauge(prefix+"_client_table_version", "Version of the host's client table the plugin answers from (0: none yet)."),
		clients: reg.Gauge(prefix+"_client_table_clients", "Known clients in the pushed client table."),
		live:    reg.Gauge(prefix+"_client_table_live", "1 while packets are decided from the pushed client table, 0 while they are asked of the host."),
	}
}

// Report sets the table gauges from t, for a collection (see
// metrics.Registry.OnCollect); a nil t (not serving) leaves no series.
func (m Metrics) Report(t *Table) {
	m.version.Reset()
	m.clients.Reset()
	m.live.Reset()
	if t == nil {
		return
	}
	ver, n, live := t.State()
	m.version.WithLabelValues().Set(float64(ver))
	m.clients.WithLabelValues().Set(float64(n))
	if live {
		m.live.WithLabelValues().Set(1)
	} else {
		m.live.WithLabelValues().Set(0)
	}
}
