package main

// Fleet verbs: dls client wake|reset act on one client by name, on the
// clients with given labels (--label room=a, repeatable: all must match),
// or on every client (--all).
//
// The selection is made here, from GET clients, and each client then goes
// through the same per-client endpoint as the single-name form. A
// server-side selector would save requests, but a lab is tens to hundreds
// of machines, and this way every client gets its own audit entry and its
// own answer (a reset refused for one attached volume does not hide the
// others), with no second API surface to keep in step.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// selection is how a fleet verb picks its clients.
type selection struct {
	labels listFlag
	all    bool
	yes    bool
}

func (s *selection) register(fs *flag.FlagSet) {
	fs.Var(&s.labels, "label", "`KEY=VALUE` act on the clients with this label (repeat: all must match)")
	fs.BoolVar(&s.all, "all", false, "act on every client")
	fs.BoolVar(&s.yes, "yes", false, "do not ask for confirmation")
}

// names resolves the selection: args[0] alone, or the clients matching
// --label or --all, by name.
func (s *selection) names(ctx context.Context, conn *apiConn, args []string) ([]string, error) {
	switch {
	case len(args) == 1 && (s.all || len(s.labels) > 0):
		return nil, usagef("give a client NAME, --label or --all, not several")
	case len(args) == 1:
		return args, nil
	case s.all && len(s.labels) > 0:
		return nil, usagef("give --label or --all, not both")
	case !s.all && len(s.labels) == 0:
		return nil, usagef("missing client name (or --label KEY=VALUE, or --all)")
	}
	want, err := parseLabels(s.labels)
	if err != nil {
		return nil, err
	}
	cs, err := listClients(ctx, conn)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, cl := range cs {
		if matches(cl.Labels, want) {
			out = append(out, cl.Name)
		}
	}
	if len(out) == 0 {
		if s.all {
			return nil, errors.New("there are no clients")
		}
		return nil, fmt.Errorf("no client has %s (dls client list shows the clients)", labelText(want))
	}
	return out, nil
}

// matches reports whether labels has every label of want.
func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func labelText(m map[string]string) string {
	var kv []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		kv = append(kv, k+"="+m[k])
	}
	return "label " + strings.Join(kv, ", ")
}

// confirm asks "VERB N clients? [y/N]" when a person is at a terminal and
// --yes was not given; anything but y or yes declines (exit 1).
func (c *cli) confirm(verb string, n int, yes bool) error {
	if yes || !c.isInteractive() {
		return nil
	}
	what := "clients"
	if n == 1 {
		what = "client"
	}
	fmt.Fprintf(c.stderr, "%s %d %s? [y/N] ", verb, n, what)
	line, err := readLine(c.stdin)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed; nothing done (--yes skips the question)")
}

func (c *cli) isInteractive() bool {
	if c.interactive != nil {
		return c.interactive()
	}
	_, ok := terminal(c.stdin)
	return ok
}

// fleet runs do for each client of names, stopping at nothing: every
// client is tried, failures are listed, and the count ends it.
func (c *cli) fleet(names []string, past string, do func(name string) error) error {
	failed := 0
	for _, n := range names {
		if err := do(n); err != nil {
			failed++
			fmt.Fprintf(c.stderr, "client %s: %v\n", n, err)
		}
	}
	if !c.api.json() {
		fmt.Fprintf(c.stdout, "%s %d of %d clients\n", past, len(names)-failed, len(names))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d clients failed", failed, len(names))
	}
	return nil
}
