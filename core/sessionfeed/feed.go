// Package sessionfeed fans boot session changes out to live watchers: the
// console's event stream (GET /api/v1/events) shows every machine's stage
// as it changes. The sessions tracker publishes each session state it
// stores; a watcher gets the states published after it subscribed.
//
// Publishing never blocks the tracker: a watcher whose queue is full (it
// did not keep up with a boot storm) is cut off, its channel closed, and
// subscribes again after reading the current state from the store (the
// console reloads its floor), so it never silently misses a change.
package sessionfeed

import (
	"context"
	"maps"
	"sync"

	"github.com/dls-project/dls/core/store"
)

// DefaultQueue is how many changes may wait for one watcher before it is
// cut off.
const DefaultQueue = 4096

// Feed is the fan-out. The zero value is not usable: use New.
type Feed struct {
	queue int

	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

type watcher struct {
	ch     chan store.Session
	closed bool
}

// New makes a feed whose watchers may fall queue changes behind before
// they are cut off (<= 0: DefaultQueue).
func New(queue int) *Feed {
	if queue <= 0 {
		queue = DefaultQueue
	}
	return &Feed{queue: queue, watchers: map[*watcher]struct{}{}}
}

// Publish sends s to every watcher without waiting for any.
func (f *Feed) Publish(s store.Session) {
	s.Stages = maps.Clone(s.Stages)
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watchers {
		select {
		case w.ch <- s:
		default:
			f.dropLocked(w)
		}
	}
}

// Subscribe returns the changes published from now on. The channel is
// closed when ctx ends or when the watcher fell behind.
func (f *Feed) Subscribe(ctx context.Context) <-chan store.Session {
	w := &watcher{ch: make(chan store.Session, f.queue)}
	f.mu.Lock()
	f.watchers[w] = struct{}{}
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		f.dropLocked(w)
	}()
	return w.ch
}

// Watchers counts the current watchers.
func (f *Feed) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.watchers)
}

func (f *Feed) dropLocked(w *watcher) {
	if w.closed {
		return
	}
	w.closed = true
	delete(f.watchers, w)
	close(w.ch)
}
