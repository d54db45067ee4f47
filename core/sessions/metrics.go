package sessions

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// BootTimeBuckets are dls_boot_time_seconds' buckets: a boot takes tens of seconds to minutes.
var BootTimeBuckets = []float64{10, 30, 60, 90, 120, 180, 300}

type metrics struct {
	started       prometheus.Counter
	failures      *prometheus.CounterVec
	bootTime      prometheus.Histogram
	confirmations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, active func() float64) (metrics, error) {
	m := metrics{
		started: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dls_boot_sessions_total",
			Help: "Boot sessions started (one per machine boot).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dls_boot_failures_total",
			Help: "Boot sessions that failed, by the stage that did not arrive within the stage timeout (or before the machine booted again).",
		}, []string{"stage"}),
		bootTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dls_boot_time_seconds",
			Help:    "Time from a boot session's start (first DHCP discover) to the last stage the client is expected to reach.",
			Buckets: BootTimeBuckets,
		}),
		confirmations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dls_boot_confirmations_total",
			Help: "Boot confirmations posted to /boot/done, by result (ok, missing, unknown, reused, expired, error).",
		}, []string{"result"}),
	}
	gauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "dls_active_clients",
		Help: "Distinct clients with an active boot session or one done within the last stage timeout.",
	}, active)
	// Every series exists from the start, at 0.
	for _, st := range stages[1:] {
		if !optional[st] {
			m.failures.WithLabelValues(st)
		}
	}
	for _, r := range []string{ResultOK, ResultMissing, ResultUnknown, ResultReused, ResultExpired, ResultError} {
		m.confirmations.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.started, m.failures, m.bootTime, m.confirmations, gauge} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("register boot session metrics: %w", err)
		}
	}
	return m, nil
}
