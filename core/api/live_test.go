package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/clientfeed"
	"github.com/dls-project/dls/core/sessionfeed"
	"github.com/dls-project/dls/core/store"
)

func TestTileState(t *testing.T) {
	at := func(sec int) time.Time { return time.Date(2026, 3, 1, 12, 0, sec, 0, time.UTC) }
	for _, c := range []struct {
		s            *store.Session
		state, stage string
	}{
		{nil, "off", ""},
		{&store.Session{State: store.SessionActive}, "dhcp", ""},
		{&store.Session{State: store.SessionActive, Stages: map[string]time.Time{"dhcp": at(0)}}, "dhcp", "dhcp"},
		{&store.Session{State: store.SessionActive, Stages: map[string]time.Time{"dhcp": at(0), "script": at(3), "iscsi_login": at(4)}}, "iscsi_login", "iscsi_login"},
		// Two stages in the same millisecond: the further one.
		{&store.Session{State: store.SessionActive, Stages: map[string]time.Time{"script": at(3), "dhcp": at(3)}}, "script", "script"},
		// A boot loader step the tracker does not know shows as script.
		{&store.Session{State: store.SessionActive, Stages: map[string]time.Time{"dhcp": at(0), "grub": at(2)}}, "script", "grub"},
		{&store.Session{State: store.SessionDone, Stages: map[string]time.Time{"dhcp": at(0), "handoff": at(9)}}, "booted", "handoff"},
		{&store.Session{State: store.SessionFailed, FailedStage: "iscsi_login", Stages: map[string]time.Time{"dhcp": at(0)}}, "failed", "iscsi_login"},
	} {
		state, stage := TileState(c.s)
		if state != c.state || stage != c.stage {
			t.Errorf("TileState(%+v) = %s/%s, want %s/%s", c.s, state, stage, c.state, c.stage)
		}
	}
}

// TestFloor: every client with its latest session's state, the counts per
// state, labels and the image's current version.
func TestFloor(t *testing.T) {
	e := newEnv(t)
	p := e.login("alice")
	for i, name := range []string{"pc-01", "pc-02", "pc-03"} {
		e.want(e.do("POST", "/clients", p.AccessToken, map[string]any{"name": name, "mac": "52:54:00:00:00:0" + string(rune('1'+i)),
			"image": "win11", "labels": map[string]string{"room": "r1"}}), http.StatusCreated, nil)
	}
	t0 := e.clock.Now()
	e.st.sessions[1] = store.Session{ID: 1, Client: "pc-01", State: store.SessionFailed, FailedStage: "script", Started: t0.Add(-time.Hour),
		Ended: t0.Add(-time.Hour + time.Minute), Stages: map[string]time.Time{"dhcp": t0.Add(-time.Hour)}}
	e.st.sessions[2] = store.Session{ID: 2, Client: "pc-01", State: store.SessionDone, Started: t0.Add(-time.Minute),
		Ended: t0.Add(-time.Minute + 12*time.Second), Stages: map[string]time.Time{"dhcp": t0.Add(-time.Minute), "handoff": t0.Add(-time.Minute + 12*time.Second)}}
	e.st.sessions[3] = store.Session{ID: 3, Client: "pc-02", State: store.SessionActive, Started: t0.Add(-5 * time.Second),
		Stages: map[string]time.Time{"dhcp": t0.Add(-5 * time.Second), "script": t0.Add(-2 * time.Second)}}
	v := e.login("vera")
	var f floorJSON
	e.want(e.do("GET", "/floor", v.AccessToken, nil), http.StatusOK, &f)
	got := map[string]tileJSON{}
	for _, tl := range f.Tiles {
		got[tl.Name] = tl
	}
	if tl := got["pc-01"]; tl.State != "booted" || tl.Session != 2 || tl.BootSeconds != 12 || tl.Labels["room"] != "r1" || tl.Version != 1 {
		t.Errorf("pc-01 tile %+v: want booted by session 2 in 12 s, room r1, version 1", tl)
	}
	if tl := got["pc-02"]; tl.State != "script" || tl.BootSeconds != 5 {
		t.Errorf("pc-02 tile %+v: want script, 5 s so far", tl)
	}
	if tl := got["pc-03"]; tl.State != "off" || tl.Session != 0 {
		t.Errorf("pc-03 tile %+v: want off", tl)
	}
	if f.Counts["booted"] != 1 || f.Counts["script"] != 1 || f.Counts["off"] != 1 || f.Counts["failed"] != 0 {
		t.Errorf("counts %v", f.Counts)
	}
}

// TestEventStream: a session change published by the tracker reaches an
// open stream as a "session" event with the tile state, well within a
// second, and a client write as a "clients" event; a viewer's cookie may
// read the stream.
func TestEventStream(t *testing.T) {
	feed := sessionfeed.New(0)
	cw := fakeClientWatcher{ch: make(chan clientfeed.Change)}
	e := newEnv(t, func(d *Deps, _ *Options) { d.LiveSessions, d.ClientChanges = feed, cw })
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	c, _ := e.signIn("vera")
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+Prefix+"/events", nil)
	req.AddCookie(c)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	events := make(chan [2]string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				events <- [2]string{name, v}
			}
		}
		close(events)
	}()
	for feed.Watchers() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	start := time.Now()
	now := e.clock.Now()
	feed.Publish(store.Session{ID: 9, Client: "pc-01", State: store.SessionActive, Started: now,
		Stages: map[string]time.Time{"dhcp": now, "script": now.Add(time.Second), "iscsi_login": now.Add(2 * time.Second)}})
	ev := next(t, events)
	if lat := time.Since(start); lat > time.Second {
		t.Errorf("event after %v, want under 1 s", lat)
	}
	var se sessionEventJSON
	if err := json.Unmarshal([]byte(ev[1]), &se); err != nil || ev[0] != "session" {
		t.Fatalf("event %v: %v", ev, err)
	}
	if se.Client != "pc-01" || se.State != "iscsi_login" || se.Session.ID != 9 {
		t.Errorf("session event %+v", se)
	}

	cw.ch <- clientfeed.Change{Version: 2}
	if ev := next(t, events); ev[0] != "clients" || ev[1] != `{"version":2}` {
		t.Errorf("after a client write: event %v, want clients", ev)
	}
}

