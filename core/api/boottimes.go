package api

import (
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/dls-project/dls/core/store"
)

// hourJSON is one hour of the boot-time chart.
type hourJSON struct {
	// Hour is the hour's start (UTC).
	Hour time.Time `json:"hour"`
	// Boots ended done in the hour's sessions; Failed ended failed;
	// Active still run.
	Boots  int `json:"boots"`
	Failed int `json:"failed"`
	Active int `json:"active"`
	// Percentiles of the done boots' times (start to end), seconds;
	// absent when there were none.
	P50 float64 `json:"p50,omitempty"`
	P90 float64 `json:"p90,omitempty"`
	P99 float64 `json:"p99,omitempty"`
	Max float64 `json:"max,omitempty"`
}

// bootTimesJSON is GET boot-times' answer.
type bootTimesJSON struct {
	Hours []hourJSON `json:"hours"`
	// Sessions is how many sessions the chart is made of; Truncated: the
	// window held more than maxChartSessions (or more than a page of
	// sessions started in one millisecond), and the oldest hours miss
	// some.
	Sessions  int  `json:"sessions"`
	Truncated bool `json:"truncated"`
}

// bootTimes: GET boot-times?hours=24, boot sessions of the last hours by
// the hour they started in, with the percentiles of their boot times:
// the console's chart, from the store (no Prometheus needed).
func (a *API) bootTimes(w http.ResponseWriter, r *http.Request) error {
	hours := 24
	if s := r.URL.Query().Get("hours"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 168 {
			return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf("hours %q: want a number from 1 to 168", s), field: "hours"}
		}
		hours = n
	}
	now := a.clock.Now().UTC()
	first := now.Truncate(time.Hour).Add(-time.Duration(hours-1) * time.Hour)
	ss, truncated, err := store.ListAllSessions(r.Context(), a.deps.Store, store.SessionFilter{Since: first}, maxChartSessions)
	if err != nil {
		return err
	}
	out := bootTimesJSON{Hours: make([]hourJSON, hours), Sessions: len(ss), Truncated: truncated}
	times := make([][]float64, hours)
	for i := range out.Hours {
		out.Hours[i].Hour = first.Add(time.Duration(i) * time.Hour)
	}
	for _, s := range ss {
		i := int(s.Started.Sub(first) / time.Hour)
		if i < 0 || i >= hours {
			continue
		}
		switch s.State {
		case store.SessionDone:
			out.Hours[i].Boots++
			if !s.Ended.IsZero() && !s.Ended.Before(s.Started) {
				times[i] = append(times[i], s.Ended.Sub(s.Started).Seconds())
			}
		case store.SessionFailed:
			out.Hours[i].Failed++
		default:
			out.Hours[i].Active++
		}
	}
	for i, ts := range times {
		if len(ts) == 0 {
			continue
		}
		slices.Sort(ts)
		h := &out.Hours[i]
		h.P50, h.P90, h.P99, h.Max = percentile(ts, 0.5), percentile(ts, 0.9), percentile(ts, 0.99), ts[len(ts)-1]
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxChartSessions bounds what one chart reads: a week of a 1000-machine
// site booting several times a day.
const maxChartSessions = 100 * store.MaxSessionLimit

// percentile is the nearest-rank percentile p (0-1] of sorted values,
// rounded to milliseconds.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return math.Round(sorted[i]*1000) / 1000
}
