package main

// dls completion bash|zsh|fish: shell completion written from the
// command tree, so a new command or flag completes without anyone
// editing a script.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

func completionCommand() *command {
	return &command{
		name: "completion", args: "bash|zsh|fish", nargs: 1, what: "shell (bash, zsh or fish)",
		summary: "Print a shell completion script: bash, zsh or fish",
		help: `Completes commands, subcommands and each command's own flags; arguments
complete as file names. Load it in the current shell, or install it:

  bash: dls completion bash > /etc/bash_completion.d/dls
  zsh:  dls completion zsh > "${fpath[1]}/_dls"
  fish: dls completion fish > ~/.config/fish/completions/dls.fish
`,
		example: "source <(dls completion bash)",
		run: func(_ context.Context, c *cli, args []string) error {
			nodes := completionTree(commands(), "dls")
			switch args[0] {
			case "bash":
				writeBash(c.stdout, nodes)
			case "zsh":
				writeZsh(c.stdout, nodes)
			case "fish":
				writeFish(c.stdout, nodes)
			default:
				return usagef("shell %q: want bash, zsh or fish", args[0])
			}
			return nil
		},
	}
}

// completionNode is one command as completion sees it: its path, and
// either its subcommands or its flags.
type completionNode struct {
	path    string
	summary string
	sub     []*completionNode
	flags   []completionFlag // a leaf's, --help included
	leaf    bool
}

type completionFlag struct {
	name, usage string
	takesArg    bool
}

// completionTree walks cmd (named path) into completion nodes, depth
// first, cmd first.
func completionTree(cmd *command, path string) []*completionNode {
	n := &completionNode{path: path, summary: cmd.summary, leaf: cmd.sub == nil}
	out := []*completionNode{n}
	if n.leaf {
		fs := (&cli{}).flagSet(cmd, path)
		fs.VisitAll(func(f *flag.Flag) {
			arg, usage := flagArg(f)
			n.flags = append(n.flags, completionFlag{name: f.Name, usage: usage, takesArg: arg != ""})
		})
		n.flags = append(n.flags, completionFlag{name: "help", usage: "show this command's help"})
		sort.Slice(n.flags, func(i, j int) bool { return n.flags[i].name < n.flags[j].name })
		return out
	}
	for _, s := range cmd.sub {
		below := completionTree(s, path+" "+s.name)
		n.sub = append(n.sub, below[0])
		out = append(out, below...)
	}
	return out
}

func (n *completionNode) name() string { return n.path[strings.LastIndex(n.path, " ")+1:] }

// dash is a flag as typed: -o, --server.
func (f completionFlag) dash() string {
	if len(f.name) == 1 {
		return "-" + f.name
	}
	return "--" + f.name
}

// writeBash: one function; it finds the command path in the words typed
// so far (flags skipped), then offers that group's subcommands or that
// leaf's flags (file names for its arguments).
func writeBash(w io.Writer, nodes []*completionNode) {
	fmt.Fprint(w, `# bash completion for dls (dls completion bash)
_dls() {
	local cur=${COMP_WORDS[COMP_CWORD]} cmdpath=dls i w
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		[[ $w == -* ]] && continue
		case "$cmdpath $w" in
`)
	fmt.Fprintf(w, "\t\t%s) cmdpath=\"$cmdpath $w\" ;;\n", casePaths(nodes))
	fmt.Fprint(w, "\t\tesac\n\tdone\n\tlocal words= leaf=\n\tcase \"$cmdpath\" in\n")
	for _, n := range nodes {
		var words []string
		if n.leaf {
			for _, f := range n.flags {
				words = append(words, f.dash())
			}
			fmt.Fprintf(w, "\t\"%s\") words=\"%s\" leaf=1 ;;\n", n.path, strings.Join(words, " "))
			continue
		}
		for _, s := range n.sub {
			words = append(words, s.name())
		}
		fmt.Fprintf(w, "\t\"%s\") words=\"%s\" ;;\n", n.path, strings.Join(words, " "))
	}
	fmt.Fprint(w, `	esac
	if [[ -n $leaf && $cur != -* ]]; then
		COMPREPLY=($(compgen -f -- "$cur"))
	else
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
	fi
}
complete -o filenames -F _dls dls
`)
}

