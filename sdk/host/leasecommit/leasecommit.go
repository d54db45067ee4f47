// Package leasecommit stores a protocol plugin's leases through the host's
// Leases service in batches (group commit), so that an answer that must
// wait for its lease to be durable (a DHCP ACK, a DHCPv6 Reply) costs the
// host one transaction, and one fsync, shared with every lease that came
// meanwhile. The DHCP and DHCPv6 plugins use it; a vendor's address
// server answering from the same lease store would too.
package leasecommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// commitTimeout bounds one batch commit through the host.
const commitTimeout = 10 * time.Second

// queueSize is how many leases may wait for the next batch.
const queueSize = 32768

// Job is one lease to store and what to do once the host answered.
type Job struct {
	Lease host.Lease
	// Done runs on the committer's goroutine with the lease's result, or
	// the batch's error (then nothing was stored). May be nil.
	Done func(res host.CommitResult, err error)
}

// Metrics are where a Committer reports its batches. A nil observer is
// not reported to.
type Metrics struct {
	// Duration observes the seconds the host took to store one batch.
	Duration prometheus.Observer
	// BatchSize observes the leases of each batch.
	BatchSize prometheus.Observer
}

// NewMetrics declares the two histograms in reg under the names given
// (by convention <plugin prefix>_lease_commit_duration_seconds and
// <plugin prefix>_lease_commit_batch_size). The caller spells the names
// out so that a metric's name leads to where it is declared.
func NewMetrics(reg *metrics.Registry, durationName, batchSizeName string) Metrics {
	d := reg.Histogram(durationName,
		"Time the host took to store one batch of leases.",
		[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5})
	b := reg.Histogram(batchSizeName,
		"Leases stored per batch (group commit).", []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})
	return Metrics{Duration: d.WithLabelValues(), BatchSize: b.WithLabelValues()}
}

// Options shape a Committer.
type Options struct {
	// Max is the most leases one batch carries (at least 1).
	Max int
	// Gather is how long the first lease of a batch waits for others.
	// Zero: a lease that finds the committer idle is committed at once,
	// and a batch carries what queued while the last one was stored.
	Gather time.Duration
	// Metrics are reported each batch.
	Metrics Metrics
}

// Committer stores leases through the host in batches: group commit. One
// batch is in flight at a time; whatever arrives meanwhile goes into the
// next, so under load each transaction (and its fsync) carries many
// leases, and when idle a lease is stored at once (or after Gather).
type Committer struct {
	leases host.Leases
	max    int
	gather time.Duration
	m      Metrics
	jobs   chan Job
	done   chan struct{}

	mu      sync.Mutex
	lastErr error // of the last batch; nil once one succeeds
	closed  bool
}

// New starts a committer whose commits run under ctx, each with its own
// deadline. ctx must outlast Close: Close stores what is queued. A nil
// leases fails every batch (the host offers no lease service).
func New(ctx context.Context, leases host.Leases, o Options) *Committer {
	c := &Committer{
		leases: leases, max: max(o.Max, 1), gather: o.Gather, m: o.Metrics,
		jobs: make(chan Job, queueSize), done: make(chan struct{}),
	}
	go c.run(ctx)
	return c
}

// Add queues a job without blocking; false when the queue is full or the
// committer closed (then j.Done is never called).
func (c *Committer) Add(j Job) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	select {
	case c.jobs <- j:
		return true
	default:
		return false
	}
}

func (c *Committer) run(ctx context.Context) {
	defer close(c.done)
	batch := make([]Job, 0, c.max)
	leases := make([]host.Lease, 0, c.max)
	var timer *time.Timer
	if c.gather > 0 {
		timer = time.NewTimer(time.Hour)
		timer.Stop()
	}
	for j := range c.jobs {
		batch = c.fill(append(batch[:0], j), timer)
		leases = leases[:0]
		for _, j := range batch {
			leases = append(leases, j.Lease)
		}
		c.commit(ctx, batch, leases)
	}
}

// fill adds to batch what else is queued, up to max.
//
// Without Gather, what queued while the last commit ran goes in this one
// (one transaction, one fsync for all of them), and a lease that finds
// the committer idle is committed at once: waiting for company would only
// add to every answer's delay. With Gather, a burst gathers for that
// long: one transaction for many leases costs the host far less than
// many, and an answer later by at most Gather costs a client nothing.
func (c *Committer) fill(batch []Job, timer *time.Timer) []Job {
	var wait <-chan time.Time
	if timer != nil {
		timer.Reset(c.gather)
		defer timer.Stop()
		wait = timer.C
	}
	for len(batch) < c.max {
		var j Job
		var ok bool
		if wait == nil {
			select {
			case j, ok = <-c.jobs:
			default:
				return batch
			}
		} else {
			select {
			case j, ok = <-c.jobs:
			case <-wait:
				return batch
			}
		}
		if !ok {
			return batch
		}
		batch = append(batch, j)
	}
	return batch
}

func (c *Committer) commit(ctx context.Context, batch []Job, leases []host.Lease) {
	start := time.Now()
	var res []host.CommitResult
	var err error
	if c.leases == nil {
		err = errors.New("the host offers no lease service")
	} else {
		ctx, cancel := context.WithTimeout(ctx, commitTimeout)
		res, err = c.leases.Commit(ctx, leases)
		cancel()
		if err == nil && len(res) != len(leases) {
			err = fmt.Errorf("the host answered %d results for %d leases", len(res), len(leases))
		}
	}
	if c.m.Duration != nil {
		c.m.Duration.Observe(time.Since(start).Seconds())
	}
	if c.m.BatchSize != nil {
		c.m.BatchSize.Observe(float64(len(batch)))
	}
	c.mu.Lock()
	if err != nil {
		c.lastErr = fmt.Errorf("commit %d leases: %w", len(leases), err)
	} else {
		c.lastErr = nil
	}
	c.mu.Unlock()
	for i, j := range batch {
		if j.Done == nil {
			continue
		}
		if err != nil {
			j.Done(host.CommitResult{}, err)
		} else {
			j.Done(res[i], nil)
		}
	}
}

// Err is the last batch's error, nil once one succeeded.
func (c *Committer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Close stores what is queued and stops, within ctx. Add fails after it.
func (c *Committer) Close(ctx context.Context) error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.jobs)
	}
	c.mu.Unlock()
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("leases still being stored: %w", ctx.Err())
	}
}
