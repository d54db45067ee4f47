package api

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiterSlidingWindow(t *testing.T) {
	l := newLimiter(Limit{Max: 3, Window: time.Minute}, 100)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if _, ok := l.reserve("u", t0.Add(time.Duration(i)*10*time.Second)); !ok {
			t.Fatalf("failure %d refused", i)
		}
	}
	wait, ok := l.reserve("u", t0.Add(30*time.Second))
	if ok || wait != 30*time.Second {
		t.Fatalf("4th: ok %v wait %v", ok, wait)
	}
	// The first failure leaves the window at t0+60s.
	if _, ok := l.reserve("u", t0.Add(60*time.Second)); !ok {
		t.Fatal("still limited after the oldest failure left the window")
	}
	// release undoes one reservation; reset forgets the key.
	if _, ok := l.reserve("u", t0.Add(61*time.Second)); ok {
		t.Fatal("over the limit again: want refused")
	}
	l.release("u", t0.Add(60*time.Second))
	if _, ok := l.reserve("u", t0.Add(61*time.Second)); !ok {
		t.Fatal("released failure still counted")
	}
	l.reset("u")
	if l.size() != 0 {
		t.Fatalf("size %d after reset", l.size())
	}
}

func TestLimiterIsBounded(t *testing.T) {
	l := newLimiter(Limit{Max: 1, Window: time.Hour}, 50)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1000 {
		l.reserve(fmt.Sprintf("user%d", i), t0)
	}
	if l.size() != 50 {
		t.Fatalf("size %d, want 50", l.size())
	}
	// The most recent keys are the ones kept.
	if _, ok := l.reserve("user999", t0); ok {
		t.Error("newest key forgotten")
	}
	if _, ok := l.reserve("user0", t0); !ok {
		t.Error("oldest key kept")
	}
}

func TestTrustedSourcesExpireAndAreBounded(t *testing.T) {
	ts := newTrustedSources(time.Hour, 50)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ts.add("alice", "192.0.2.1", t0)
	switch {
	case !ts.has("alice", "192.0.2.1", t0.Add(59*time.Minute)):
		t.Error("trusted source forgotten within its time")
	case ts.has("alice", "192.0.2.2", t0), ts.has("bob", "192.0.2.1", t0):
		t.Error("trust is per username and address")
	case ts.has("alice", "192.0.2.1", t0.Add(time.Hour)):
		t.Error("trusted source kept past its time")
	}
	for i := range 1000 {
		ts.add(fmt.Sprintf("user%d", i), "192.0.2.1", t0)
	}
	if ts.lru.Len() != 50 || len(ts.keys) != 50 {
		t.Fatalf("%d entries, want 50", ts.lru.Len())
	}
	if !ts.has("user999", "192.0.2.1", t0) || ts.has("user0", "192.0.2.1", t0) {
		t.Error("want the most recent logins kept")
	}
}
