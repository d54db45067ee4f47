package api

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// failureReasons are the values of dls_auth_failures_total{reason}.
var failureReasons = []string{
	"bad_credentials", "rate_limited", "no_role", "unavailable",
	"missing_token", "bad_token", "expired_token", "revoked_token", "user_gone",
}

// metrics are the API's host series.
type metrics struct {
	requests  prometheus.Counter
	failures  *prometheus.CounterVec
	refreshes prometheus.Counter
}

func newMetrics(ctx context.Context, reg prometheus.Registerer, tokens activeTokens, clock Clock) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dls_auth_requests_total",
			Help: "Authentication attempts on the admin API: logins, token refreshes and bearer token checks.",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dls_auth_failures_total",
			Help: "Refused authentication attempts on the admin API, by reason.",
		}, []string{"reason"}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dls_token_refreshes_total",
			Help: "Refresh tokens rotated into a new token pair.",
		}),
	}
	for _, r := range failureReasons {
		m.failures.WithLabelValues(r)
	}
	sessions := &sessionsCollector{
		base: context.WithoutCancel(ctx), tokens: tokens, clock: clock,
		desc: prometheus.NewDesc("dls_active_sessions", "Admin API sessions: refresh tokens neither expired, used nor revoked.", nil, nil),
	}
	for _, c := range []prometheus.Collector{m.requests, m.failures, m.refreshes, sessions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register api metrics: %w", err)
		}
	}
	return m, nil
}

type activeTokens interface {
	CountActiveTokens(ctx context.Context, now time.Time) (int, error)
}

// sessionsCollector reports dls_active_sessions from the store at scrape.
// A prometheus Collect has no context: each scrape's query runs under base,
// the context New was given, without its cancellation so that a scrape in
// flight while the daemon shuts down still completes (the HTTP server's
// shutdown bounds it), and with its own deadline.
type sessionsCollector struct {
	base   context.Context
	tokens activeTokens
	clock  Clock
	desc   *prometheus.Desc
}

func (c *sessionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *sessionsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.base, 2*time.Second)
	defer cancel()
	n, err := c.tokens.CountActiveTokens(ctx, c.clock.Now())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, fmt.Errorf("count active sessions: %w", err))
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n))
}
