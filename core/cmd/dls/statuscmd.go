package main

// dls status: the host on one screen, from the API's own lists.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// apiPlugin is a plugin instance as GET plugins shows it.
type apiPlugin struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Type      string `json:"type"`
	Version   string `json:"version,omitempty"`
	State     string `json:"state"`
	Healthy   bool   `json:"healthy"`
	Restarts  int    `json:"restarts"`
	LastError string `json:"error,omitempty"`
}

// statusWindow is how far back dls status counts boots.
const statusWindow = time.Hour

// statusImage is an image and its current version (0: none, or its
// storage did not answer).
type statusImage struct {
	Name    string `json:"name"`
	Storage string `json:"storage"`
	Current uint64 `json:"current,omitempty"`
}

// statusReport is what dls status shows (and prints with -o json).
type statusReport struct {
	Plugins []apiPlugin   `json:"plugins"`
	Images  []statusImage `json:"images"`
	// Clients counts each client by its latest boot in the last hour:
	// booted (done), booting (active), failed, off (no boot).
	Clients struct {
		Total   int `json:"total"`
		Booted  int `json:"booted"`
		Booting int `json:"booting"`
		Failed  int `json:"failed"`
		Off     int `json:"off"`
	} `json:"clients"`
	// Discovered is how many unknown machines wait for adoption; nil
	// when the host has no discovery (GET discovered is 404).
	Discovered *int         `json:"discovered,omitempty"`
	Failures   []apiSession `json:"failures"`
}

func statusCommand() *command {
	return &command{
		name: "status", api: true,
		summary: "Show the host on one screen: plugins, images, boots, failures",
		help: `Plugins and their state, images and their current versions, clients by
their latest boot in the last hour (booted, booting, failed, or off: no
boot), unknown machines waiting for adoption, and the last failed boots.
`,
		example: "dls status",
		run: func(ctx context.Context, c *cli, _ []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			rep, err := collectStatus(ctx, conn, c.now())
			if err != nil {
				return err
			}
			if c.api.json() {
				b, err := json.MarshalIndent(rep, "", "  ")
				if err != nil {
					return err
				}
				c.printJSON(b)
				return nil
			}
			return c.showStatus(rep)
		},
	}
}

// getJSON GETs path into v.
func getJSON(ctx context.Context, conn *apiConn, path string, v any) error {
	b, err := conn.call(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}

func collectStatus(ctx context.Context, conn *apiConn, now time.Time) (*statusReport, error) {
	rep := &statusReport{Plugins: []apiPlugin{}, Images: []statusImage{}, Failures: []apiSession{}}
	if err := getJSON(ctx, conn, "/plugins", &rep.Plugins); err != nil {
		return nil, err
	}
	var ims []apiImage
	if err := getJSON(ctx, conn, "/images", &ims); err != nil {
		return nil, err
	}
	for _, im := range ims {
		var vs []apiVersion
		// An image whose storage is down still shows, without a version.
		_ = getJSON(ctx, conn, imagePath(im.Name)+"/versions", &vs)
		e := statusImage{Name: im.Name, Storage: im.Storage}
		for _, v := range vs {
			if v.Current {
				e.Current = v.Number
			}
		}
		rep.Images = append(rep.Images, e)
	}
	var clients []apiClient
	if err := getJSON(ctx, conn, "/clients", &clients); err != nil {
		return nil, err
	}
	var recent []apiSession
	if err := getJSON(ctx, conn, "/sessions?limit=10000", &recent); err != nil {
		return nil, err
	}
	latest := map[string]apiSession{} // client → its newest session in the window
	for _, s := range recent {
		if s.Client == "" || now.Sub(s.Started) > statusWindow {
			continue
		}
		if l, ok := latest[s.Client]; !ok || s.Started.After(l.Started) {
			latest[s.Client] = s
		}
	}
	rep.Clients.Total = len(clients)
	for _, cl := range clients {
		s, ok := latest[cl.Name]
		switch {
		case !ok:
			rep.Clients.Off++
		case s.State == "done":
			rep.Clients.Booted++
		case s.State == "failed":
			rep.Clients.Failed++
		default:
			rep.Clients.Booting++
		}
	}
	var discovered []json.RawMessage
	var ae *apiError
	switch err := getJSON(ctx, conn, "/discovered", &discovered); {
	case err == nil:
		n := len(discovered)
		rep.Discovered = &n
	case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
		// A host without discovery: nothing to say.
	default:
		return nil, err
	}
	if err := getJSON(ctx, conn, "/sessions?"+url.Values{"state": {"failed"}, "limit": {"5"}}.Encode(), &rep.Failures); err != nil {
		return nil, err
	}
	return rep, nil
}

func (c *cli) showStatus(rep *statusReport) error {
	w := c.stdout
	var plugins []string
	for _, p := range rep.Plugins {
		st := p.State
		if p.State == "running" && !p.Healthy {
			st = "unhealthy"
		}
		if p.Restarts > 0 {
			st += ", " + strconv.Itoa(p.Restarts) + " restarts"
		}
		if p.LastError != "" && p.State != "running" {
			st += ": " + p.LastError
		}
		plugins = append(plugins, fmt.Sprintf("%s (%s/%s) %s", p.Name, p.Kind, p.Type, st))
	}
	fmt.Fprintf(w, "Plugins:     %s\n", orNone(strings.Join(plugins, "; ")))
	var images []string
	for _, im := range rep.Images {
		v := "no version"
		if im.Current > 0 {
			v = "v" + strconv.FormatUint(im.Current, 10)
		}
		images = append(images, fmt.Sprintf("%s %s (%s)", im.Name, v, im.Storage))
	}
	sort.Strings(images)
	fmt.Fprintf(w, "Images:      %s\n", orNone(strings.Join(images, ", ")))
	cl := rep.Clients
	fmt.Fprintf(w, "Clients:     %d: %d booted, %d booting, %d failed, %d off (last hour)\n", cl.Total, cl.Booted, cl.Booting, cl.Failed, cl.Off)
	if rep.Discovered != nil {
		if *rep.Discovered == 0 {
			fmt.Fprintln(w, "Discovered:  none waiting")
		} else {
			fmt.Fprintf(w, "Discovered:  %d waiting (dls client discovered, then dls client adopt)\n", *rep.Discovered)
		}
	}
	if len(rep.Failures) == 0 {
		fmt.Fprintln(w, "Failures:    none")
		return nil
	}
	fmt.Fprintln(w, "Failures:    (dls session get ID for the stages)")
	rows := make([][]string, len(rep.Failures))
	for i, s := range rep.Failures {
		who := s.Client
		if who == "" {
			who = s.MAC
		}
		rows[i] = []string{"  " + strconv.FormatInt(s.ID, 10), who, "failed at " + orNone(s.FailedStage), when(s.Started)}
	}
	return c.table("  ID\tCLIENT\tWHERE\tSTARTED", rows)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
