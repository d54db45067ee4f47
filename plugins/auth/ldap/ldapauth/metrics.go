package ldapauth

import (
	"time"

	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// Results of a verification, the values of the label "result".
const (
	resultOK      = "ok"      // the directory accepted the password
	resultInvalid = "invalid" // wrong password, unknown user, refused input
	resultError   = "error"   // the plugin could not tell (server down, TLS, search failed)
)

// verifyBuckets are the upper bounds of the verification time: a few round
// trips to the directory, a TLS handshake.
var verifyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// instruments are the plugin's metric families, declared once. The host
// reports dls_auth_requests_total and dls_auth_failures_total itself.
type instruments struct {
	reg           *metrics.Registry
	verifications *prometheus.CounterVec
	duration      prometheus.Observer
}

func newInstruments() *instruments {
	reg := metrics.NewRegistry()
	m := &instruments{
		reg: reg,
		verifications: reg.Counter("dls_auth_plugin_verifications_total",
			"Password verifications by the auth plugin, by result (ok, invalid, error).", "result"),
		duration: reg.Histogram("dls_auth_plugin_verify_duration_seconds",
			"Time taken to verify a password against the directory, including group lookup.", verifyBuckets).WithLabelValues(),
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
