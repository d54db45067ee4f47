package host

import (
	"context"
	"sync"
	"time"
)

// Batcher sends events to the host in batches from a background goroutine,
// so packet paths never wait on an RPC. When the host is slow and the buffer
// is full, new events are dropped and counted rather than blocking.
type Batcher struct {
	events Events
	max    int
	batch  int

	mu      sync.Mutex
	buf     []Event
	dropped uint64
	wake    chan struct{}
	done    chan struct{}
	stop    context.CancelFunc
}

// NewBatcher starts a batcher that flushes at least every interval, or as
// soon as batch events are waiting; it buffers at most limit events.
//
// Its reports run under ctx's values, not its cancellation: the batcher
// runs until Close, so the context of the Start (or Configure) call that
// creates it is the one to pass, although that call returns long before.
func NewBatcher(ctx context.Context, events Events, interval time.Duration, batch, limit int) *Batcher {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b := &Batcher{
		events: events, max: limit, batch: max(batch, 1), wake: make(chan struct{}, 1),
		done: make(chan struct{}), stop: cancel,
	}
	go b.run(ctx, interval, batch)
	return b
}

// Emit queues an event; it never blocks. A zero Time is set to now.
func (b *Batcher) Emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.Lock()
	if len(b.buf) >= b.max {
		b.dropped++
		b.mu.Unlock()
		return
	}
	b.buf = append(b.buf, e)
	n := len(b.buf)
	b.mu.Unlock()
	if n == 1 || n%b.batch == 0 {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

func (b *Batcher) pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.buf)
}

// Dropped returns how many events were dropped because the buffer was full.
func (b *Batcher) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}

// Close sends what is buffered (bounded by ctx) and stops the batcher.
func (b *Batcher) Close(ctx context.Context) error {
	b.stop()
	<-b.done
	return b.flush(ctx)
}

func (b *Batcher) run(ctx context.Context, interval time.Duration, batch int) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.wake:
			// Let a burst gather for a moment, fewer and larger RPCs,
			// but send at once when a whole batch is waiting.
			gather := time.NewTimer(interval / 10)
		wait:
			for b.pending() < batch {
				select {
				case <-ctx.Done():
					gather.Stop()
					return
				case <-gather.C:
					break wait
				case <-b.wake:
				}
			}
			gather.Stop()
		}
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = b.flush(fctx)
		cancel()
	}
}

func (b *Batcher) flush(ctx context.Context) error {
	b.mu.Lock()
	pending := b.buf
	b.buf = nil
	b.mu.Unlock()
	for len(pending) > 0 {
		n := min(len(pending), MaxEventBatch)
		if err := b.events.Report(ctx, pending[:n]); err != nil {
			// The host is unreachable (restarting, shutting down): keep
			// what fits for the next flush instead of losing it.
			b.mu.Lock()
			room := b.max - len(b.buf)
			keep := pending[:min(len(pending), max(room, 0))]
			b.dropped += uint64(len(pending) - len(keep))
			b.buf = append(keep, b.buf...)
			b.mu.Unlock()
			return err
		}
		pending = pending[n:]
	}
	return nil
}
