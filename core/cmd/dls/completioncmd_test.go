package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletionBashHasTheWholeTree: the bash script names every group,
// every verb and every leaf's own flags, parses (bash -n), and completes
// a subcommand and a flag when its function is run.
func TestCompletionBashHasTheWholeTree(t *testing.T) {
	out, errOut, code := runDLS(t, "completion", "bash")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, n := range walk(commands(), "dls") {
		if !strings.Contains(out, `"`+n.path+`"`) {
			t.Errorf("no case for %q", n.path)
		}
		if n.cmd.sub == nil {
			for name := range flagNames(n) {
				f := completionFlag{name: name}
				if !strings.Contains(out, f.dash()) {
					t.Errorf("%s: flag %s missing", n.path, f.dash())
				}
			}
		}
	}
	script := filepath.Join(t.TempDir(), "dls.bash")
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, b)
	}
	// The function itself: what it offers after "dls client a" and
	// "dls client add pc-01 --ma".
	probe := `source "$1"
COMP_WORDS=(dls client a); COMP_CWORD=2; _dls; echo "${COMPREPLY[*]}"
COMP_WORDS=(dls --server x client add pc-01 --ma); COMP_CWORD=6; _dls; echo "${COMPREPLY[*]}"
COMP_WORDS=(dls ""); COMP_CWORD=1; _dls; echo "${COMPREPLY[*]}"`
	b, err := exec.Command("bash", "-c", probe, "bash", script).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || lines[0] != "add adopt" || lines[1] != "--mac" || !strings.HasPrefix(lines[2], "init serve validate plugins user") {
		t.Errorf("completions:\n%s", b)
	}
}

// TestCompletionZshAndFishParse: where zsh and fish are installed, their
// scripts parse (zsh -n, fish -n), and fish completes a verb with its
// summary.
func TestCompletionZshAndFishParse(t *testing.T) {
	for _, sh := range []string{"zsh", "fish"} {
		t.Run(sh, func(t *testing.T) {
			if _, err := exec.LookPath(sh); err != nil {
				t.Skipf("%s not installed", sh)
			}
			out, errOut, code := runDLS(t, "completion", sh)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			script := filepath.Join(t.TempDir(), "dls."+sh)
			if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(sh, "-n", script).CombinedOutput(); err != nil {
				t.Fatalf("%s -n: %v\n%s", sh, err, b)
			}
			for _, n := range walk(commands(), "dls") {
				if !strings.Contains(out, n.path) {
					t.Errorf("no %q", n.path)
				}
			}
			if sh == "fish" {
				b, err := exec.Command("fish", "-c", `source $argv[1]; complete -C "dls client add"`, script).CombinedOutput()
				if err != nil || strings.TrimSpace(string(b)) != "add\tAdd a client; the host generates its CHAP secret" {
					t.Errorf("fish: %v %q", err, b)
				}
			}
		})
	}
	if _, errOut, code := runDLS(t, "completion", "tcsh"); code != 2 || !strings.Contains(errOut, `shell "tcsh": want bash, zsh or fish`) {
		t.Errorf("completion tcsh: exit %d, %s", code, errOut)
	}
}
