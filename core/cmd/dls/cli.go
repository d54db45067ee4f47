package main

// The API client commands: login, logout, client, wake, image, session,
// backup, restore. Each is a thin client of a running host's /api/v1: it
// sends one or two requests and prints the answer as an aligned table, or
// as the API's JSON with -o json. API errors print the API's message and
// exit 1; usage errors exit 2.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

const apiUsage = `API client commands (a running host's /api/v1):
  dls login [--server URL] [--user NAME] [--password-stdin]
  dls logout
  dls client list|get|add|set|delete|reset|wake ...
  dls wake NAME
  dls image list|get|add|delete|versions|snapshot|promote|import|current|delete-version ...
  dls session list|get ...
  dls backup FILE [--audit N]
  dls restore FILE

Each takes --server URL (default: $DLS_SERVER, else the server logged in
to, else ` + defaultServer + `), --tls-ca FILE, --insecure and -o table|json.
Credentials live in $XDG_CONFIG_HOME/dls/credentials.json (else
~/.config/dls/credentials.json), mode 0600.
`

// apiCommands are the commands apiCommand runs, with their usage.
var apiCommands = map[string]struct {
	run   func(c *cli, ctx context.Context, args []string) error
	usage string
}{
	"login":   {(*cli).login, loginUsage},
	"logout":  {(*cli).logout, logoutUsage},
	"client":  {(*cli).client, clientUsage},
	"wake":    {(*cli).wake, wakeUsage},
	"image":   {(*cli).image, imageUsage},
	"session": {(*cli).session, sessionUsage},
	"backup":  {(*cli).backup, backupUsage},
	"restore": {(*cli).restore, restoreUsage},
}

// isAPICommand reports whether cmd is one of apiCommands.
func isAPICommand(cmd string) bool {
	_, ok := apiCommands[cmd]
	return ok
}

// cli is one run of an API client command; tests build it with their own
// environment and clock.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	// name is the command being run ("dls client add"), for messages.
	name string
}

// apiCommand runs `dls <cmd> args...` and answers the exit code.
func apiCommand(ctx context.Context, cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}
	return c.run(ctx, cmd, args)
}

func (c *cli) run(ctx context.Context, cmd string, args []string) int {
	ac, ok := apiCommands[cmd]
	if !ok {
		fmt.Fprintf(c.stderr, "dls: unknown command %q\n\n%s", cmd, apiUsage)
		return 2
	}
	c.name = "dls " + cmd
	err := ac.run(c, ctx, args)
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		fmt.Fprint(c.stdout, ac.usage)
		return 0
	case errors.Is(err, flag.ErrHelp): // the flag package printed the usage
		return 0
	case errors.As(err, &ue):
		if ue.printed {
			return 2
		}
		if ue.msg != "" {
			fmt.Fprintf(c.stderr, "%s: %s\n\n", c.name, ue.msg)
		}
		fmt.Fprint(c.stderr, ac.usage)
		return 2
	}
	fmt.Fprintf(c.stderr, "%s: %v\n", c.name, err)
	return 1
}

// usageError is a command line mistake: exit code 2.
type usageError struct {
	msg string
	// printed: the flag package printed the mistake and the usage.
	printed bool
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errHelp: help was asked for (dls client help); exit 0.
var errHelp = errors.New("help")

func (c *cli) warn(msg string) {
	fmt.Fprintln(c.stderr, msg)
}

// commonFlags are taken by every API command.
type commonFlags struct {
	server   string
	tlsCA    string
	insecure bool
	output   string
}

func (f *commonFlags) json() bool { return f.output == "json" }

// flags is a flag set for c.name with the common flags.
func (c *cli) flags(usage string) (*flag.FlagSet, *commonFlags) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() { fmt.Fprint(c.stderr, usage) }
	f := &commonFlags{}
	fs.StringVar(&f.server, "server", "", "API server URL (default $DLS_SERVER, else the one logged in to, else "+defaultServer+")")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of the CA that signed the server's certificate")
	fs.BoolVar(&f.insecure, "insecure", false, "do not check the server's certificate")
	fs.StringVar(&f.output, "o", "table", "output: table or json")
	fs.StringVar(&f.output, "output", "table", "output: table or json")
	return fs, f
}

// parse parses args, flags and positional arguments in any order ("--"
// ends the flags), and checks that there are between min and max
// positional arguments (max < 0: no limit).
func (c *cli) parse(fs *flag.FlagSet, f *commonFlags, args []string, min, max int, what string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{printed: true}
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	if f.output != "table" && f.output != "json" {
		return nil, usagef("-o %q: want table or json", f.output)
	}
	switch {
	case len(pos) < min:
		return nil, usagef("missing %s", what)
	case max >= 0 && len(pos) > max:
		return nil, usagef("unexpected argument %q", pos[max])
	}
	return pos, nil
}

// listFlag is a flag that may repeat.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// given reports the flags set on the command line.
func given(fs *flag.FlagSet) map[string]bool {
	m := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
	return m
}

// verb splits "client add pc-01 ..." into the verb and the rest, and names
// the command after it.
func (c *cli) verb(args []string) (string, []string, error) {
	if len(args) == 0 {
		return "", nil, usagef("")
	}
	v := args[0]
	if v == "help" || v == "-h" || v == "--help" {
		return "", nil, errHelp
	}
	c.name += " " + v
	return v, args[1:], nil
}

// printJSON writes an API answer as it came.
func (c *cli) printJSON(b []byte) {
	c.stdout.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		fmt.Fprintln(c.stdout)
	}
}

// table writes rows under header, tab-separated cells aligned; empty
// cells print as "-".
func (c *cli) table(header string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		for i, cell := range r {
			if cell == "" {
				r[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fields writes name/value pairs, one a line, aligned.
func (c *cli) fields(pairs ...string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1]
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", pairs[i], v)
	}
	return tw.Flush()
}

// when formats a time for tables: local, to the second; zero is "".
func when(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// size formats a byte count with binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
