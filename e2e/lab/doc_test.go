//go:build linux

package lab

import (
	"strings"
	"testing"
)

func TestParseDoc(t *testing.T) {
	doc := "# Title\n\n```sh norun\napt install dls\n```\n\n```sh\ndls init \\\n  --out x\ndls validate\n```\n" +
		"<!-- lab-test: boot-unknown -->\n```hcl\nx = 1\n```\n```sh\ndls client discovered\n```\n"
	steps, err := ParseDoc(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []DocStep{
		{Line: 7, Script: "dls init \\\n  --out x\ndls validate\n"},
		{Line: 12, Hook: "boot-unknown"},
		{Line: 16, Script: "dls client discovered\n"},
	}
	if len(steps) != len(want) {
		t.Fatalf("steps = %+v, want %+v", steps, want)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Errorf("step %d = %+v, want %+v", i, steps[i], want[i])
		}
	}
	for _, bad := range []string{"```sh\nopen\n", "<!-- lab-test: -->\n", "<!-- lab-test: x\n"} {
		if _, err := ParseDoc(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseDoc(%q) accepted", bad)
		}
	}
}
