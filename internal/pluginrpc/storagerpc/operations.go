package storagerpc

import (
	"context"
	"errors"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// operations are the families the SDK records around the plugin's
// operations; nil (a plugin without a registry) records nothing.
type operations struct {
	count    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newOperations declares the operation families on impl's registry, if it
// has one.
func newOperations(impl storage.Storage) *operations {
	md, ok := impl.(base.MetricsDeclarer)
	if !ok || md.Metrics() == nil {
		return nil
	}
	reg := md.Metrics()
	return &operations{
		count: reg.Counter("dls_image_operations_total",
			"Image and volume operations by op and result (ok, error).", "op", "result"),
		duration: reg.Histogram("dls_image_operation_duration_seconds",
			"Duration of image and volume operations.", []float64{.001, .01, .1, .5, 1, 5, 30, 120, 600}, "op"),
	}
}

// observe counts one operation that started at start and ended with err.
func (o *operations) observe(op string, start time.Time, err error) {
	if o == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
		if errors.Is(err, context.Canceled) {
			result = "canceled"
		}
	}
	o.count.WithLabelValues(op, result).Inc()
	o.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}
