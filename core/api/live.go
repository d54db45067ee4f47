package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/dls-project/dls/core/clientfeed"
	"github.com/dls-project/dls/core/store"
)

// The floor: every client's state now, for the console's tiles, and a
// stream of server-sent events that moves them as boots go on.

// Tile states, in the order a boot goes through them, and the two ends.
const (
	TileOff        = "off"
	TileDHCP       = "dhcp"
	TileScript     = "script"
	TileISCSILogin = "iscsi_login"
	TileHandoff    = "handoff"
	TileBooted     = "booted"
	TileFailed     = "failed"
)

// tileStages are the session stages a tile shows as they are; a stage
// not among them (a boot loader step such as shim, grub or ipxe reported
// by a future plugin) lies between the DHCP answer and the iSCSI login and
// shows as script, with its name as the tile's stage.
var tileStages = []string{TileDHCP, TileScript, TileISCSILogin, TileHandoff, TileBooted}

// TileState is the state a client's tile shows for its latest session
// (nil: none), and the stage behind it: the latest stage reached, or for
// a failed boot the stage that did not arrive.
func TileState(s *store.Session) (state, stage string) {
	switch {
	case s == nil:
		return TileOff, ""
	case s.State == store.SessionFailed:
		return TileFailed, s.FailedStage
	case s.State == store.SessionDone:
		return TileBooted, latestStage(s.Stages)
	}
	stage = latestStage(s.Stages)
	if stage == "" {
		return TileDHCP, ""
	}
	if slices.Contains(tileStages, stage) {
		return stage, stage
	}
	return TileScript, stage
}

// latestStage is the stage reached last (the furthest of equal times).
func latestStage(stages map[string]time.Time) string {
	best, bestAt := "", time.Time{}
	for st, at := range stages {
		if best == "" || at.After(bestAt) || (at.Equal(bestAt) && slices.Index(tileStages, st) > slices.Index(tileStages, best)) {
			best, bestAt = st, at
		}
	}
	return best
}

// SessionWatcher gives the boot session changes published from now on;
// the channel closes when ctx ends or the watcher fell behind.
// *sessionfeed.Feed implements it.
type SessionWatcher interface {
	Subscribe(ctx context.Context) <-chan store.Session
}

// ClientWatcher calls fn with every change of the client table, a
// snapshot first, until ctx ends or fn fails. *clientfeed.Feed implements
// it.
type ClientWatcher interface {
	Watch(ctx context.Context, fn func(clientfeed.Change) error) error
}

