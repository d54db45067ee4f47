//go:build linux

package main

import (
	"context"
	"fmt"
	"time"
)

// killEvent is one kill -9 of the chaos run.
type killEvent struct {
	What string        // a plugin instance, or "host"
	At   time.Duration // since the storm started
	Back time.Duration // until /readyz was 200 again
	Err  error
}

// chaosResult is what the chaos run saw of the supervisor.
type chaosResult struct {
	Kills []killEvent
	// Restarts is dls_service_restarts_total per plugin scraped after the
	// plugin kills, before the host's (whose restart resets the counters).
	Restarts map[string]float64
	// RestartsAfterHost is the same scraped from the restarted host after
	// the storm: no plugin died there, so every one must be 0.
	RestartsAfterHost map[string]float64
}

// chaosOrder is the plugins killed in turn, then the host.
var chaosOrder = []string{"lan", "boot", "disks", "local"}

// chaos kills each plugin of h in turn, every interval from the storm's
// start, then the host, restarting it.
func chaos(ctx context.Context, h *dlsHost, start time.Time, interval time.Duration) chaosResult {
	res := chaosResult{Restarts: map[string]float64{}}
	for i, inst := range chaosOrder {
		if !sleep(ctx, time.Until(start.Add(interval*time.Duration(i+1)))) {
			return res
		}
		at := time.Since(start)
		back, err := h.killPlugin(ctx, inst)
		res.Kills = append(res.Kills, killEvent{What: inst + " (" + pluginBinaries[inst] + ")", At: at, Back: back, Err: err})
	}
	if m, err := h.metrics(ctx); err == nil {
		for _, inst := range chaosOrder {
			res.Restarts[inst] = m.Sum("dls_service_restarts_total", fmt.Sprintf("plugin=%q", inst))
		}
	}
	if !sleep(ctx, time.Until(start.Add(interval*time.Duration(len(chaosOrder)+1)))) {
		return res
	}
	at := time.Since(start)
	back, err := h.killHost(ctx)
	res.Kills = append(res.Kills, killEvent{What: "host (dls serve)", At: at, Back: back, Err: err})
	return res
}
