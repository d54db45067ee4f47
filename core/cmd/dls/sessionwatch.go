package main

// dls session watch: boots as they happen, one line per stage. The API
// has no event stream; watch polls GET sessions and prints what changed.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// watchEvent is one line of dls session watch (and one JSON line with
// -o json).
type watchEvent struct {
	Time    time.Time `json:"time"`
	Session int64     `json:"session"`
	Client  string    `json:"client,omitempty"`
	MAC     string    `json:"mac"`
	Address string    `json:"address,omitempty"`
	// Stage is the stage reached; State "done" or "failed" when the
	// session ended (Stage then the failed stage, if any).
	Stage string `json:"stage,omitempty"`
	State string `json:"state,omitempty"`
}

// sessionWatcher remembers what it has printed of each session.
type sessionWatcher struct {
	seen  map[int64]map[string]bool // session → stages printed
	ended map[int64]bool
}

func newSessionWatcher() *sessionWatcher {
	return &sessionWatcher{seen: map[int64]map[string]bool{}, ended: map[int64]bool{}}
}

// changes are the events of ss not seen before, oldest first. With
// quiet, they are only remembered (what was there when watch started).
func (w *sessionWatcher) changes(ss []apiSession, quiet bool) []watchEvent {
	var out []watchEvent
	for _, s := range ss {
		seen := w.seen[s.ID]
		if seen == nil {
			seen = map[string]bool{}
			w.seen[s.ID] = seen
		}
		base := watchEvent{Session: s.ID, Client: s.Client, MAC: s.MAC, Address: s.Address}
		for _, st := range s.stages() {
			if !seen[st.name] {
				seen[st.name] = true
				e := base
				e.Time, e.Stage = st.at, st.name
				out = append(out, e)
			}
		}
		if (s.State == "done" || s.State == "failed") && !w.ended[s.ID] {
			w.ended[s.ID] = true
			e := base
			e.Time, e.State, e.Stage = s.Ended, s.State, s.FailedStage
			out = append(out, e)
		}
	}
	if quiet {
		return nil
	}
	slices.SortStableFunc(out, func(a, b watchEvent) int { return a.Time.Compare(b.Time) })
	return out
}

func (e watchEvent) line() string {
	who := e.Client
	if who == "" {
		who = "(unknown)"
	}
	what := e.Stage
	switch e.State {
	case "done":
		what = "booted"
	case "failed":
		what = "FAILED"
		if e.Stage != "" {
			what += " at " + e.Stage
		}
	}
	addr := e.Address
	if addr == "" {
		addr = "-"
	}
	return fmt.Sprintf("%s  #%-5d %-12s %-17s %-15s %s", e.Time.Local().Format("15:04:05.000"), e.Session, who, e.MAC, addr, what)
}

func sessionWatch() *command {
	var (
		client   string
		interval time.Duration
		forDur   time.Duration
	)
	return &command{
		name: "watch", api: true,
		summary: "Follow boots live, one line per stage",
		help: `Prints each stage a boot session reaches as it is reached, and each
session's end (booted, or FAILED at a stage); -o json prints one JSON
object a line. Sessions already running when watch starts show from their
next stage. It polls the API every --interval; Ctrl-C stops it.
`,
		example: "dls session watch --client pc-01",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&client, "client", "", "`CLIENT` only this client's boots")
			fs.DurationVar(&interval, "interval", time.Second, "`DURATION` to wait between polls")
			fs.DurationVar(&forDur, "for", 0, "stop after `DURATION` (default: until interrupted)")
		},
		run: func(ctx context.Context, c *cli, _ []string) error {
			if interval < 50*time.Millisecond {
				return usagef("--interval %s: at least 50ms", interval)
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			if forDur > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, forDur)
				defer cancel()
			}
			q := url.Values{"limit": {strconv.Itoa(500)}}
			if client != "" {
				q.Set("client", client)
			}
			w := newSessionWatcher()
			enc := json.NewEncoder(c.stdout)
			first := true
			for {
				var ss []apiSession
				err := getJSON(ctx, conn, "/sessions?"+q.Encode(), &ss)
				if ctx.Err() != nil {
					return nil // --for elapsed, or interrupted: a normal end
				}
				if err != nil {
					return err
				}
				for _, e := range w.changes(ss, first) {
					if c.api.json() {
						if err := enc.Encode(e); err != nil {
							return err
						}
					} else {
						fmt.Fprintln(c.stdout, e.line())
					}
				}
				first = false
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
}