// tileJSON is one client on the floor.
type tileJSON struct {
	Name    string            `json:"name"`
	MAC     string            `json:"mac"`
	Image   string            `json:"image"`
	Version uint64            `json:"version,omitempty"`
	Address string            `json:"address,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	State   string            `json:"state"`
	Stage   string            `json:"stage,omitempty"`
	// Session is the latest boot session's ID (0: none); BootSeconds its
	// start to its end, or to now while it runs.
	Session     int64     `json:"session,omitempty"`
	Started     time.Time `json:"started,omitzero"`
	BootSeconds float64   `json:"boot_seconds,omitempty"`
}

// floorJSON is GET floor's answer.
type floorJSON struct {
	Tiles  []tileJSON     `json:"tiles"`
	Counts map[string]int `json:"counts"`
	// At is when the floor was read: a change the event stream sent
	// before it is already in it.
	At time.Time `json:"at"`
}

// floor: GET floor, every client with the state of its latest boot.
func (a *API) floor(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	now := a.clock.Now()
	cs, err := a.deps.Store.ListClients(ctx)
	if err != nil {
		return err
	}
	latest, err := a.latestSessions(ctx, cs)
	if err != nil {
		return err
	}
	versions := a.currentVersions(ctx, cs)
	out := floorJSON{Tiles: make([]tileJSON, 0, len(cs)), Counts: map[string]int{}, At: now}
	for _, st := range []string{TileOff, TileDHCP, TileScript, TileISCSILogin, TileHandoff, TileBooted, TileFailed} {
		out.Counts[st] = 0
	}
	for _, c := range cs {
		t := tileJSON{Name: c.Name, MAC: c.MAC, Image: c.Image, Version: versions[c.Image], Labels: c.Labels}
		if c.Address.IsValid() {
			t.Address = c.Address.String()
		}
		s, ok := latest[c.Name]
		if ok {
			t.State, t.Stage = TileState(&s)
			t.Session, t.Started = s.ID, s.Started
			t.BootSeconds = bootSeconds(s, now)
			if t.Address == "" {
				t.Address = s.Address
			}
		} else {
			t.State, t.Stage = TileState(nil)
		}
		out.Counts[t.State]++
		out.Tiles = append(out.Tiles, t)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// bootSeconds is a session's length: to its end, or to now while active.
func bootSeconds(s store.Session, now time.Time) float64 {
	end := s.Ended
	if end.IsZero() {
		end = now
	}
	if s.Started.IsZero() || end.Before(s.Started) {
		return 0
	}
	return end.Sub(s.Started).Seconds()
}

// latestSessions finds each client's latest session: one query for the
// newest session of each client, then, past MaxSessionLimit clients, one
// per client not among them.
func (a *API) latestSessions(ctx context.Context, cs []store.Client) (map[string]store.Session, error) {
	ss, err := a.deps.Store.ListSessions(ctx, store.SessionFilter{Latest: true, Limit: store.MaxSessionLimit})
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	latest := make(map[string]store.Session, len(cs))
	for _, s := range ss {
		latest[s.Client] = s
	}
	if len(ss) < store.MaxSessionLimit {
		return latest, nil // every client's newest was in that answer
	}
	for _, c := range cs {
		if _, ok := latest[c.Name]; ok {
			continue
		}
		one, err := a.deps.Store.ListSessions(ctx, store.SessionFilter{Client: c.Name, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("list sessions of %s: %w", c.Name, err)
		}
		if len(one) == 1 {
			latest[c.Name] = one[0]
		}
	}
	return latest, nil
}

// currentVersions asks each image's storage for its current version; an
// image whose storage cannot answer is left out (its tiles show no
// version) rather than failing the floor.
func (a *API) currentVersions(ctx context.Context, cs []store.Client) map[string]uint64 {
	out := map[string]uint64{}
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.Image] {
			continue
		}
		seen[c.Image] = true
		st, err := a.deps.Storage.ImageStorage(ctx, c.Image)
		if err != nil {
			continue
		}
		vs, err := st.ListVersions(ctx, c.Image)
		if err != nil {
			a.logger.Debug("floor: no versions of the image", "image", c.Image, "error", err)
			continue
		}
		for _, v := range vs {
			if v.Current {
				out[c.Image] = v.Number
			}
		}
	}
	return out
}

// sessionEventJSON is the data of a "session" event.
type sessionEventJSON struct {
	Client  string      `json:"client"`
	State   string      `json:"state"`
	Stage   string      `json:"stage,omitempty"`
	Seconds float64     `json:"boot_seconds,omitempty"`
	Session sessionJSON `json:"session"`
}

// heartbeat is how often an idle event stream sends a comment, so that
// proxies keep it open and a dead peer is noticed.
const heartbeat = 15 * time.Second

// events: GET events, a text/event-stream of
//
//	event: session   data: {"client", "state", "stage", "session": {...}}
//	event: clients   data: {"version": N}   (the client table changed: re-read floor)
//
// It ends when the watcher falls behind a boot storm (the browser's
// EventSource reconnects, and the page re-reads the floor on connect), and
// answers 501 when the host has no session feed.
func (a *API) events(w http.ResponseWriter, r *http.Request) error {
	if a.deps.LiveSessions == nil {
		return errorf(http.StatusNotImplemented, "this host has no live session feed")
	}
	rc := http.NewResponseController(w)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	changes := a.deps.LiveSessions.Subscribe(ctx)
	clients := make(chan uint64, 1)
	if a.deps.ClientChanges != nil {
		go func() {
			first := true
			_ = a.deps.ClientChanges.Watch(ctx, func(c clientfeed.Change) error {
				if first { // the snapshot: the page reads the floor anyway
					first = false
					return nil
				}
				select { // only the latest version matters
				case <-clients:
				default:
				}
				clients <- c.Version
				return nil
			})
		}()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
		return err
	}
	session := func(s store.Session) error {
		st, stage := TileState(&s)
		return write("session", sessionEventJSON{Client: s.Client, State: st, Stage: stage,
			Seconds: bootSeconds(s, a.clock.Now()), Session: toSessionJSON(s)})
	}
	// retry: how long the browser waits before reconnecting.
	if _, err := fmt.Fprint(w, "retry: 2000\n: connected\n\n"); err != nil || rc.Flush() != nil {
		return nil
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return nil
		case s, ok := <-changes:
			if !ok {
				return nil // fell behind: the browser reconnects and re-reads
			}
			err = session(s)
			// In a storm, what is already queued goes out with one flush.
			for n := len(changes); err == nil && n > 0; n-- {
				if s, ok = <-changes; !ok {
					return nil
				}
				err = session(s)
			}
			if err == nil {
				err = rc.Flush()
			}
		case v := <-clients:
			if err = write("clients", map[string]uint64{"version": v}); err == nil {
				err = rc.Flush()
			}
		case <-tick.C:
			if _, err = fmt.Fprint(w, ": keep-alive\n\n"); err == nil {
				err = rc.Flush()
			}
		}
		if err != nil {
			return nil // the browser went away
		}
	}
}