func next(t *testing.T, events <-chan [2]string) [2]string {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("event stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return [2]string{}
}

// TestEventStreamWithoutFeed: no feed, 501.
func TestEventStreamWithoutFeed(t *testing.T) {
	e := newEnv(t)
	p := e.login("vera")
	e.wantError(e.do("GET", "/events", p.AccessToken, nil), http.StatusNotImplemented, "no live session feed", "")
}

// fakeClientWatcher sends a snapshot, then the changes put on ch.
type fakeClientWatcher struct{ ch chan clientfeed.Change }

func (f fakeClientWatcher) Watch(ctx context.Context, fn func(clientfeed.Change) error) error {
	if err := fn(clientfeed.Change{Version: 1, Full: true}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-f.ch:
			if err := fn(c); err != nil {
				return err
			}
		}
	}
}

// TestBootTimes: sessions of the last hours by the hour they started, with
// nearest-rank percentiles of the done ones; older sessions left out.
func TestBootTimes(t *testing.T) {
	e := newEnv(t) // the clock is at 12:00 UTC
	now := e.clock.Now()
	add := func(id int64, started time.Time, secs int, state string) {
		s := store.Session{ID: id, Client: "pc-01", State: state, Started: started}
		if state != store.SessionActive {
			s.Ended = started.Add(time.Duration(secs) * time.Second)
		}
		e.st.sessions[id] = s
	}
	for i := range 10 { // 11:00-11:59: ten boots of 1..10 s
		add(int64(i+1), now.Add(-time.Hour+time.Duration(i)*time.Minute), i+1, store.SessionDone)
	}
	add(20, now.Add(-30*time.Minute), 300, store.SessionFailed)
	add(21, now.Add(time.Second), 0, store.SessionActive) // 12:00
	add(22, now.Add(-3*time.Hour), 50, store.SessionDone) // 09:00: before the 3 hours asked (10:00-12:59)
	v := e.login("vera")
	var bt bootTimesJSON
	e.want(e.do("GET", "/boot-times?hours=3", v.AccessToken, nil), http.StatusOK, &bt)
	if len(bt.Hours) != 3 || bt.Sessions != 12 || bt.Truncated {
		t.Fatalf("boot times %+v: want 3 hours of 12 sessions", bt)
	}
	h10, h11, h12 := bt.Hours[0], bt.Hours[1], bt.Hours[2]
	if !h10.Hour.Equal(now.Add(-2*time.Hour)) || h10.Boots != 0 {
		t.Errorf("10:00 %+v", h10)
	}
	if h11.Boots != 10 || h11.Failed != 1 || h11.P50 != 5 || h11.P90 != 9 || h11.P99 != 10 || h11.Max != 10 {
		t.Errorf("11:00 %+v: want 10 boots (p50 5 s, p90 9 s, p99 10 s), 1 failed", h11)
	}
	if h12.Active != 1 || h12.Boots != 0 {
		t.Errorf("12:00 %+v: want 1 active", h12)
	}
	e.wantError(e.do("GET", "/boot-times?hours=0", v.AccessToken, nil), http.StatusBadRequest, "hours", "hours")
}

// TestBootTimesPagesThroughTheStore: a morning of more sessions than the
// store answers at once is charted whole, storms of one millisecond
// included; more than a page in one millisecond is said to be truncated.
func TestBootTimesPagesThroughTheStore(t *testing.T) {
	e := newEnv(t) // the clock is at 12:00 UTC
	now := e.clock.Now()
	const n = 2*store.MaxSessionLimit + 500
	for i := range n {
		// 11:00-11:59, in bursts of 300 boots sharing a millisecond.
		started := now.Add(-time.Hour + time.Duration(i/300)*time.Minute)
		e.st.sessions[int64(i+1)] = store.Session{ID: int64(i + 1), Client: fmt.Sprintf("pc-%04d", i), State: store.SessionDone,
			Started: started, Ended: started.Add(time.Duration(1+i%10) * time.Second)}
	}
	v := e.login("vera")
	var bt bootTimesJSON
	e.want(e.do("GET", "/boot-times?hours=2", v.AccessToken, nil), http.StatusOK, &bt)
	if bt.Sessions != n || bt.Truncated || bt.Hours[0].Boots != n || bt.Hours[0].P50 != 5 || bt.Hours[0].Max != 10 {
		t.Fatalf("boot times %+v: want all %d sessions in the 11:00 hour (p50 5 s, max 10 s), not truncated", bt, n)
	}
	for i := range store.MaxSessionLimit + 1 {
		id := int64(n + 1 + i)
		e.st.sessions[id] = store.Session{ID: id, Client: "pc-storm", State: store.SessionActive, Started: now.Add(-10 * time.Minute)}
	}
	e.want(e.do("GET", "/boot-times?hours=2", v.AccessToken, nil), http.StatusOK, &bt)
	if !bt.Truncated || bt.Sessions < store.MaxSessionLimit {
		t.Errorf("boot times with %d sessions in one millisecond: %d sessions, truncated %v; want truncated", store.MaxSessionLimit+1, bt.Sessions, bt.Truncated)
	}
}
