//go:build linux

package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/dls-project/dls/e2e/lab"
)

// loginSteps prints the iSCSI target's own view of the storm's logins
// (dls_iscsi_login_duration_seconds): how much of a machine's login time
// the target spent asking the host, attaching the volume, on its own turns
// of the conversation (the rest is the machines' and the network's), and in
// all, beside the machines' view in the stage table.
func loginSteps(w io.Writer, m lab.Metrics) {
	fmt.Fprintf(w, "iSCSI logins in the target   count     p50 ms     p99 ms\n")
	for _, step := range []string{"authorize", "attach", "target", "total"} {
		b := buckets(m, "dls_iscsi_login_duration_seconds_bucket", fmt.Sprintf("step=%q", step))
		if len(b) == 0 {
			continue
		}
		n := b[len(b)-1].count
		name := step
		if step == "target" {
			name = "target's turns"
		}
		fmt.Fprintf(w, "  %-26s %6.0f %10.1f %10.1f\n", name, n, 1000*b.quantile(0.5), 1000*b.quantile(0.99))
	}
}

type bucket struct{ le, count float64 }

type histogram []bucket

// buckets gathers the cumulative buckets of the series of name whose
// labels include match, summed over the other labels, by upper bound.
func buckets(m lab.Metrics, name, match string) histogram {
	byLE := map[float64]float64{}
	for series, v := range m {
		fam, rest, _ := strings.Cut(series, "{")
		if fam != name || !strings.Contains(rest, match) {
			continue
		}
		_, le, ok := strings.Cut(rest, `le="`)
		if !ok {
			continue
		}
		le, _, _ = strings.Cut(le, `"`)
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		byLE[bound] += v
	}
	h := make(histogram, 0, len(byLE))
	for le, n := range byLE {
		h = append(h, bucket{le, n})
	}
	sort.Slice(h, func(i, j int) bool { return h[i].le < h[j].le })
	return h
}

// quantile interpolates linearly inside the bucket that holds q, as
// Prometheus's histogram_quantile does; above the last finite bound it
// is that bound.
func (h histogram) quantile(q float64) float64 {
	if len(h) == 0 || h[len(h)-1].count == 0 {
		return math.NaN()
	}
	rank := q * h[len(h)-1].count
	lo, below := 0.0, 0.0
	for _, b := range h {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return lo
			}
			if b.count == below {
				return b.le
			}
			return lo + (b.le-lo)*(rank-below)/(b.count-below)
		}
		lo, below = b.le, b.count
	}
	return lo
}
