package main

// The command tree. Every command of dls is a node of it: a group, which
// has subcommands, or a leaf, which runs. One path (dispatch) walks it for
// every command, so all of them answer --help the same way and share one
// set of exit codes: 0 done, 1 failed, 2 a command line mistake (printed
// with the usage of the (sub)command it was made in, on standard error).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// command is one node of the command tree. A leaf's flags and run are
// closures over the same variables: its constructor (clientAdd, ...)
// declares them, flags binds them to the flag set, run reads them. The tree
// is built anew for each run of dls, so nothing outlives it.
type command struct {
	// name selects the command in its group; aliases too (dls --version).
	name    string
	aliases []string
	// args is what follows the command's path in its usage line:
	// "NAME --mac MAC --image IMAGE".
	args string
	// summary is one line: in its group's list, and atop its help.
	summary string
	// help is paragraphs after the summary (may be empty).
	help string
	// example is one command line that uses a leaf.
	example string

	// nargs is how many positional arguments a leaf's run takes, and what
	// names them in "missing ..." ("client name"). Flags and arguments come
	// in any order; "--" ends the flags.
	nargs int
	what  string
	// optArgs is how many more positional arguments a leaf may take
	// (dls client wake [NAME] --label ...); run checks the combination.
	optArgs int
	// api: the leaf takes the API client flags (--server, --tls-ca,
	// --insecure, -o), which run finds in c.api.
	api bool
	// flags registers the leaf's own flags (nil: none).
	flags func(fs *flag.FlagSet)
	// run does the leaf's work. A *usageError exits 2 with the leaf's
	// usage, an exitCode with that code, any other error 1 after
	// "dls GROUP VERB: error".
	run func(ctx context.Context, c *cli, args []string) error

	// sub are a group's subcommands, in the order its help lists them.
	sub []*command
}

// find is the subcommand name selects, or nil.
func (cmd *command) find(name string) *command {
	for _, s := range cmd.sub {
		if s.name == name {
			return s
		}
		for _, a := range s.aliases {
			if a == name {
				return s
			}
		}
	}
	return nil
}

// usageError is a command line mistake: exit code 2. An empty msg has been
// said already (by the flag package), or there is nothing to say but the
// usage.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode ends a command that has printed its errors itself.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// dispatch runs cmd, named path ("dls client"), with args, and answers the
// exit code.
func (c *cli) dispatch(ctx context.Context, cmd *command, path string, args []string) int {
	if cmd.sub == nil {
		return c.runLeaf(ctx, cmd, path, args)
	}
	if len(args) == 0 {
		c.groupHelp(c.stderr, cmd, path)
		return 2
	}
	switch args[0] {
	case "help", "-h", "--help":
		c.groupHelp(c.stdout, cmd, path)
		return 0
	}
	sub := cmd.find(args[0])
	if sub == nil {
		fmt.Fprintf(c.stderr, "%s: unknown command %q\n\n", path, args[0])
		c.groupHelp(c.stderr, cmd, path)
		return 2
	}
	return c.dispatch(ctx, sub, path+" "+sub.name, args[1:])
}

// runLeaf parses a leaf's flags and arguments and runs it.
func (c *cli) runLeaf(ctx context.Context, cmd *command, path string, args []string) int {
	fs := c.flagSet(cmd, path)
	pos, err := c.parse(cmd, fs, args)
	if err == nil {
		err = cmd.run(ctx, c, pos)
	}
	var ue *usageError
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		c.leafHelp(c.stdout, cmd, path, fs)
		return 0
	case errors.As(err, &ue):
		if ue.msg != "" {
			fmt.Fprintf(c.stderr, "%s: %s\n\n", path, ue.msg)
		}
		c.leafHelp(c.stderr, cmd, path, fs)
		return 2
	case errors.As(err, &code):
		return int(code)
	}
	fmt.Fprintf(c.stderr, "%s: %v\n", path, err)
	return 1
}

// flagSet is a leaf's flag set: the API flags if it takes them, then its
// own.
func (c *cli) flagSet(cmd *command, path string) *flag.FlagSet {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	// The flag package prints a mistake, then calls Usage; runLeaf prints
	// the help after it, on standard output when it was asked for.
	fs.Usage = func() {}
	if cmd.api {
		c.api.register(fs)
	}
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	return fs
}

// parse parses args, flags and positional arguments in any order ("--"
// ends the flags), and checks that there are cmd.nargs positional
// arguments.
func (c *cli) parse(cmd *command, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{}
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
	if cmd.api {
		if err := c.api.check(); err != nil {
			return nil, err
		}
	}
	switch {
	case len(pos) < cmd.nargs:
		return nil, usagef("missing %s", cmd.what)
	case len(pos) > cmd.nargs+cmd.optArgs:
		return nil, usagef("unexpected argument %q", pos[cmd.nargs+cmd.optArgs])
	}
	return pos, nil
}

// groupHelp writes a group's usage and its subcommands, one line each.
func (c *cli) groupHelp(w io.Writer, cmd *command, path string) {
	fmt.Fprintf(w, "Usage: %s COMMAND [ARGS] [flags]\n\n%s\n", path, cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s", cmd.help)
	}
	fmt.Fprint(w, "\nCommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, s := range cmd.sub {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nRun %q for a command's arguments and flags.\n", path+" COMMAND --help")
}

// leafHelp writes a leaf's usage, its own flags and its example. The API
// flags, the same for every API command, take one line.
func (c *cli) leafHelp(w io.Writer, cmd *command, path string, fs *flag.FlagSet) {
	usage := strings.TrimSpace(path + " " + cmd.args)
	if hasFlags(fs) {
		usage += " [flags]"
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s\n", usage, cmd.summary)
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s", cmd.help)
	}
	shared := flag.NewFlagSet("", flag.ContinueOnError)
	if cmd.api {
		new(apiFlags).register(shared)
	}
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if shared.Lookup(f.Name) == nil {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		writeFlags(w, own)
	}
	if cmd.api {
		fmt.Fprint(w, "\nAPI flags: --server URL, --tls-ca FILE, --insecure, -o|--output table|json (see dls --help)\n")
	}
	if cmd.example != "" {
		fmt.Fprintf(w, "\nExample:\n  %s\n", cmd.example)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// flagArg is the name of a flag's argument and its usage without it. A
// usage that starts with a backquoted word, "`FILE` config file", names the
// argument apart from the text; otherwise flag.UnquoteUsage finds it.
func flagArg(f *flag.Flag) (arg, usage string) {
	if rest, ok := strings.CutPrefix(f.Usage, "`"); ok {
		if arg, usage, ok := strings.Cut(rest, "` "); ok {
			return arg, usage
		}
	}
	return flag.UnquoteUsage(f)
}

// writeFlags lists flags, one a line: "--name ARG  usage (default X)".
func writeFlags(w io.Writer, flags []*flag.Flag) {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	for _, f := range flags {
		arg, usage := flagArg(f)
		name := "--" + f.Name
		if len(f.Name) == 1 {
			name = "-" + f.Name
		}
		if arg != "" {
			name += " " + arg
		}
		switch f.DefValue {
		case "", "0", "false":
		default:
			if !strings.Contains(usage, "default") {
				usage += " (default " + f.DefValue + ")"
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, usage)
	}
	_ = tw.Flush()
}
