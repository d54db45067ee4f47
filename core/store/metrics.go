package store

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the host's dls_database_* families. Build one with NewMetrics
// and give it to the store implementation, which times every statement it
// runs through ObserveQuery. A nil *Metrics records nothing, for tests and
// CLI tools that have no registry.
//
// No family has labels: per-query or per-table labels would tie the metric
// names to the schema, and the histogram alone answers "is the database
// slow".
type Metrics struct {
	queries     prometheus.Counter
	errors      prometheus.Counter
	duration    prometheus.Histogram
	connections *connectionsCollector
}

// NewMetrics builds the database metrics and registers them with reg (when
// reg is nil they are built but not registered). It fails when a family is
// already registered, leaving reg as it was.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		queries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dls_database_queries_total",
			Help: "Statements run against the state store, including BEGIN and COMMIT.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dls_database_errors_total",
			Help: "Statements against the state store that failed (a lookup that finds nothing is not a failure).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "dls_database_query_duration_seconds",
			Help:    "Time taken by each statement against the state store, reading its rows included.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 2},
		}),
		connections: &connectionsCollector{
			desc: prometheus.NewDesc("dls_database_connections",
				"Open connections to the state store database.", nil, nil),
			sources: make(map[int]func() int),
		},
	}
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range []prometheus.Collector{m.queries, m.errors, m.duration, m.connections} {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("register database metrics: %w", err)
		}
		done = append(done, c)
	}
	return m, nil
}

// ObserveQuery records one statement that started at start and ended with
// err. Implementations pass nil for outcomes that are not failures, such as
// sql.ErrNoRows.
func (m *Metrics) ObserveQuery(start time.Time, err error) {
	if m == nil {
		return
	}
	m.queries.Inc()
	m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		m.errors.Inc()
	}
}

// TrackConnections adds open, a function reporting a pool's open
// connections (sql.DB.Stats().OpenConnections), to dls_database_connections,
// which reports the sum over every tracked pool when scraped. Reading the
// pool at scrape time keeps the gauge exact without hooks on every
// connection. The returned function removes open again; a store calls it on
// Close.
func (m *Metrics) TrackConnections(open func() int) (untrack func()) {
	if m == nil {
		return func() {}
	}
	return m.connections.add(open)
}

// connectionsCollector is the dls_database_connections gauge: a collector
// rather than a Gauge, so that it reads the pools when scraped.
type connectionsCollector struct {
	desc *prometheus.Desc

	mu      sync.Mutex
	next    int
	sources map[int]func() int
}

func (c *connectionsCollector) add(open func() int) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next++
	c.sources[id] = open
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			delete(c.sources, id)
		})
	}
}

// Describe implements prometheus.Collector.
func (c *connectionsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
}

// Collect implements prometheus.Collector.
func (c *connectionsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	total := 0
	for _, open := range c.sources {
		total += open()
	}
	c.mu.Unlock()
	metric, err := prometheus.NewConstMetric(c.desc, prometheus.GaugeValue, float64(total))
	if err != nil {
		// Cannot happen with a label-less desc; report it rather than panic.
		metric = prometheus.NewInvalidMetric(c.desc, err)
	}
	ch <- metric
}
