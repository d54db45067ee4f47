package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// TestStatus: one screen from the API's lists: plugins, images with their
// current version, clients by their latest boot in the last hour, the last
// failures, and the discovered machines waiting for adoption.
func TestStatus(t *testing.T) {
	h := newTestHost(t)
	ctx := t.Context()
	h.login("alice")
	for i := 1; i <= 4; i++ {
		h.ok("client", "add", fmt.Sprintf("pc-0%d", i), "--mac", fmt.Sprintf("aa:bb:cc:dd:ee:0%d", i), "--image", "win11")
	}
	now := h.clock.Now()
	for _, s := range []store.Session{
		{Client: "pc-01", MAC: "aa:bb:cc:dd:ee:01", State: store.SessionDone, Started: now.Add(-10 * time.Minute), Ended: now.Add(-9 * time.Minute)},
		{Client: "pc-02", MAC: "aa:bb:cc:dd:ee:02", State: store.SessionFailed, FailedStage: "script", Started: now.Add(-5 * time.Minute), Ended: now.Add(-4 * time.Minute)},
		{Client: "pc-03", MAC: "aa:bb:cc:dd:ee:03", State: store.SessionActive, Started: now.Add(-time.Minute)},
		// pc-04 booted, but two hours ago: off now.
		{Client: "pc-04", MAC: "aa:bb:cc:dd:ee:04", State: store.SessionDone, Started: now.Add(-2 * time.Hour), Ended: now.Add(-2 * time.Hour)},
	} {
		s.Expect, s.Stages = "handoff", map[string]time.Time{"dhcp": s.Started}
		if _, err := h.store.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.store.RecordDiscovered(ctx, []store.DiscoveredMachine{
		{MAC: "52:54:00:00:00:0a", FirstSeen: now, LastSeen: now},
		{MAC: "52:54:00:00:00:0b", FirstSeen: now, LastSeen: now},
	}, 100); err != nil {
		t.Fatal(err)
	}
	out := h.ok("status")
	for _, want := range []string{
		"Plugins:     local (auth/local) running; tank (storage/dir) running\n",
		"Images:      win11 v1 (tank)\n",
		"Clients:     4: 1 booted, 1 booting, 1 failed, 1 off (last hour)\n",
		"Failures:    (dls session get ID for the stages)\n",
		"Discovered:  2 waiting (dls client discovered, then dls client adopt)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^  \d+ +pc-02 +failed at script `).MatchString(out) {
		t.Errorf("status:\n%s", out)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(h.ok("status", "-o", "json")), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Clients.Total != 4 || rep.Clients.Off != 1 || len(rep.Images) != 1 || rep.Images[0].Current != 1 || rep.Discovered == nil || *rep.Discovered != 2 || len(rep.Failures) != 1 {
		t.Errorf("status -o json: %+v", rep)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSessionWatch: stages already reached when watch starts are not
// printed; each new stage is one line, the session's end another.
func TestSessionWatch(t *testing.T) {
	h := newTestHost(t)
	ctx := t.Context()
	h.login("vera")
	t0 := time.Now().Add(-time.Second)
	s, err := h.store.CreateSession(ctx, store.Session{Client: "pc-01", MAC: "aa:bb:cc:dd:ee:01", Address: "10.0.0.11", Expect: "handoff",
		State: store.SessionActive, Started: t0, Stages: map[string]time.Time{"dhcp": t0}})
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	var errOut bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string { return h.env[k] }, now: time.Now}
	done := make(chan int)
	go func() {
		done <- c.dispatch(ctx, commands(), "dls", []string{"session", "watch", "--interval", "50ms", "--for", "3s"})
	}()
	// Let watch take its first look, then move the session on.
	time.Sleep(300 * time.Millisecond)
	s.Stages["script"] = time.Now()
	if err := h.store.UpdateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	s.Stages["handoff"] = time.Now()
	s.State, s.Ended = store.SessionDone, time.Now()
	if err := h.store.UpdateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		lines = append(lines, strings.Join(strings.Fields(sc.Text())[1:], " "))
	}
	id := fmt.Sprintf("#%d", s.ID)
	want := []string{
		id + " pc-01 aa:bb:cc:dd:ee:01 10.0.0.11 script",
		id + " pc-01 aa:bb:cc:dd:ee:01 10.0.0.11 handoff",
		id + " pc-01 aa:bb:cc:dd:ee:01 10.0.0.11 booted",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("watch printed:\n%s\nwant (after the time):\n%s", out.String(), strings.Join(want, "\n"))
	}
}
