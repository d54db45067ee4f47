package sessionfeed

import (
	"context"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

func TestWatchersGetChangesInOrder(t *testing.T) {
	f := New(8)
	a, b := f.Subscribe(t.Context()), f.Subscribe(t.Context())
	for _, st := range []string{"dhcp", "script"} {
		f.Publish(store.Session{Client: "pc-01", Stages: map[string]time.Time{st: time.Now()}})
	}
	for _, ch := range []<-chan store.Session{a, b} {
		for _, want := range []string{"dhcp", "script"} {
			s := <-ch
			if _, ok := s.Stages[want]; !ok || s.Client != "pc-01" {
				t.Fatalf("got %+v, want stage %s", s, want)
			}
		}
	}
}

func TestSlowWatcherIsCutOff(t *testing.T) {
	f := New(2)
	slow := f.Subscribe(t.Context())
	fast := f.Subscribe(t.Context())
	done := make(chan int)
	go func() {
		n := 0
		for range fast {
			n++
			if n == 5 {
				break
			}
		}
		done <- n
	}()
	for range 5 {
		f.Publish(store.Session{Client: "pc-01"})
		time.Sleep(10 * time.Millisecond) // let the fast watcher drain
	}
	if n := <-done; n != 5 {
		t.Fatalf("fast watcher got %d changes, want 5", n)
	}
	got := 0
	for range slow { // closed after its 2 queued changes
		got++
	}
	if got != 2 {
		t.Errorf("slow watcher read %d changes before its channel closed, want 2", got)
	}
}

func TestSubscriptionEndsWithItsContext(t *testing.T) {
	f := New(2)
	ctx, cancel := context.WithCancel(t.Context())
	ch := f.Subscribe(ctx)
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a change after cancel")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after the context ended")
	}
	if n := f.Watchers(); n != 0 {
		t.Errorf("%d watchers left", n)
	}
	f.Publish(store.Session{}) // no panic on a closed channel
}
