// Command mkdeb packages a DLS build as a Debian package with nfpm:
// dls_<version>_amd64.deb. `make deb` runs it; see README.md here.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkdeb", flag.ContinueOnError)
	version := fs.String("version", "", "`VERSION` as git describe prints it (v1.2.0-3-gabcdef-dirty)")
	bin := fs.String("bin", "", "`DIR` of the build: DIR/dls and DIR/plugins/dls-<kind>-<type>")
	repo := fs.String("repo", "../..", "`DIR` of the repository: which plugins to ship, the unit")
	out := fs.String("out", "dist", "`DIR` to write the package to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version == "" || *bin == "" {
		return errors.New("-version and -bin are required")
	}
	debVersion, err := DebianVersion(*version)
	if err != nil {
		return err
	}
	plugins, err := Plugins(*repo)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	completions, err := Completions(filepath.Join(*bin, "dls"), filepath.Join(*out, "completion"))
	if err != nil {
		return err
	}
	info, err := Info(debVersion, *bin, *repo, plugins, completions)
	if err != nil {
		return err
	}
	path := filepath.Join(*out, fmt.Sprintf("dls_%s_amd64.deb", debVersion))
	if err := write(info, path); err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Printf("%s (%.1f MiB, %d plugins)\n", path, float64(st.Size())/(1<<20), len(plugins))
	return nil
}

