//go:build linux

package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// soak runs storms back to back against h until loop has passed, and
// records the host's and each plugin's RSS, threads, open fds (and the
// host's goroutines, from /metrics) every sampleEvery to csvPath.
func soak(ctx context.Context, c *chain, h *dlsHost, machines []machine, ramp, loop, sampleEvery time.Duration, csvPath string, logf func(string, ...any)) ([]summary, error) {
	f, err := os.Create(csvPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write([]string{"unix_time", "elapsed_s", "round", "process", "pid", "rss_kib", "peak_rss_kib", "threads", "fds", "goroutines"})
	var round atomic.Int64
	start := time.Now()
	sample := func() {
		goroutines := ""
		if m, err := h.metrics(ctx); err == nil {
			if v, ok := m["go_goroutines"]; ok {
				goroutines = strconv.FormatFloat(v, 'f', 0, 64)
			}
		}
		now := time.Now()
		procs := h.procs()
		for _, name := range sortedKeys(procs) {
			p := procs[name]
			g := ""
			if name == "dls" {
				g = goroutines // plugins expose no Go runtime metrics
			}
			_ = w.Write([]string{strconv.FormatInt(now.Unix(), 10), fmt.Sprintf("%.1f", now.Sub(start).Seconds()),
				strconv.FormatInt(round.Load(), 10), name, strconv.Itoa(p.Pid), strconv.FormatInt(p.RSSKiB, 10),
				strconv.FormatInt(p.PeakRSSKiB, 10), strconv.Itoa(p.Threads), strconv.Itoa(p.FDs), g})
		}
		w.Flush()
	}
	sctx, stop := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		sample()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				sample()
			}
		}
	}()

	var rounds []summary
	for time.Since(start) < loop && ctx.Err() == nil {
		round.Add(1)
		var done atomic.Int64
		outs := storm(ctx, c, machines, ramp, &done)
		// The machines power off: their addresses go with them.
		if _, err := c.addrs.releaseAll(); err != nil {
			stop()
			<-sampled
			return rounds, err
		}
		s := summarize(fmt.Sprintf("round %d", round.Load()), outs)
		rounds = append(rounds, s)
		logf("soak round %d: %d/%d booted in %.2f s, boot p50 %s ms p99 %s ms, reboots %d",
			round.Load(), s.Done, s.Machines, s.Total.Seconds(), ms(s.Stages[stageBoot].P50), ms(s.Stages[stageBoot].P99), s.Reboots)
	}
	stop()
	<-sampled
	sample() // the state after the last round
	return rounds, w.Error()
}
