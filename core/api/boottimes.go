package api

import (
	"context"
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
	ss, truncated, err := a.sessionsSince(r.Context(), first)
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

// sessionsSince reads every session started at or after since, newest
// first, page by page (a store answers at most MaxSessionLimit at once):
// each page asks for those started before the oldest of the last one,
// plus that millisecond again, since a storm starts many sessions in one
// (the repeats are dropped by ID). It reports truncated when it stopped
// at maxChartSessions or a page brought nothing new.
func (a *API) sessionsSince(ctx context.Context, since time.Time) ([]store.Session, bool, error) {
	var out []store.Session
	seen := map[int64]bool{}
	f := store.SessionFilter{Since: since, Limit: store.MaxSessionLimit}
	for {
		page, err := a.deps.Store.ListSessions(ctx, f)
		if err != nil {
			return nil, false, fmt.Errorf("list sessions since %s: %w", since.Format(time.RFC3339), err)
		}
		added := 0
		for _, s := range page {
			if !seen[s.ID] {
				seen[s.ID] = true
				out = append(out, s)
				added++
			}
		}
		switch {
		case len(page) < f.Limit:
			return out, false, nil
		case added == 0 || len(out) >= maxChartSessions:
			return out, true, nil
		}
		f.Before = page[len(page)-1].Started.Truncate(time.Millisecond).Add(time.Millisecond)
	}
}

// percentile is the nearest-rank percentile p (0-1] of sorted values,
// rounded to milliseconds.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return math.Round(sorted[i]*1000) / 1000
}
