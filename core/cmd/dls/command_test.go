package main

import (
	"bytes"
	"context"
	"flag"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

// run runs `dls name args...` in-process: the API command tests' entry.
func (c *cli) run(ctx context.Context, name string, args []string) int {
	return c.dispatch(ctx, commands(), "dls", append([]string{name}, args...))
}

// runDLS runs dls args in-process, with no environment: for what ends
// before any command does its work (help, usage errors).
func runDLS(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	c := &cli{stdin: strings.NewReader(""), stdout: &o, stderr: &e, getenv: func(string) string { return "" }, now: time.Now}
	code = c.dispatch(t.Context(), commands(), "dls", args)
	return o.String(), e.String(), code
}

// node is one command of the tree with its path ("dls client add").
type node struct {
	path string
	cmd  *command
}

// walk lists every command of the tree below root, depth first.
func walk(root *command, path string) []node {
	var out []node
	for _, s := range root.sub {
		p := path + " " + s.name
		out = append(out, node{p, s})
		out = append(out, walk(s, p)...)
	}
	return out
}

// flagNames are the flags leaf n accepts.
func flagNames(n node) map[string]bool {
	c := &cli{}
	fs := c.flagSet(n.cmd, n.path)
	names := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) { names[f.Name] = true })
	return names
}

// mentionsFlag reports whether text names the flag --name (or -name).
func mentionsFlag(text, name string) bool {
	return regexp.MustCompile(`(^|[^a-z-])--?` + regexp.QuoteMeta(name) + `($|[^a-z-])`).MatchString(text)
}

// TestLeafHelpListsItsOwnFlags: every leaf of the tree answers --help on
// standard output with exit 0, names each flag it accepts and no flag it
// does not (any other command's), and shows one example of itself.
func TestLeafHelpListsItsOwnFlags(t *testing.T) {
	nodes := walk(commands(), "dls")
	all := map[string]bool{}
	for _, n := range nodes {
		if n.cmd.sub == nil {
			for name := range flagNames(n) {
				all[name] = true
			}
		}
	}
	leaves := 0
	for _, n := range nodes {
		if n.cmd.sub != nil {
			continue
		}
		leaves++
		t.Run(n.path, func(t *testing.T) {
			args := append(strings.Fields(strings.TrimPrefix(n.path, "dls ")), "--help")
			out, errOut, code := runDLS(t, args...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: "+n.path) {
				t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errOut, out)
			}
			own := flagNames(n)
			for name := range all {
				if got := mentionsFlag(out, name); got != own[name] {
					t.Errorf("help mentions --%s: %v, the command takes it: %v\n%s", name, got, own[name], out)
				}
			}
			if ex := "\nExample:\n  "; !strings.Contains(out, ex) || !strings.Contains(out[strings.Index(out, ex):], n.path) {
				t.Errorf("no example of %s:\n%s", n.path, out)
			}
			// -h and "help" as the only argument are the same.
			if o, _, code := runDLS(t, append(args[:len(args)-1], "-h")...); code != 0 || o != out {
				t.Errorf("-h: exit %d, stdout differs from --help:\n%s", code, o)
			}
		})
	}
	if leaves < 30 {
		t.Errorf("%d leaves in the tree: the walk lost some", leaves)
	}
}

// TestGroupHelpListsSubcommands: dls --help and every group's --help list
// each subcommand with its summary, on standard output, exit 0; without a
// subcommand the same goes to standard error with exit 2.
func TestGroupHelpListsSubcommands(t *testing.T) {
	groups := []node{{"dls", commands()}}
	for _, n := range walk(commands(), "dls") {
		if n.cmd.sub != nil {
			groups = append(groups, n)
		}
	}
	for _, g := range groups {
		t.Run(g.path, func(t *testing.T) {
			args := strings.Fields(strings.TrimPrefix(g.path, "dls"))
			for _, help := range []string{"--help", "-h", "help"} {
				out, errOut, code := runDLS(t, append(args, help)...)
				if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: "+g.path+" COMMAND") {
					t.Fatalf("%s: exit %d, stderr %q, stdout:\n%s", help, code, errOut, out)
				}
				for _, s := range g.cmd.sub {
					if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(s.name) + ` +` + regexp.QuoteMeta(s.summary) + `$`).MatchString(out) {
						t.Errorf("%s: no line for %s %q:\n%s", help, s.name, s.summary, out)
					}
				}
			}
			help, _, _ := runDLS(t, append(args, "--help")...)
			out, errOut, code := runDLS(t, args...)
			if code != 2 || out != "" || errOut != help {
				t.Errorf("no subcommand: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
			}
		})
	}
}

