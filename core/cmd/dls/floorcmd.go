package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// apiTile is one client on GET floor.
type apiTile struct {
	Name        string            `json:"name"`
	Image       string            `json:"image"`
	Version     uint64            `json:"version"`
	Labels      map[string]string `json:"labels"`
	State       string            `json:"state"`
	Stage       string            `json:"stage"`
	BootSeconds float64           `json:"boot_seconds"`
}

// clientFloor is the console's floor as a table: what each client is doing
// now, grouped by a label.
func clientFloor() *command {
	group := "room"
	return &command{
		name: "floor", api: true,
		summary: "Show every client's boot state now, grouped by a label (the console's floor)",
		help: `States: off (no boot recorded), dhcp, script, iscsi_login, handoff (the
boot is there now), booted (the last boot ended done), failed (with the
stage that did not arrive). The last line counts clients per state.
`,
		example: "dls client floor --group room",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&group, "group", "room", "group by the label `KEY` (image: by image)")
		},
		run: func(ctx context.Context, c *cli, _ []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", "/floor", nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var f struct {
				Tiles  []apiTile      `json:"tiles"`
				Counts map[string]int `json:"counts"`
			}
			if err := json.Unmarshal(b, &f); err != nil {
				return fmt.Errorf("decode floor: %w", err)
			}
			of := func(t apiTile) string {
				if group == "image" {
					return t.Image
				}
				return t.Labels[group]
			}
			sort.SliceStable(f.Tiles, func(i, j int) bool {
				gi, gj := of(f.Tiles[i]), of(f.Tiles[j])
				if (gi == "") != (gj == "") {
					return gj == "" // no label last
				}
				if gi != gj {
					return gi < gj
				}
				return f.Tiles[i].Name < f.Tiles[j].Name
			})
			rows := make([][]string, len(f.Tiles))
			for i, t := range f.Tiles {
				st := t.State
				if t.Stage != "" && t.Stage != t.State && t.State != "booted" {
					st += " (" + t.Stage + ")"
				}
				img := t.Image
				if t.Version != 0 {
					img += " v" + strconv.FormatUint(t.Version, 10)
				}
				boot := ""
				if t.BootSeconds > 0 {
					boot = (time.Duration(t.BootSeconds*10) * time.Second / 10).String()
				}
				rows[i] = []string{of(t), t.Name, img, st, boot}
			}
			if err := c.table(strings.ToUpper(group)+"\tNAME\tIMAGE\tSTATE\tLAST BOOT", rows); err != nil {
				return err
			}
			var counts []string
			for _, s := range []string{"off", "dhcp", "script", "iscsi_login", "handoff", "booted", "failed"} {
				counts = append(counts, fmt.Sprintf("%s %d", s, f.Counts[s]))
			}
			_, err = fmt.Fprintln(c.stdout, strings.Join(counts, ", "))
			return err
		},
	}
}

// imageRollback makes the version before the current one current again.
func imageRollback() *command {
	return &command{
		name: "rollback", args: "NAME", nargs: 1, what: "image name", api: true,
		summary: "Make the version before the current one current again",
		help: `Clients boot it from their next boot (non-persistent ones get a fresh clone
of it). The same as dls image current NAME N with N the highest version
below the current one.
`,
		example: "dls image rollback win11",
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", imagePath(args[0])+"/versions", nil)
			if err != nil {
				return err
			}
			var vs []apiVersion
			if err := json.Unmarshal(b, &vs); err != nil {
				return fmt.Errorf("decode versions: %w", err)
			}
			var cur, prev uint64
			for _, v := range vs {
				if v.Current {
					cur = v.Number
				}
			}
			for _, v := range vs {
				if v.Number < cur && v.Number > prev {
					prev = v.Number
				}
			}
			if cur == 0 || prev == 0 {
				return fmt.Errorf("image %s: no version before the current one (%d) to roll back to", args[0], cur)
			}
			b, err = conn.call(ctx, "PUT", imagePath(args[0])+"/versions/current", map[string]uint64{"version": prev})
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			fmt.Fprintf(c.stdout, "image %s: rolled back from version %d to %d\n", args[0], cur, prev)
			return nil
		},
	}
}

// sessionTimes is the boot-time chart as a table: per hour, boots, failures
// and the percentiles of the boot times.
func sessionTimes() *command {
	hours := 24
	return &command{
		name: "times", api: true,
		summary: "Show boot times per hour for the last hours (the console's chart)",
		help: `Sessions by the hour they started in (UTC): boots that ended done, failed,
still active, and the p50, p90, p99 and max of the done boots' times.
`,
		example: "dls session times --hours 24",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&hours, "hours", 24, "the last `N` hours (1-168)")
		},
		run: func(ctx context.Context, c *cli, _ []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", "/boot-times?hours="+strconv.Itoa(hours), nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var bt struct {
				Hours []struct {
					Hour               time.Time `json:"hour"`
					Boots, Failed      int
					Active             int
					P50, P90, P99, Max float64
				} `json:"hours"`
				Sessions  int  `json:"sessions"`
				Truncated bool `json:"truncated"`
			}
			if err := json.Unmarshal(b, &bt); err != nil {
				return fmt.Errorf("decode boot times: %w", err)
			}
			secs := func(v float64) string {
				if v == 0 {
					return ""
				}
				return strconv.FormatFloat(v, 'f', 1, 64) + "s"
			}
			rows := make([][]string, len(bt.Hours))
			for i, h := range bt.Hours {
				rows[i] = []string{h.Hour.UTC().Format("2006-01-02 15:04"), strconv.Itoa(h.Boots), strconv.Itoa(h.Failed),
					strconv.Itoa(h.Active), secs(h.P50), secs(h.P90), secs(h.P99), secs(h.Max)}
			}
			if err := c.table("HOUR (UTC)\tBOOTS\tFAILED\tACTIVE\tP50\tP90\tP99\tMAX", rows); err != nil {
				return err
			}
			if bt.Truncated {
				fmt.Fprintf(c.stdout, "(the newest %d sessions only: the oldest hours miss some)\n", bt.Sessions)
			}
			return nil
		},
	}
}

