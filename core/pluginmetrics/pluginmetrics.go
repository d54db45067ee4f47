// Package pluginmetrics brings plugins' metrics into the host's registry:
// one checked collector per plugin instance, with the constant label
// plugin="<instance>", pulling samples over gRPC on each scrape under a
// deadline. A slow or dead plugin never fails the scrape: its series are
// absent and dls_plugin_up is 0.
package pluginmetrics

import (
	"context"
	"fmt"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/prometheus/client_golang/prometheus"
)

// Source returns the plugin's current Base client, or nil when the plugin
// is not running.
type Source func() *baserpc.Client

// Host families the proxy reports about each plugin. They carry the plugin
// label as a constant, like the plugin's own families.
var (
	upName       = "dls_plugin_up"
	infoName     = "dls_plugin_info"
	durationName = "dls_plugin_scrape_duration_seconds"
	errorsName   = "dls_plugin_scrape_errors_total"
)

// HostFamilies are the names this package reports itself.
func HostFamilies() []string { return []string{upName, infoName, durationName, errorsName} }

func isHostFamily(name string) bool {
	for _, n := range HostFamilies() {
		if n == name {
			return true
		}
	}
	return false
}

type family struct {
	desc    *prometheus.Desc
	typ     metrics.Type
	labels  int
	buckets []float64
}

// Collector is the proxy for one plugin instance.
type Collector struct {
	base     context.Context // see New
	instance string
	timeout  time.Duration
	source   Source
	families map[string]family

	up, info, duration, scrapeErrors *prometheus.Desc
	infoLabels                       []string
	errorsTotal                      atomic.Uint64
	// OnError, if set, is told why a scrape of the plugin failed.
	OnError func(err error)
}

// New validates a plugin's descriptors and builds its collector. reserved
// names families the host reports itself: a plugin may not declare them.
//
// A prometheus Collect has no context, so each pull runs under ctx, the
// host's, with timeout as its deadline. Only ctx's values are kept, not its
// cancellation: a scrape in flight while the host shuts down still
// completes, bounded by timeout.
func New(ctx context.Context, instance string, info base.Info, descs []metrics.Desc, reserved map[string]bool, src Source, timeout time.Duration) (*Collector, error) {
	constLabels := prometheus.Labels{"plugin": instance}
	c := &Collector{
		base:     context.WithoutCancel(ctx),
		instance: instance, timeout: timeout, source: src, families: make(map[string]family, len(descs)),
		up:           prometheus.NewDesc(upName, "1 when the plugin answered the last scrape, 0 when it is down, slow or broken.", nil, constLabels),
		info:         prometheus.NewDesc(infoName, "Plugin identity; always 1.", []string{"kind", "type", "version"}, constLabels),
		duration:     prometheus.NewDesc(durationName, "Time taken to pull the plugin's metrics during this scrape.", nil, constLabels),
		scrapeErrors: prometheus.NewDesc(errorsName, "Scrapes in which the plugin's metrics could not be pulled.", nil, constLabels),
		infoLabels:   []string{info.Kind, info.Type, info.Version},
	}
	for _, d := range descs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("plugin %s: %w", instance, err)
		}
		if reserved[d.Name] || isHostFamily(d.Name) {
			return nil, fmt.Errorf("plugin %s: metric %s is reported by the host; a plugin may not declare it", instance, d.Name)
		}
		if _, dup := c.families[d.Name]; dup {
			return nil, fmt.Errorf("plugin %s: metric %s declared twice", instance, d.Name)
		}
		c.families[d.Name] = family{
			desc: prometheus.NewDesc(d.Name, d.Help, d.Labels, constLabels),
			typ:  d.Type, labels: len(d.Labels), buckets: d.Buckets,
		}
	}
	return c, nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.info
	ch <- c.duration
	ch <- c.scrapeErrors
	for _, f := range c.families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector. The registry runs collectors
// concurrently, so plugins are pulled in parallel.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	up := 0.0
	if err := c.pull(ch); err != nil {
		c.errorsTotal.Add(1)
		if c.OnError != nil {
			c.OnError(err)
		}
	} else {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.infoLabels...)
	ch <- prometheus.MustNewConstMetric(c.duration, prometheus.GaugeValue, time.Since(start).Seconds())
	ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.CounterValue, float64(c.errorsTotal.Load()))
}

func (c *Collector) pull(ch chan<- prometheus.Metric) error {
	client := c.source()
	if client == nil {
		return fmt.Errorf("plugin %s is not running", c.instance)
	}
	ctx, cancel := context.WithTimeout(c.base, c.timeout)
	defer cancel()
	samples, err := client.CollectMetrics(ctx)
	if err != nil {
		return err
	}
	// Convert everything first: a scrape shows all of a plugin's series
	// or none of them, never a half.
	out := make([]prometheus.Metric, 0, 64)
	for _, fam := range samples.GetFamilies() {
		f, ok := c.families[fam.GetName()]
		if !ok {
			return fmt.Errorf("plugin %s sent undeclared metric %s", c.instance, fam.GetName())
		}
		for _, s := range fam.GetSamples() {
			m, err := f.metric(s)
			if err != nil {
				return fmt.Errorf("plugin %s metric %s: %w", c.instance, fam.GetName(), err)
			}
			out = append(out, m)
		}
	}
	for _, m := range out {
		ch <- m
	}
	return nil
}

func (f family) metric(s *dlsv1.Sample) (prometheus.Metric, error) {
	if len(s.GetLabelValues()) != f.labels {
		return nil, fmt.Errorf("%d label values, %d declared", len(s.GetLabelValues()), f.labels)
	}
	switch f.typ {
	case metrics.Counter:
		return prometheus.NewConstMetric(f.desc, prometheus.CounterValue, s.GetValue(), s.GetLabelValues()...)
	case metrics.Gauge:
		return prometheus.NewConstMetric(f.desc, prometheus.GaugeValue, s.GetValue(), s.GetLabelValues()...)
	case metrics.Histogram:
		if len(s.GetBucketCounts()) != len(f.buckets) {
			return nil, fmt.Errorf("%d buckets, %d declared", len(s.GetBucketCounts()), len(f.buckets))
		}
		b := make(map[float64]uint64, len(f.buckets))
		for i, ub := range f.buckets {
			b[ub] = s.GetBucketCounts()[i]
		}
		return prometheus.NewConstHistogram(f.desc, s.GetCount(), s.GetSum(), b, s.GetLabelValues()...)
	}
	return nil, fmt.Errorf("unknown type %d", f.typ)
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// FamilyNames lists the family names a collector describes. client_golang
// keeps a Desc's name private; its String form is the stable way to read it.
func FamilyNames(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var names []string
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}
