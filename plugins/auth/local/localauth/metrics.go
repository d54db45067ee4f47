package localauth

import (
	"time"

	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Results of a verification, the values of the label "result".
const (
	resultOK      = "ok"      // the password matched
	resultInvalid = "invalid" // wrong password, unknown user, refused input
	resultError   = "error"   // the plugin could not tell (users file unreadable)
)

// verifyBuckets are the upper bounds of the verification time: an argon2id
// hash takes tens to hundreds of milliseconds.
var verifyBuckets = []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// instruments are the plugin's metric families, declared once. The host
// reports dls_auth_requests_total and dls_auth_failures_total itself.
type instruments struct {
	reg           *metrics.Registry
	verifications *prometheus.CounterVec
	duration      prometheus.Observer
	users         prometheus.Gauge
}

func newInstruments() *instruments {
	reg := metrics.NewRegistry()
	m := &instruments{
		reg: reg,
		verifications: reg.Counter("dls_auth_plugin_verifications_total",
			"Password verifications by the auth plugin, by result (ok, invalid, error).", "result"),
		duration: reg.Histogram("dls_auth_plugin_verify_duration_seconds",
			"Time taken to verify a password, including the argon2id hash.", verifyBuckets).WithLabelValues(),
		users: reg.Gauge("dls_auth_users", "Users in the local users file.").WithLabelValues(),
	}
	for _, r := range []string{resultOK, resultInvalid, resultError} {
		m.verifications.WithLabelValues(r)
	}
	return m
}

// observe records one verification that started at start.
func (m *instruments) observe(result string, start time.Time) {
	m.verifications.WithLabelValues(result).Inc()
	m.duration.Observe(time.Since(start).Seconds())
}