// casePaths is every command path but the root's, quoted, as one case
// pattern ("dls client"|"dls client add"|...) for bash and zsh.
func casePaths(nodes []*completionNode) string {
	paths := make([]string, 0, len(nodes))
	for _, n := range nodes[1:] {
		paths = append(paths, `"`+n.path+`"`)
	}
	return strings.Join(paths, "|")
}

// zshQuote quotes s for zsh inside single quotes.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// writeZsh: the same walk as bash's, with each subcommand's and flag's
// summary shown (_describe).
func writeZsh(w io.Writer, nodes []*completionNode) {
	fmt.Fprint(w, `#compdef dls
# zsh completion for dls (dls completion zsh)
_dls() {
	local cmdpath=dls w i
	for ((i = 2; i < CURRENT; i++)); do
		w=${words[i]}
		[[ $w == -* ]] && continue
		case "$cmdpath $w" in
`)
	fmt.Fprintf(w, "\t\t(%s) cmdpath=\"$cmdpath $w\" ;;\n", casePaths(nodes))
	fmt.Fprint(w, "\t\tesac\n\tdone\n\tlocal -a items\n\tcase \"$cmdpath\" in\n")
	for _, n := range nodes {
		var items []string
		if n.leaf {
			for _, f := range n.flags {
				items = append(items, zshQuote(strings.ReplaceAll(f.dash(), ":", `\:`)+":"+f.usage))
			}
			fmt.Fprintf(w, "\t(\"%s\")\n\t\titems=(%s)\n\t\tif [[ $PREFIX == -* ]]; then _describe -t flags flag items; else _files; fi ;;\n", n.path, strings.Join(items, " "))
			continue
		}
		for _, s := range n.sub {
			items = append(items, zshQuote(s.name()+":"+s.summary))
		}
		fmt.Fprintf(w, "\t(\"%s\")\n\t\titems=(%s)\n\t\t_describe -t commands command items ;;\n", n.path, strings.Join(items, " "))
	}
	fmt.Fprint(w, "\tesac\n}\ncompdef _dls dls\n")
}

// fishQuote quotes s for fish inside single quotes.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// writeFish: __dls_path finds the command path as bash's loop does; each
// subcommand and flag completes under the condition that the path is its
// parent.
func writeFish(w io.Writer, nodes []*completionNode) {
	fmt.Fprint(w, "# fish completion for dls (dls completion fish)\nset -g __dls_commands")
	for _, n := range nodes[1:] {
		fmt.Fprintf(w, " %s", fishQuote(n.path))
	}
	fmt.Fprint(w, `
function __dls_path
	set -l p dls
	for w in (commandline -opc)[2..-1]
		string match -q -- '-*' $w; and continue
		contains -- "$p $w" $__dls_commands; and set p "$p $w"
	end
	echo $p
end
complete -c dls -f
`)
	for _, n := range nodes {
		cond := fishQuote("test (__dls_path) = " + fishQuote(n.path))
		if n.leaf {
			fmt.Fprintf(w, "complete -c dls -n %s -F\n", cond)
			for _, f := range n.flags {
				opt := "-l " + f.name
				if len(f.name) == 1 {
					opt = "-o " + f.name
				}
				if f.takesArg {
					opt += " -r"
				}
				fmt.Fprintf(w, "complete -c dls -n %s %s -d %s\n", cond, opt, fishQuote(f.usage))
			}
			continue
		}
		for _, s := range n.sub {
			fmt.Fprintf(w, "complete -c dls -n %s -a %s -d %s\n", cond, s.name(), fishQuote(s.summary))
		}
	}
}
