// Package metrics is how a plugin declares the Prometheus metrics it reports.
//
// A plugin builds one Registry at construction, declares its families on it
// and keeps the returned vectors; incrementing them is local to the plugin
// process. The host pulls the samples over gRPC when Prometheus scrapes it and
// adds the constant label plugin="<instance>". The registry is private to the
// plugin: no go_* or process_* series leak into the host's /metrics.
//
// Family names must start with "dls_"; the label "plugin" is reserved for the
// host. Counters end in "_total"; gauges must not.
package metrics

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Type is the kind of a metric family.
type Type int

// The metric types a plugin can declare.
const (
	Counter Type = iota
	Gauge
	Histogram
)

func (t Type) String() string {
	switch t {
	case Counter:
		return "counter"
	case Gauge:
		return "gauge"
	case Histogram:
		return "histogram"
	}
	return fmt.Sprintf("type(%d)", int(t))
}

// Desc describes one metric family a plugin reports.
type Desc struct {
	// Name is the full family name, e.g. "dls_tftp_requests_total".
	Name string
	// Help is the one-line HELP text.
	Help string
	// Type is counter, gauge or histogram.
	Type Type
	// Labels are the variable label names, in the order samples carry values.
	Labels []string
	// Buckets are a histogram's upper bounds, ascending, without +Inf.
	Buckets []float64
}

// Family holds the samples of one family at collection time.
type Family struct {
	Name    string
	Samples []Sample
}

// Sample is one series of a family.
type Sample struct {
	// LabelValues are in the order of Desc.Labels.
	LabelValues []string
	// Value is a counter's or gauge's value.
	Value float64
	// Count, Sum and BucketCounts (cumulative, one per Desc.Buckets) are a
	// histogram's.
	Count        uint64
	Sum          float64
	BucketCounts []uint64
}

// ReservedLabels may not be declared by plugins: the host sets them.
var ReservedLabels = []string{"plugin", "instance", "job"}

var (
	nameRE  = regexp.MustCompile(`^dls_[a-zA-Z0-9_]*[a-zA-Z0-9]$`)
	labelRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// Validate checks a descriptor against the rules the host enforces.
func (d Desc) Validate() error {
	if !nameRE.MatchString(d.Name) {
		return fmt.Errorf("metric %q: name must match %s", d.Name, nameRE)
	}
	if strings.TrimSpace(d.Help) == "" {
		return fmt.Errorf("metric %s: help text is empty", d.Name)
	}
	switch d.Type {
	case Counter:
		if !strings.HasSuffix(d.Name, "_total") {
			return fmt.Errorf("metric %s: a counter's name must end in _total", d.Name)
		}
	case Gauge:
		if strings.HasSuffix(d.Name, "_total") {
			return fmt.Errorf("metric %s: a gauge's name must not end in _total (Prometheus reserves it for counters)", d.Name)
		}
	case Histogram:
		if len(d.Buckets) == 0 {
			return fmt.Errorf("metric %s: a histogram needs buckets", d.Name)
		}
		for i, b := range d.Buckets {
			if math.IsNaN(b) || math.IsInf(b, 0) {
				return fmt.Errorf("metric %s: bucket %v is not a finite number (+Inf is implicit)", d.Name, b)
			}
			if i > 0 && b <= d.Buckets[i-1] {
				return fmt.Errorf("metric %s: buckets must ascend strictly (%v after %v)", d.Name, b, d.Buckets[i-1])
			}
		}
		for _, suffix := range []string{"_total", "_count", "_sum", "_bucket"} {
			if strings.HasSuffix(d.Name, suffix) {
				return fmt.Errorf("metric %s: a histogram's name must not end in %s", d.Name, suffix)
			}
		}
	default:
		return fmt.Errorf("metric %s: unknown type %d", d.Name, d.Type)
	}
	seen := map[string]bool{}
	for _, l := range d.Labels {
		if !labelRE.MatchString(l) || strings.HasPrefix(l, "__") {
			return fmt.Errorf("metric %s: invalid label name %q", d.Name, l)
		}
		for _, r := range ReservedLabels {
			if l == r {
				return fmt.Errorf("metric %s: label %q is reserved for the host", d.Name, l)
			}
		}
		if d.Type == Histogram && l == "le" {
			return fmt.Errorf("metric %s: label \"le\" is reserved for histogram buckets", d.Name)
		}
		if seen[l] {
			return fmt.Errorf("metric %s: label %q declared twice", d.Name, l)
		}
		seen[l] = true
	}
	return nil
}

// Registry is a plugin's private set of metric families.
type Registry struct {
	reg *prometheus.Registry

	mu        sync.Mutex
	descs     []Desc
	index     map[string]int
	errs      []error
	onCollect []func()
}

// OnCollect registers fn to run before each collection, to refresh gauges
// that are cheaper to read on demand (capacity, pool usage) than to keep
// current.
func (r *Registry) OnCollect(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onCollect = append(r.onCollect, fn)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{reg: prometheus.NewPedanticRegistry(), index: map[string]int{}}
}

// Counter declares a counter family and returns its vector. With no labels,
// use WithLabelValues() to get the single counter.
func (r *Registry) Counter(name, help string, labels ...string) *prometheus.CounterVec {
	d := Desc{Name: name, Help: help, Type: Counter, Labels: labels}
	if !r.valid(d) {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invalid", Help: "invalid"}, placeholders(labels))
	}
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	r.declare(d, v)
	return v
}

// Gauge declares a gauge family and returns its vector.
func (r *Registry) Gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	d := Desc{Name: name, Help: help, Type: Gauge, Labels: labels}
	if !r.valid(d) {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "invalid", Help: "invalid"}, placeholders(labels))
	}
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	r.declare(d, v)
	return v
}

