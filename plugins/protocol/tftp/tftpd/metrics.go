package tftpd

import (
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the plugin's families. None is labelled by file or client.
type Metrics struct {
	Requests    prometheus.Counter
	Errors      *prometheus.CounterVec
	SentBytes   prometheus.Counter
	Retransmits prometheus.Counter
	Duration    prometheus.Observer
	Active      prometheus.Gauge
}

// durationBuckets span a script (milliseconds) to a large image over
// lock-step TFTP (minutes).
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// NewMetrics declares the families on reg.
func NewMetrics(reg *metrics.Registry) *Metrics {
	m := &Metrics{
		Requests: reg.Counter("dls_tftp_requests_total",
			"TFTP read and write requests received (a retransmitted request is counted once).").WithLabelValues(),
		Errors: reg.Counter("dls_tftp_errors_total",
			"TFTP requests refused and transfers that failed, by reason.", "reason"),
		SentBytes: reg.Counter("dls_tftp_sent_bytes_total",
			"TFTP data bytes sent, retransmissions included.").WithLabelValues(),
		Retransmits: reg.Counter("dls_tftp_retransmits_total",
			"TFTP packets sent again after a timeout or a client's partial window acknowledgement.").WithLabelValues(),
		Duration: reg.Histogram("dls_tftp_transfer_duration_seconds",
			"Time from a read request to the acknowledgement of its last block, for transfers that completed.",
			durationBuckets).WithLabelValues(),
		Active: reg.Gauge("dls_tftp_active_transfers",
			"TFTP transfers in progress.").WithLabelValues(),
	}
	for _, r := range reasons {
		m.Errors.WithLabelValues(r)
	}
	return m
}
