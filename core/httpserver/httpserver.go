// Package httpserver serves the host's HTTP endpoints: /metrics, /healthz
// and /readyz (Handler), and what booting machines fetch under /boot
// (BootHandler, boot.go).
package httpserver

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dls-project/dls/core/supervisor"
)

// Readiness reports the state of everything /readyz depends on.
type Readiness interface {
	// Plugins returns the status of every enabled plugin.
	Plugins() []supervisor.Status
	// Store reports whether the state store answers.
	Store(ctx context.Context) error
}

// Handler returns the host's HTTP handler.
func Handler(gatherer prometheus.Gatherer, ready Readiness, scrapeTimeout time.Duration) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{
		// A broken family must not hide the rest of the scrape.
		ErrorHandling: promhttp.ContinueOnError,
		// Bounded: plugin pulls have their own deadline below this one.
		Timeout:             scrapeTimeout + time.Second,
		MaxRequestsInFlight: 16,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		type answer struct {
			Ready    bool                `json:"ready"`
			Store    string              `json:"store"`
			Plugins  []supervisor.Status `json:"plugins"`
			NotReady []string            `json:"not_ready,omitempty"`
		}
		a := answer{Ready: true, Store: "ok", Plugins: slices.Clone(ready.Plugins())}
		if err := ready.Store(ctx); err != nil {
			a.Ready, a.Store = false, err.Error()
			a.NotReady = append(a.NotReady, "store")
		}
		for i, p := range a.Plugins {
			if p.State != supervisor.StateRunning || !p.Healthy {
				a.Ready = false
				a.NotReady = append(a.NotReady, p.Name)
			}
			// /readyz shows what readiness depends on; the version,
			// capabilities and time of the last change are the admin
			// API's (GET plugins). Zero, they are left out of the JSON.
			a.Plugins[i].Version, a.Plugins[i].Capabilities, a.Plugins[i].Since = "", nil, time.Time{}
		}
		code := http.StatusOK
		if !a.Ready {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, a)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// BootOnly returns the handler of the boot listener (boot.listen): boot,
// the /boot handlers (BootHandler), for paths under /boot/, and 404 for
// everything else, so the admin API and the metrics are never reachable
// from the boot network through it.
func BootOnly(boot http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/boot/", boot)
	mux.Handle("/", http.NotFoundHandler())
	return mux
}