// Histogram declares a histogram family with the given bucket upper bounds
// (strictly increasing, finite, without +Inf) and returns its vector.
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	d := Desc{Name: name, Help: help, Type: Histogram, Labels: labels, Buckets: append([]float64(nil), buckets...)}
	if !r.valid(d) {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "invalid", Help: "invalid"}, placeholders(labels))
	}
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	r.declare(d, v)
	return v
}

// valid records d's mistakes. An invalid family still gets a working,
// unregistered vector (client_golang would panic on it), so the plugin
// runs and the host refuses the declaration with the reason.
func (r *Registry) valid(d Desc) bool {
	err := d.Validate()
	if err != nil {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.mu.Unlock()
	}
	return err == nil
}

// placeholders are safe label names, as many as labels.
func placeholders(labels []string) []string {
	out := make([]string, len(labels))
	for i := range out {
		out[i] = fmt.Sprintf("l%d", i)
	}
	return out
}

// declare registers a validated family.
func (r *Registry) declare(d Desc, c prometheus.Collector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.index[d.Name]; dup {
		r.errs = append(r.errs, fmt.Errorf("metric %s declared twice", d.Name))
		return
	}
	if err := r.reg.Register(c); err != nil {
		r.errs = append(r.errs, fmt.Errorf("metric %s: %w", d.Name, err))
		return
	}
	r.index[d.Name] = len(r.descs)
	r.descs = append(r.descs, d)
}

// Descs returns the declared families, or the declaration mistakes.
func (r *Registry) Descs() ([]Desc, error) {
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	return append([]Desc(nil), r.descs...), nil
}

// Collect gathers the current samples of every declared family.
func (r *Registry) Collect() ([]Family, error) {
	if r == nil {
		return nil, nil
	}
	r.mu.Lock()
	hooks := append([]func(){}, r.onCollect...)
	r.mu.Unlock()
	for _, fn := range hooks {
		fn()
	}
	mfs, err := r.reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather plugin metrics: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Family, 0, len(mfs))
	for _, mf := range mfs {
		i, ok := r.index[mf.GetName()]
		if !ok {
			continue
		}
		d := r.descs[i]
		fam := Family{Name: d.Name, Samples: make([]Sample, 0, len(mf.GetMetric()))}
		for _, m := range mf.GetMetric() {
			s := Sample{LabelValues: make([]string, len(d.Labels))}
			for _, lp := range m.GetLabel() {
				for j, name := range d.Labels {
					if name == lp.GetName() {
						s.LabelValues[j] = lp.GetValue()
					}
				}
			}
			switch d.Type {
			case Counter:
				s.Value = m.GetCounter().GetValue()
			case Gauge:
				s.Value = m.GetGauge().GetValue()
			case Histogram:
				h := m.GetHistogram()
				s.Count, s.Sum = h.GetSampleCount(), h.GetSampleSum()
				s.BucketCounts = make([]uint64, 0, len(d.Buckets))
				for _, b := range h.GetBucket() {
					s.BucketCounts = append(s.BucketCounts, b.GetCumulativeCount())
				}
			}
			fam.Samples = append(fam.Samples, s)
		}
		out = append(out, fam)
	}
	return out, nil
}