// clientMaintenance starts, promotes or cancels a client's maintenance
// mode: where the image's next version is prepared.
func clientMaintenance() *command {
	return &command{
		name: "maintenance", args: "NAME start|promote|cancel", nargs: 2, what: "client name and action", api: true,
		summary: "Prepare an image's next version on one client (maintenance mode)",
		help: `start: the client's volume becomes a fresh clone of its image's current
version, kept across boots (even when the client is not persistent): boot it,
install, update, power it off. promote (admin): that volume becomes the
image's next, current version and the mode ends. cancel: the mode ends, the
volume stays as it is.
`,
		example: "dls client maintenance teacher start",
		run: func(ctx context.Context, c *cli, args []string) error {
			switch args[1] {
			case "start", "promote", "cancel":
			default:
				return usagef("maintenance: action %q: want start, promote or cancel", args[1])
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "POST", clientPath(args[0])+"/maintenance", map[string]string{"action": args[1]})
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var m struct {
				Maintenance bool        `json:"maintenance"`
				Version     *apiVersion `json:"version"`
			}
			if err := json.Unmarshal(b, &m); err != nil {
				return fmt.Errorf("decode maintenance: %w", err)
			}
			switch {
			case m.Maintenance:
				fmt.Fprintf(c.stdout, "client %s: in maintenance; its volume (a fresh clone of the current version) is kept across boots\n", args[0])
			case m.Version != nil:
				fmt.Fprintf(c.stdout, "client %s: its volume is now version %d of image %s (current); maintenance ended\n", args[0], m.Version.Number, m.Version.Image)
			default:
				fmt.Fprintf(c.stdout, "client %s: maintenance cancelled\n", args[0])
			}
			return nil
		},
	}
}

// imageRollout starts, completes, aborts or shows a staged rollout.
func imageRollout() *command {
	var (
		version uint64
		ring    string
	)
	return &command{
		name: "rollout", args: "NAME start --version N [--ring KEY=VALUE] | complete | abort | status", nargs: 2, what: "image name and action", api: true,
		summary: "Roll a version out to a ring of clients first (ring=canary), then to everyone",
		help: `start: the image's clients with the ring label (default ring=canary) boot
version N from their next boot (persistent ones get a fresh clone of it now;
those running are listed as busy). complete: N becomes the current version
for everyone. abort: the ring goes back to the current version.
`,
		example: "dls image rollout win11 start --version 4",
		flags: func(fs *flag.FlagSet) {
			fs.Uint64Var(&version, "version", 0, "start: the version `N` to roll out")
			fs.StringVar(&ring, "ring", "ring=canary", "start: the `KEY=VALUE` label of the clients that get it first")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			var body any
			method := "POST"
			switch args[1] {
			case "start":
				if version == 0 {
					return usagef("rollout start needs --version")
				}
				body = map[string]any{"action": "start", "version": version, "ring": ring}
			case "complete", "abort":
				body = map[string]string{"action": args[1]}
			case "status":
				method = "GET"
			default:
				return usagef("rollout: action %q: want start, complete, abort or status", args[1])
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, method, imagePath(args[0])+"/rollout", body)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var ro struct {
				Version uint64   `json:"version"`
				Stage   string   `json:"stage"`
				Clients []string `json:"clients"`
				Busy    []string `json:"busy"`
				Current uint64   `json:"current"`
			}
			if err := json.Unmarshal(b, &ro); err != nil {
				return fmt.Errorf("decode rollout: %w", err)
			}
			switch {
			case ro.Stage == "ring":
				fmt.Fprintf(c.stdout, "image %s: version %d on %d ring clients (%s)\n", args[0], ro.Version, len(ro.Clients), strings.Join(ro.Clients, ", "))
				if len(ro.Busy) > 0 {
					fmt.Fprintf(c.stdout, "running now, reset them to get it: %s\n", strings.Join(ro.Busy, ", "))
				}
			case ro.Stage == "done":
				fmt.Fprintf(c.stdout, "image %s: version %d is current for everyone\n", args[0], ro.Current)
			case args[1] == "abort":
				fmt.Fprintf(c.stdout, "image %s: rollout of version %d aborted\n", args[0], ro.Version)
			default:
				fmt.Fprintf(c.stdout, "image %s: no rollout in progress\n", args[0])
			}
			return nil
		},
	}
}
