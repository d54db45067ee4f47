package main

import (
	"os"
	"path/filepath"
	re "regexp"
	"slices"
	"strings"
	"testing"
)

func TestDebianVersion(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2.0", "1.2.0"},
		{"v1.2.0-3-gabcdef1", "1.2.0+3.gabcdef1"},
		{"v1.2.0-3-gabcdef1-dirty", "1.2.0+3.gabcdef1+dirty"},
		{"v1.2.0-rc1", "1.2.0+rc1"},
		{"ff145f2", "0~gitff145f2"},
		{"ff145f2-dirty", "0~gitff145f2+dirty"},
		{"2a4d436", "0~git2a4d436"},
		{"2a4d436-dirty", "0~git2a4d436+dirty"},
		{"20261205", "20261205"},
		{"dev", "0~gitdev"},
	} {
		got, err := DebianVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("DebianVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "v", "1.2 beta", "1.2/3"} {
		if got, err := DebianVersion(bad); err == nil {
			t.Errorf("DebianVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// TestPluginsAreTheRepositorysOwn: plugins/<kind>/<type> are shipped, the
// vendor examples are not.
func TestPluginsAreTheRepositorysOwn(t *testing.T) {
	got, err := Plugins("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dls-auth-local", "dls-protocol-dhcp", "dls-protocol-dhcp6", "dls-protocol-iscsi", "dls-protocol-tftp", "dls-storage-dir"} {
		if !slices.Contains(got, want) {
			t.Errorf("Plugins: %v lacks %s", got, want)
		}
	}
	for _, p := range got {
		if p == "dls-storage-file" || p == "dls-auth-static" {
			t.Errorf("Plugins: %v ships the example %s", got, p)
		}
	}
	if _, err := Plugins(t.TempDir()); err == nil {
		t.Error("Plugins of a folder with no plugins: no error")
	}
}

// TestInfoNamesAMissingBinary: a build without a plugin is refused with
// the file and what to do, not packaged without it.
func TestInfoNamesAMissingBinary(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "dls"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Info("1.0", bin, "../..", []string{"dls-auth-local"}, nil)
	if err == nil || !re.MustCompile(`/usr/lib/dls/plugins/dls-auth-local: .*run make build first`).MatchString(err.Error()) {
		t.Fatalf("Info without the plugin's binary: %v", err)
	}
}

// TestCompletions: the scripts come from the built dls, one per shell, at
// the paths Debian's shells read.
func TestCompletions(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "dls")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\necho \"# $2 completion\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Completions(fake, filepath.Join(dir, "out"))
	if err != nil || len(got) != 3 {
		t.Fatalf("Completions: %v, %v", got, err)
	}
	for _, c := range got {
		b, err := os.ReadFile(c.Source)
		sh := strings.TrimPrefix(filepath.Ext(c.Source), ".")
		if err != nil || string(b) != "# "+sh+" completion\n" || c.Destination != completionPaths[sh] {
			t.Errorf("%s → %s: %q %v", c.Source, c.Destination, b, err)
		}
	}
	if _, err := Completions(filepath.Join(dir, "missing"), dir); err == nil {
		t.Error("Completions without a dls binary: no error")
	}
}
