package main

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

// apiSession is a boot session as the API shows it.
type apiSession struct {
	ID          int64                `json:"id"`
	Client      string               `json:"client,omitempty"`
	MAC         string               `json:"mac"`
	Address     string               `json:"address,omitempty"`
	Stages      map[string]time.Time `json:"stages"`
	Expect      string               `json:"expect"`
	State       string               `json:"state"`
	FailedStage string               `json:"failed_stage,omitempty"`
	TokenUsed   bool                 `json:"token_used"`
	Started     time.Time            `json:"started"`
	Ended       time.Time            `json:"ended,omitzero"`
}

// stage is one stage a session reached.
type stage struct {
	name string
	at   time.Time
}

// stages are s's stages in the order they were reached.
func (s apiSession) stages() []stage {
	out := make([]stage, 0, len(s.Stages))
	for n, at := range s.Stages {
		out = append(out, stage{n, at})
	}
	slices.SortFunc(out, func(a, b stage) int { return a.at.Compare(b.at) })
	return out
}

// lastStage is the latest stage reached ("" for none).
func (s apiSession) lastStage() string {
	st := s.stages()
	if len(st) == 0 {
		return ""
	}
	return st[len(st)-1].name
}

// duration is how long the session lasted, or has lasted so far.
func (s apiSession) duration(now time.Time) string {
	end := s.Ended
	if end.IsZero() {
		end = now
	}
	if s.Started.IsZero() || end.Before(s.Started) {
		return ""
	}
	return end.Sub(s.Started).Round(time.Second).String()
}

func sessionCommand() *command {
	return &command{
		name:    "session",
		summary: "Show boot sessions",
		help: `A boot session is one boot of one machine, from its first DHCP packet to
the last stage it is expected to reach.
`,
		sub: []*command{sessionList(), sessionGet(), sessionWatch(), sessionTimes()},
	}
}

func sessionList() *command {
	var (
		client, state string
		limit         int
	)
	return &command{
		name: "list", api: true,
		summary: "List boot sessions, the newest first",
		example: "dls session list --state failed",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&client, "client", "", "`CLIENT` only this client's sessions")
			fs.StringVar(&state, "state", "", "`STATE` only sessions in this state: active, done or failed")
			fs.IntVar(&limit, "limit", 0, "at most `N` sessions (default: the server's, 100)")
		},
		run: func(ctx context.Context, c *cli, _ []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			q := url.Values{}
			if client != "" {
				q.Set("client", client)
			}
			if state != "" {
				q.Set("state", state)
			}
			if limit != 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			path := "/sessions"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			b, err := conn.call(ctx, "GET", path, nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var ss []apiSession
			if err := json.Unmarshal(b, &ss); err != nil {
				return fmt.Errorf("decode sessions: %w", err)
			}
			now := c.now()
			rows := make([][]string, len(ss))
			for i, s := range ss {
				st := s.State
				if s.FailedStage != "" {
					st += " (" + s.FailedStage + ")"
				}
				rows[i] = []string{strconv.FormatInt(s.ID, 10), s.Client, s.MAC, s.Address, st, s.lastStage() + "/" + s.Expect, when(s.Started), s.duration(now)}
			}
			return c.table("ID\tCLIENT\tMAC\tADDRESS\tSTATE\tSTAGE/EXPECT\tSTARTED\tDURATION", rows)
		},
	}
}

func sessionGet() *command {
	return &command{
		name: "get", args: "ID", nargs: 1, what: "session ID", api: true,
		summary: "Show a boot session and the stages it reached",
		example: "dls session get 42",
		run: func(ctx context.Context, c *cli, args []string) error {
			id, err := parseUint(args[0], "session ID")
			if err != nil {
				return err
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", "/sessions/"+strconv.FormatUint(id, 10), nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var s apiSession
			if err := json.Unmarshal(b, &s); err != nil {
				return fmt.Errorf("decode session: %w", err)
			}
			return c.showSession(s)
		},
	}
}

func (c *cli) showSession(s apiSession) error {
	pairs := []string{
		"ID", strconv.FormatInt(s.ID, 10),
		"Client", s.Client,
		"MAC", s.MAC,
		"Address", s.Address,
		"State", s.State,
		"Failed stage", s.FailedStage,
		"Expect", s.Expect,
		"Token used", yesNo(s.TokenUsed),
		"Started", when(s.Started),
		"Ended", when(s.Ended),
		"Duration", s.duration(c.now()),
	}
	for _, st := range s.stages() {
		pairs = append(pairs, "Stage "+st.name, fmt.Sprintf("%s (+%s)", when(st.at), st.at.Sub(s.Started).Round(time.Millisecond)))
	}
	return c.fields(pairs...)
}