// write packages info into path, atomically: a failed run leaves no
// half-written .deb behind for the install test to pick up.
func write(info *nfpm.Info, path string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".mkdeb-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return fmt.Errorf("package %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// debianVersionRE is what dpkg accepts as an upstream version without
// a Debian revision: a digit first, then alphanumerics and . + ~.
var debianVersionRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

// commitHashRE is an abbreviated commit as git describe --always prints
// it: hex digits with at least one letter (a tag such as 20261205 is all
// digits).
var commitHashRE = regexp.MustCompile(`^[0-9a-f]*[a-f][0-9a-f]*$`)

// DebianVersion turns git describe's output into a Debian version that
// sorts the same way: v1.2.0 → 1.2.0, v1.2.0-3-gabcdef → 1.2.0+3.gabcdef,
// a tree with no tag (abcdef, abcdef-dirty) → 0~gitabcdef(+dirty), which
// sorts before any release.
func DebianVersion(describe string) (string, error) {
	v := strings.TrimPrefix(strings.TrimSpace(describe), "v")
	dirty := strings.HasSuffix(v, "-dirty")
	v = strings.TrimSuffix(v, "-dirty")
	if v == "" {
		return "", fmt.Errorf("version %q: empty", describe)
	}
	if v[0] < '0' || v[0] > '9' || commitHashRE.MatchString(v) {
		// No tag: git describe --always gave the commit, which may start
		// with a digit (2a4d436) and would then sort above every release.
		v = "0~git" + v
	} else if tag, rest, ok := strings.Cut(v, "-"); ok {
		// tag-N-gHASH: N commits after tag.
		v = tag + "+" + strings.ReplaceAll(rest, "-", ".")
	}
	if dirty {
		v += "+dirty"
	}
	if !debianVersionRE.MatchString(v) {
		return "", fmt.Errorf("version %q: %q is not a Debian version (want a digit first, then [A-Za-z0-9.+~])", describe, v)
	}
	return v, nil
}

// Plugins are the binary names of the repository's own plugins,
// plugins/<kind>/<type> → dls-<kind>-<type>. The vendor examples the
// build also puts in bin/plugins are not shipped.
func Plugins(repo string) ([]string, error) {
	mains, err := filepath.Glob(filepath.Join(repo, "plugins", "*", "*", "main.go"))
	if err != nil {
		return nil, err
	}
	if len(mains) == 0 {
		return nil, fmt.Errorf("no plugins/*/*/main.go under %s: -repo names the repository", repo)
	}
	var names []string
	for _, m := range mains {
		typ := filepath.Base(filepath.Dir(m))
		kind := filepath.Base(filepath.Dir(filepath.Dir(m)))
		names = append(names, "dls-"+kind+"-"+typ)
	}
	sort.Strings(names)
	return names, nil
}

// completionPaths are where Debian's shells look for a package's
// completion scripts.
var completionPaths = map[string]string{
	"bash": "/usr/share/bash-completion/completions/dls",
	"zsh":  "/usr/share/zsh/vendor-completions/_dls",
	"fish": "/usr/share/fish/vendor_completions.d/dls.fish",
}

// Completions writes the built dls's completion scripts into dir and
// answers them as package contents.
func Completions(dls, dir string) (files.Contents, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var out files.Contents
	for _, sh := range []string{"bash", "fish", "zsh"} {
		script, err := exec.Command(dls, "completion", sh).Output()
		if err != nil {
			return nil, fmt.Errorf("%s completion %s: %w", dls, sh, err)
		}
		path := filepath.Join(dir, "dls."+sh)
		if err := os.WriteFile(path, script, 0o644); err != nil {
			return nil, err
		}
		out = append(out, &files.Content{Source: path, Destination: completionPaths[sh], FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	}
	return out, nil
}

// Info is the package: what goes where (extra: made by this run, such as
// the completion scripts), its relations and its scripts.
func Info(version, bin, repo string, plugins []string, extra files.Contents) (*nfpm.Info, error) {
	here := filepath.Join(repo, "packaging", "deb")
	exe := func(src, dst string) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: 0o755}}
	}
	contents := files.Contents{
		exe(filepath.Join(bin, "dls"), "/usr/lib/dls/dls"),
		// A symlink, so that dls finds its plugins beside its real path
		// (/usr/lib/dls/plugins) whichever name it was run by.
		{Source: "/usr/lib/dls/dls", Destination: "/usr/bin/dls", Type: files.TypeSymlink},
		{Source: filepath.Join(repo, "examples", "systemd", "dls.service"), Destination: "/usr/lib/systemd/system/dls.service",
			FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Source: filepath.Join(here, "dls.hcl"), Destination: "/etc/dls/dls.hcl", Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Mode: 0o640}},
		// The same file, kept pristine: postinst compares the config
		// with it before dls init may replace it.
		{Source: filepath.Join(here, "dls.hcl"), Destination: "/usr/share/dls/dls.hcl.example",
			FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Source: filepath.Join(here, "README.md"), Destination: "/usr/share/doc/dls/README.Debian",
			FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		{Destination: "/var/lib/dls", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Mode: 0o750}},
	}
	contents = append(contents, extra...)
	for _, p := range plugins {
		contents = append(contents, exe(filepath.Join(bin, "plugins", p), "/usr/lib/dls/plugins/"+p))
	}
	for _, c := range contents {
		if c.Source == "" || c.Type == files.TypeSymlink {
			continue
		}
		if _, err := os.Stat(c.Source); err != nil {
			return nil, fmt.Errorf("%s: %w (run make build first)", c.Destination, err)
		}
	}
	script := func(name string) string { return filepath.Join(here, name) }
	info := &nfpm.Info{
		Name:          "dls",
		Arch:          "amd64",
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "DLS project",
		Description: "diskless-boot server\n" +
			"DLS boots labs of diskless machines: DHCP, TFTP and HTTP for iPXE, and\n" +
			"iSCSI for each machine's copy-on-write clone of a golden image. Its\n" +
			"protocol, storage and auth backends run as plugins.",
		// Reproducible: the same build gives the same package.
		MTime: time.Unix(0, 0).UTC(),
		Overridables: nfpm.Overridables{
			Depends:    []string{"adduser"},
			Recommends: []string{"ipxe"},
			Contents:   contents,
			Scripts: nfpm.Scripts{
				PostInstall: script("postinst"),
				PreRemove:   script("prerm"),
				PostRemove:  script("postrm"),
			},
			Deb: nfpm.Deb{Compression: "xz"},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return nil, fmt.Errorf("package contents: %w", err)
	}
	return info, nil
}
