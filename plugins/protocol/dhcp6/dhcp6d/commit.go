package dhcp6d

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/host"
)

// commitTimeout bounds one batch commit through the host.
const commitTimeout = 10 * time.Second

// commitGather is how long the first lease of a batch waits for others.
const commitGather = time.Millisecond

// commitQueue is how many leases may wait for the next batch.
const commitQueue = 32768

// commitJob is one lease to store and what to do once the host answered.
type commitJob struct {
	lease host.Lease
	// done runs on the committer's goroutine with the lease's result, or
	// the batch's error (then nothing was stored). May be nil.
	done func(res host.CommitResult, err error)
}

// committer stores leases through the host in batches: group commit. One
// batch is in flight at a time; whatever arrives meanwhile goes into the
// next, so under load each transaction (and its fsync) carries many
// leases, and when idle a lease is stored at once.
type committer struct {
	leases host.Leases
	max    int
	jobs   chan commitJob
	done   chan struct{}
	m      *v6Metrics

	mu      sync.Mutex
	lastErr error // of the last batch; nil once one succeeds
	closed  bool
}

// newCommitter starts a committer whose commits run under ctx, each with
// its own deadline. ctx must outlast close: close stores what is queued.
func newCommitter(ctx context.Context, leases host.Leases, max int, m *v6Metrics) *committer {
	c := &committer{leases: leases, max: max, jobs: make(chan commitJob, commitQueue), done: make(chan struct{}), m: m}
	go c.run(ctx)
	return c
}

// add queues a job; false when the queue is full or closed.
func (c *committer) add(j commitJob) bool {
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

func (c *committer) run(ctx context.Context) {
	defer close(c.done)
	batch := make([]commitJob, 0, c.max)
	leases := make([]host.Lease, 0, c.max)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for j := range c.jobs {
		batch = append(batch[:0], j)
		// Let a burst gather for a moment: one transaction (one fsync)
		// for many leases costs the host far less than many, and a Reply
		// later by at most commitGather costs a client nothing.
		timer.Reset(commitGather)
	gather:
		for len(batch) < c.max {
			select {
			case j, ok := <-c.jobs:
				if !ok {
					break gather
				}
				batch = append(batch, j)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		leases = leases[:0]
		for _, j := range batch {
			leases = append(leases, j.lease)
		}
		c.commit(ctx, batch, leases)
	}
}

func (c *committer) commit(ctx context.Context, batch []commitJob, leases []host.Lease) {
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
	c.m.commitTime.Observe(time.Since(start).Seconds())
	c.m.commitBatch.Observe(float64(len(batch)))
	c.mu.Lock()
	if err != nil {
		c.lastErr = fmt.Errorf("commit %d leases: %w", len(leases), err)
	} else {
		c.lastErr = nil
	}
	c.mu.Unlock()
	for i, j := range batch {
		if j.done == nil {
			continue
		}
		if err != nil {
			j.done(host.CommitResult{}, err)
		} else {
			j.done(res[i], nil)
		}
	}
}

// err is the last batch's error, nil once one succeeded.
func (c *committer) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// close stores what is queued and stops, within ctx.
func (c *committer) close(ctx context.Context) error {
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