// TestUsageErrorsExit2: an unknown command or subcommand, an unknown flag,
// a missing or extra argument: exit 2, the mistake and the usage of the
// (sub)command it was made in on standard error, nothing on standard
// output.
func TestUsageErrorsExit2(t *testing.T) {
	cases := []struct {
		args []string
		msg  string
	}{
		{[]string{"frob"}, "dls: unknown command \"frob\"\n\nUsage: dls COMMAND"},
		{[]string{"client", "frob"}, "dls client: unknown command \"frob\"\n\nUsage: dls client COMMAND"},
		{[]string{"user", "frob", "alice"}, "dls user: unknown command \"frob\"\n\nUsage: dls user COMMAND"},
		{[]string{"image", "--bogus"}, "dls image: unknown command \"--bogus\""},
		{[]string{"client", "add", "pc-01", "--bogus"}, "flag provided but not defined: -bogus\nUsage: dls client add NAME"},
		{[]string{"serve", "--bogus"}, "flag provided but not defined: -bogus\nUsage: dls serve [--config FILE]"},
		{[]string{"user", "delete", "alice", "--role", "admin"}, "flag provided but not defined: -role\nUsage: dls user delete NAME"},
		{[]string{"image", "current", "win11"}, "dls image current: missing image name and version\n\nUsage: dls image current NAME VERSION"},
		{[]string{"session", "get", "1", "2"}, "dls session get: unexpected argument \"2\"\n\nUsage: dls session get ID"},
		{[]string{"validate", "extra"}, "dls validate: unexpected argument \"extra\""},
		{[]string{"user", "add"}, "dls user add: missing user name"},
	}
	for _, tc := range cases {
		out, errOut, code := runDLS(t, tc.args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, tc.msg) {
			t.Errorf("dls %s: exit %d, stdout %q, stderr:\n%s\nwant exit 2, stderr starting %q", strings.Join(tc.args, " "), code, out, errOut, tc.msg)
		}
	}
	// Every leaf refuses a flag it does not take.
	for _, n := range walk(commands(), "dls") {
		if n.cmd.sub != nil {
			continue
		}
		args := append(strings.Fields(strings.TrimPrefix(n.path, "dls ")), "--no-such-flag")
		if _, errOut, code := runDLS(t, args...); code != 2 || !strings.Contains(errOut, "Usage: "+n.path) {
			t.Errorf("%s --no-such-flag: exit %d, stderr:\n%s", n.path, code, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	b := buildInfo()
	want := "dls " + b.version + "\ncommit: " + b.commit + "\ngo:     " + runtime.Version() + "\n"
	for _, arg := range []string{"version", "--version", "-v"} {
		if out, errOut, code := runDLS(t, arg); code != 0 || out != want {
			t.Errorf("dls %s: exit %d, %q %q, want %q", arg, code, out, errOut, want)
		}
	}
}

// TestBuildInfoFallsBackToVCS: without -ldflags, the commit and a version
// come from what the toolchain stamped; -ldflags values win.
func TestBuildInfoFallsBackToVCS(t *testing.T) {
	info := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "ff145f268e6e60847f58dd01605e08fc329aec7e"},
		{Key: "vcs.modified", Value: "true"},
	}}
	got := fromBuildInfo(build{}, info)
	if got.commit != "ff145f268e6e60847f58dd01605e08fc329aec7e-dirty" || got.version != "dev-ff145f268e6e" {
		t.Errorf("from VCS: %+v", got)
	}
	got = fromBuildInfo(build{version: "v1.2.0", commit: "abc"}, info)
	if got.commit != "abc" || got.version != "v1.2.0" {
		t.Errorf("ldflags lost: %+v", got)
	}
	got = fromBuildInfo(build{}, &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}})
	if got.version != "v1.3.0" || got.commit != "" {
		t.Errorf("module version: %+v", got)
	}
}
