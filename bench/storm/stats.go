//go:build linux

package main

import (
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"time"
)

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted: the smallest value with at least p % of the values at or
// below it. 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// stageStats is one stage over every machine of a storm.
type stageStats struct {
	OK            int
	P50, P90, P99 time.Duration
}

// summary is one storm against one stack.
type summary struct {
	Stack    string
	Machines int
	Done     int
	Total    time.Duration // first machine's start to the last one's end
	Stages   map[string]stageStats
	// ACKUnderIO is dhcp_ack over the ACKs that waited while another
	// machine's iSCSI work (clone, reads, synced write) ran.
	ACKUnderIO                                                       stageStats
	Reboots, DHCPRetransmits, TFTPRetransmits, HTTPRetries, Relogins int
	Procs                                                            []procUsage
	// Errors are the distinct last errors of machines that did not boot,
	// with how many had each.
	Errors map[string]int
	// Retried counts the errors machines retried after, by kind.
	Retried map[string]int
}

func summarize(name string, outs []*outcome) summary {
	s := summary{Stack: name, Machines: len(outs), Stages: map[string]stageStats{}}
	var first, last time.Time
	samples := map[string][]time.Duration{}
	for _, o := range outs {
		if first.IsZero() || o.Started.Before(first) {
			first = o.Started
		}
		if o.Ended.After(last) {
			last = o.Ended
		}
		if o.Done {
			s.Done++
		} else {
			if s.Errors == nil {
				s.Errors = map[string]int{}
			}
			s.Errors[o.Err]++
		}
		for st, d := range o.Stages {
			samples[st] = append(samples[st], d)
		}
		for _, e := range o.Retried {
			if s.Retried == nil {
				s.Retried = map[string]int{}
			}
			s.Retried[errorKind(e)]++
		}
		s.Reboots += o.Reboots
		s.DHCPRetransmits += o.DHCPRetransmits
		s.TFTPRetransmits += o.TFTPRetransmits
		s.HTTPRetries += o.HTTPRetries
		s.Relogins += o.Relogins
	}
	s.Total = last.Sub(first)
	s.ACKUnderIO = ackUnderIO(outs)
	for st, ds := range samples {
		slices.Sort(ds)
		s.Stages[st] = stageStats{OK: len(ds), P50: percentile(ds, 50), P90: percentile(ds, 90), P99: percentile(ds, 99)}
	}
	return s
}

// ackUnderIO is the REQUEST → ACK latency of the ACKs that overlapped
// another machine's disk work: the lease commit sharing the disk with the
// clones the storm writes.
func ackUnderIO(outs []*outcome) stageStats {
	var ds []time.Duration
	for i, o := range outs {
		if o.ACKWait.From.IsZero() {
			continue
		}
		for j, p := range outs {
			if i != j && o.ACKWait.overlaps(p.DiskIO) {
				ds = append(ds, o.ACKWait.To.Sub(o.ACKWait.From))
				break
			}
		}
	}
	slices.Sort(ds)
	return stageStats{OK: len(ds), P50: percentile(ds, 50), P90: percentile(ds, 90), P99: percentile(ds, 99)}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

func (s summary) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %d/%d machines booted in %.2f s (reboots %d, DHCP retransmits %d, TFTP retransmits %d, HTTP retries %d, iSCSI re-logins %d)\n",
		s.Stack, s.Done, s.Machines, s.Total.Seconds(), s.Reboots, s.DHCPRetransmits, s.TFTPRetransmits, s.HTTPRetries, s.Relogins)
	for i, e := range sortedKeys(s.Errors) {
		if i == 10 {
			fmt.Fprintf(w, "  … %d more distinct errors\n", len(s.Errors)-10)
			break
		}
		fmt.Fprintf(w, "  not booted (%d): %s\n", s.Errors[e], e)
	}
	for _, e := range sortedKeys(s.Retried) {
		fmt.Fprintf(w, "  retried (%d): %s\n", s.Retried[e], e)
	}
	fmt.Fprintf(w, "%-12s %6s %10s %10s %10s\n", "stage", "ok", "p50 ms", "p90 ms", "p99 ms")
	for _, st := range stages {
		x := s.Stages[st]
		fmt.Fprintf(w, "%-12s %6d %10s %10s %10s\n", st, x.OK, ms(x.P50), ms(x.P90), ms(x.P99))
	}
	x := s.ACKUnderIO
	fmt.Fprintf(w, "%-12s %6d %10s %10s %10s   (the ACKs that waited while other machines' iSCSI work ran)\n", "ack_under_io", x.OK, ms(x.P50), ms(x.P90), ms(x.P99))
	if len(s.Procs) > 0 {
		fmt.Fprintf(w, "%-24s %8s %12s %14s %12s\n", "process", "pid", "cpu s", "children cpu s", "peak RSS MiB")
		var cpu float64
		for _, p := range s.Procs {
			fmt.Fprintf(w, "%-24s %8d %12.2f %14.2f %12.1f\n", p.Name, p.Pid, p.CPU, p.ChildCPU, float64(p.PeakRSSKiB)/1024)
			cpu += p.CPU + p.ChildCPU
		}
		fmt.Fprintf(w, "%-24s %8s %12.2f\n", "total (storm)", "", cpu)
	}
}

// errorKind is err without what differs from machine to machine (names,
// addresses, numbers), so that alike errors count together.
func errorKind(err string) string {
	return kindNoise.ReplaceAllString(err, "N")
}

var kindNoise = regexp.MustCompile(`m[0-9]{4}|[0-9a-f]{2}([-:][0-9a-f]{2}){5}|[0-9]+(\.[0-9]+)*`)

// ratio is a/b, "n/a" when b is 0.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// printRatios prints a/b (titled what) for the total time, per stage and
// for the servers' CPU: below 1, a is faster.
func printRatios(w io.Writer, what string, dls, ref summary) {
	fmt.Fprintf(w, "\n== %s: below 1 means the first is faster\n", what)
	fmt.Fprintf(w, "%-12s %10s %10s\n", "", "p50", "p99")
	for _, st := range stages {
		a, b := dls.Stages[st], ref.Stages[st]
		fmt.Fprintf(w, "%-12s %10s %10s\n", st, ratio(float64(a.P50), float64(b.P50)), ratio(float64(a.P99), float64(b.P99)))
	}
	fmt.Fprintf(w, "%-12s %10s   (%.2f s / %.2f s)\n", "total time", ratio(dls.Total.Seconds(), ref.Total.Seconds()), dls.Total.Seconds(), ref.Total.Seconds())
	var dc, rc float64
	for _, p := range dls.Procs {
		dc += p.CPU + p.ChildCPU
	}
	for _, p := range ref.Procs {
		rc += p.CPU + p.ChildCPU
	}
	fmt.Fprintf(w, "%-12s %10s   (%.2f s / %.2f s)\n", "server cpu", ratio(dc, rc), dc, rc)
}
