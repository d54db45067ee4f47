//go:build e2e && linux

// Day one on a real LAN (issue 16, acceptances 1 and 4): docs/lab.md,
// followed block by block in a namespace whose bridge br0 stands for the
// lab NIC eth1. Every ```sh block of the guide runs as it is written but
// for a few substitutions (no sudo, br0 for eth1, the test's own paths for
// /etc/dls and the image); its <!-- lab-test: NAME --> hooks are where the
// admin does something by hand: start the service, power a PC on. The PC
// is a QEMU machine nobody told DLS about: it must show up as discovered,
// then boot from its own clone once adopted.

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/e2e/lab"
)

const (
	dayIP  = "10.20.0.1" // the lab NIC's address in docs/lab.md
	dayMAC = "52:54:00:d1:00:01"
)

func TestDayOne(t *testing.T) {
	needRoot(t)
	if err := lab.Need("nft"); err != nil {
		skip(t, "%v: make e2e installs nftables", err)
	}
	l := newLab(t, "dls-dayone-")
	root, err := lab.RepoRoot()
	must(t, err)
	bin := filepath.Join(l.Dir, "bin")
	must(t, lab.Build(root, bin))
	img := filepath.Join(l.Dir, "lab.img")
	must(t, lab.Image(root, img))
	ns, err := l.NS("day")
	must(t, err)
	must(t, ns.Bridge("br0", dayIP+"/24"))
	vm, err := l.Machine(ns, "br0", "t-day1", "day1", dayMAC)
	must(t, err)
	site := filepath.Join(l.Dir, "site")
	must(t, os.MkdirAll(site, 0o755))
	cfg := filepath.Join(site, "dls.hcl")
	host := l.OpenHost(ns, bin, site, cfg)

	f, err := os.Open(filepath.Join(root, "docs", "lab.md"))
	must(t, err)
	steps, err := lab.ParseDoc(f)
	f.Close()
	must(t, err)

	// What a namespace on this machine needs instead of the guide's
	// machine; each must be used, so the guide cannot drift away from it.
	subst := [][2]string{
		{"sudo ", ""},
		{"eth1", "br0"},
		{"/etc/dls/dls.hcl", cfg},
		{"/srv/images/lab.img", img},
		{"dls init ", "dls init --data-dir " + filepath.Join(site, "var") + " "},
	}
	used := make([]bool, len(subst))
	env := append(os.Environ(),
		"PATH="+bin+":"+os.Getenv("PATH"),
		"DLS_CONFIG="+cfg,
		"HOME="+site,
		"XDG_CONFIG_HOME="+filepath.Join(site, "cli"), // where host.CLI keeps its login too
	)

	var (
		report  []string
		unknown time.Duration // power-on to listed by dls client discovered
	)
	hooks := map[string]func(){
		"serve": func() { must(t, host.Start()) },
		"boot-unknown": func() {
			unknown = bootUnknown(t, host, vm)
			report = append(report, fmt.Sprintf("unknown PC listed by dls client discovered %.1fs after power-on", unknown.Seconds()))
		},
		"boot-adopted": func() {
			first, second := bootAdopted(t, host, vm)
			report = append(report, fmt.Sprintf("adopted PC booted from its own clone: %.1fs, again %.1fs (saw its first boot's write)", first.Seconds(), second.Seconds()))
		},
	}

	start := time.Now()
	for _, s := range steps {
		if s.Hook != "" {
			fn, ok := hooks[s.Hook]
			if !ok {
				t.Fatalf("docs/lab.md:%d: hook %q unknown to TestDayOne", s.Line, s.Hook)
			}
			at := time.Now()
			fn()
			report = append(report, fmt.Sprintf("docs/lab.md:%d hook %s: %.1fs", s.Line, s.Hook, time.Since(at).Seconds()))
			continue
		}
		script := s.Script
		for i, p := range subst {
			if strings.Contains(script, p[0]) {
				used[i] = true
				script = strings.ReplaceAll(script, p[0], p[1])
			}
		}
		at := time.Now()
		cmd := ns.Command("bash", "-c", "set -euxo pipefail\n"+script)
		cmd.Env, cmd.Dir = env, site
		out, err := cmd.CombinedOutput()
		t.Logf("docs/lab.md:%d (%.1fs):\n%s", s.Line, time.Since(at).Seconds(), out)
		if err != nil {
			t.Fatalf("docs/lab.md:%d: %v", s.Line, err)
		}
		report = append(report, fmt.Sprintf("docs/lab.md:%d block: %.1fs", s.Line, time.Since(at).Seconds()))
	}
	for i, u := range used {
		if !u {
			t.Errorf("substitution %q → %q never used: docs/lab.md changed, update TestDayOne", subst[i][0], subst[i][1])
		}
	}
	if unknown == 0 {
		t.Error("docs/lab.md has no boot-unknown hook")
	}
	if unknown > 10*time.Second {
		t.Errorf("the unknown PC took %s to be listed as discovered, want within 10s", unknown)
	}
	t.Logf("day one, docs/lab.md from nothing to a booted PC in %.0fs:\n  %s", time.Since(start).Seconds(), strings.Join(report, "\n  "))
}

// bootUnknown powers vm on while DLS does not know it, and returns how long
// after power-on `dls client discovered -o json` lists its MAC. The machine
// gets no boot answer (discover mode records, never boots), so it is
// switched off once listed.
func bootUnknown(t *testing.T, host *lab.Host, vm *lab.Machine) time.Duration {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		_, _ = vm.Boot(ctx, lab.BootOptions{Timeout: 2 * time.Minute})
	}()
	defer func() { cancel(); <-done }()
	for time.Since(start) < time.Minute {
		out, err := host.CLI("", "client", "discovered", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var ms []struct {
			MAC string `json:"mac"`
		}
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			t.Fatalf("dls client discovered -o json: %v: %s", err, out)
		}
		for _, m := range ms {
			if m.MAC == vm.MAC {
				return time.Since(start)
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s not discovered within a minute of power-on", vm.MAC)
	return 0
}

// bootAdopted boots the adopted machine twice: the first boot finds a fresh
// clone (no marker) and writes one, the second reads that write back, so
// the machine runs from a volume of its own that keeps what it wrote.
func bootAdopted(t *testing.T, host *lab.Host, vm *lab.Machine) (first, second time.Duration) {
	t.Helper()
	b1, err := vm.Boot(t.Context(), lab.BootOptions{})
	must(t, err)
	if !b1.Wrote || b1.Seen != 0 {
		t.Fatalf("first boot after adoption: wrote %v, seen %d; want a fresh clone (seen 0) written to", b1.Wrote, b1.Seen)
	}
	b2, err := vm.Boot(t.Context(), lab.BootOptions{})
	must(t, err)
	if b2.Seen != 1 || b2.Prev != b1.Nonce {
		t.Fatalf("second boot: seen %d prev %08x; want 1 and the first boot's nonce %08x", b2.Seen, b2.Prev, b1.Nonce)
	}
	out, err := host.CLI("", "session", "list", "-o", "json")
	must(t, err)
	if !strings.Contains(out, `"pc01"`) {
		t.Errorf("dls session list has no session of pc01: %s", out)
	}
	return b1.Wall, b2.Wall
}
