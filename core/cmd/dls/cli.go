package main

// What the API client commands (login, logout, client, wake, image,
// session, backup, restore) share. Each is a thin client of a running
// host's /api/v1: it sends one or two requests and prints the answer as an
// aligned table, or as the API's JSON with -o json.

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// cli is one run of dls: where it reads and writes, its environment and
// clock (tests bring their own), and the API flags of an API command.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	// interactive reports whether a person answers on stdin (confirm
	// asks them); nil: stdin is a terminal.
	interactive func() bool
	// api holds the API flags once parsed.
	api apiFlags
}

func (c *cli) warn(msg string) {
	fmt.Fprintln(c.stderr, msg)
}

// apiFlags are taken by every API command.
type apiFlags struct {
	server   string
	tlsCA    string
	insecure bool
	output   string
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.server, "server", "", "API server `URL` (default $DLS_SERVER, else the one logged in to, else "+defaultServer+")")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "PEM `FILE` of the CA that signed the server's certificate")
	fs.BoolVar(&f.insecure, "insecure", false, "do not check the server's certificate")
	fs.StringVar(&f.output, "o", "table", "output: `table|json`")
	fs.StringVar(&f.output, "output", "table", "output: `table|json`")
}

// check refuses an output format the commands do not write.
func (f *apiFlags) check() error {
	if f.output != "table" && f.output != "json" {
		return usagef("-o %q: want table or json", f.output)
	}
	return nil
}

func (f *apiFlags) json() bool { return f.output == "json" }

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

// printJSON writes an API answer as it came.
func (c *cli) printJSON(b []byte) {
	c.stdout.Write(b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		fmt.Fprintln(c.stdout)
	}
}

// raw prints an answer as JSON, or returns the call's error.
func (c *cli) raw(b []byte, err error) error {
	if err != nil {
		return err
	}
	c.printJSON(b)
	return nil
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
