//go:build linux

package lab

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// DocStep is one step of a how-to in Markdown (docs/lab.md): a shell block
// to run, or a hook, where the reader does something by hand (power a
// machine on) that the test does its own way.
type DocStep struct {
	Line   int    // where the block or hook starts in the file
	Script string // a ```sh block's text; "" for a hook
	Hook   string // the NAME of <!-- lab-test: NAME -->
}

// ParseDoc reads the steps of a how-to: every fenced block whose info
// string is exactly "sh" is run as one script; a block marked "sh norun"
// (a step this machine cannot take: installing a package, systemctl) and
// blocks in other languages are shown, not run; a comment
// <!-- lab-test: NAME --> is a hook the test must know.
func ParseDoc(r io.Reader) ([]DocStep, error) {
	var (
		steps  []DocStep
		cur    *DocStep
		inside bool
		n      int
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !inside {
				inside = true
				if strings.TrimSpace(strings.TrimPrefix(trimmed, "```")) == "sh" {
					cur = &DocStep{Line: n}
				}
				continue
			}
			inside = false
			if cur != nil {
				steps = append(steps, *cur)
				cur = nil
			}
			continue
		}
		if inside {
			if cur != nil {
				cur.Script += line + "\n"
			}
			continue
		}
		if name, ok := strings.CutPrefix(trimmed, "<!-- lab-test:"); ok {
			name, ok = strings.CutSuffix(name, "-->")
			if !ok || strings.TrimSpace(name) == "" {
				return nil, fmt.Errorf("line %d: a hook is <!-- lab-test: NAME -->", n)
			}
			steps = append(steps, DocStep{Line: n, Hook: strings.TrimSpace(name)})
		}
	}
	if inside {
		return nil, fmt.Errorf("line %d: a code block is not closed", n)
	}
	return steps, sc.Err()
}
