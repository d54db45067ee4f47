package main

// dls version: what was built, from what, with what.

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time (make build, make deb):
// -ldflags "-X main.version=$(git describe --tags --always --dirty)
// -X main.commit=$(git rev-parse HEAD)". A plain `go build` leaves them
// empty; buildInfo then takes what the Go toolchain recorded.
var (
	version = ""
	commit  = ""
)

// build is what dls version prints.
type build struct {
	version, commit, goVersion string
}

// buildInfo is this binary's version, commit and Go version: the -ldflags
// values when set, else the VCS revision the toolchain stamped into the
// binary (with "-dirty" for a modified tree), else "dev" and "unknown".
func buildInfo() build {
	b := build{version: version, commit: commit, goVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		b = fromBuildInfo(b, info)
	}
	if b.version == "" {
		b.version = "dev"
	}
	if b.commit == "" {
		b.commit = "unknown"
	}
	return b
}

// fromBuildInfo fills what b lacks from the toolchain's record.
func fromBuildInfo(b build, info *debug.BuildInfo) build {
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if b.commit == "" {
		b.commit = rev
		if rev != "" && dirty {
			b.commit += "-dirty"
		}
	}
	if b.version == "" {
		// A module version (go install ...@v1.2.3) names a release; a
		// source build's is "(devel)".
		if v := info.Main.Version; v != "" && v != "(devel)" {
			b.version = v
		} else if len(rev) >= 12 {
			b.version = "dev-" + rev[:12]
		}
	}
	return b
}

// userAgentVersion is what the API client sends after "dls/".
func userAgentVersion() string { return buildInfo().version }

func versionCommand() *command {
	return &command{
		name:    "version",
		aliases: []string{"--version", "-v"},
		summary: "Print the version, commit and Go version",
		example: "dls version",
		run: func(_ context.Context, c *cli, _ []string) error {
			b := buildInfo()
			fmt.Fprintf(c.stdout, "dls %s\ncommit: %s\ngo:     %s\n", b.version, b.commit, b.goVersion)
			return nil
		},
	}
}
