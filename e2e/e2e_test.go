//go:build e2e && linux

// End to end: real diskless machines (QEMU, iPXE in the NIC ROM, no disk)
// boot from DLS alone in network namespaces, watched by a real Prometheus.
// See README.md in this folder; `make e2e` runs it as root.
//
//	go test -tags e2e -count=1 -v -timeout 30m ./e2e/
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/e2e/lab"
)

const (
	adminPassword = "e2e admin passphrase"
	iqnPrefix     = "iqn.2026-11.io.dls"

	fullIP  = "192.168.77.1" // DLS on the full-mode segment (br0)
	proxyIP = "192.168.78.2" // DLS on the proxy-mode segment (br1)
	siteIP  = "192.168.78.1" // the site's DHCP server (dnsmasq) there
	refIP   = "192.168.88.1" // the reference stack's segment
)

// machine is a client of the run: its name, MAC, segment and how it
// fetches its script.
type machine struct {
	name, mac string
	proxy     bool // on the proxy-mode segment
	tftp      bool // its script over TFTP
	transient bool // persistent = false
}

var (
	pc1 = machine{name: "pc-1", mac: "52:54:00:e2:00:01"}
	pc2 = machine{name: "pc-2", mac: "52:54:00:e2:00:02"}
	pc3 = machine{name: "pc-3", mac: "52:54:00:e2:00:03", tftp: true}
	np1 = machine{name: "np-1", mac: "52:54:00:e2:00:04", transient: true}
	px1 = machine{name: "px-1", mac: "52:54:00:e2:00:05", proxy: true}
	ref = machine{name: "ref", mac: "52:54:00:e2:00:10"}
	ft  = machine{name: "ft", mac: "52:54:00:e2:00:11"}

	machines = []machine{pc1, pc2, pc3, np1, px1, ref, ft}
)

// run is the state every phase shares.
type run struct {
	t       *testing.T
	lab     *lab.Lab
	dlsNS   *lab.NS
	refNS   *lab.NS
	host    *lab.Host
	prom    *lab.Prometheus
	routers []*lab.Router // br0, br1 (DLS's segments)
	refRA   *lab.Router
	refs    *lab.Reference
	vm      map[string]*lab.Machine
	refVM   *lab.Machine

	allBooted bool // every concurrent boot ended with the boot sector's exit

	mu     sync.Mutex
	boots  []*record
	ratios []string
}

// record is one boot with what DLS measured of it.
type record struct {
	boot    *lab.Boot
	label   string // what the boot was for
	server  string // "DLS" or "dnsmasq+tgt"
	session *lab.Session
}

// skip skips the test for what it lacks, or fails it under CI, where the
// e2e test must run.
func skip(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format+" (CI is set: the e2e test must run)", args...)
	}
	t.Skipf(format, args...)
}

func needRoot(t *testing.T) {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		skip(t, format, args...)
	}
	if os.Geteuid() != 0 {
		skip("needs root (network namespaces, taps); run make e2e")
	}
	if err := lab.Need("ip", "qemu-system-x86_64", "nasm", "dnsmasq", "prometheus", "promtool", "tgtd", "tgtadm"); err != nil {
		skip("%v: make e2e installs qemu-system-x86 ipxe-qemu nasm dnsmasq-base prometheus tgt", err)
	}
	if _, err := os.Stat("/usr/lib/ipxe/qemu/efi-virtio.rom"); err != nil {
		skip("no iPXE ROM for QEMU's virtio-net (package ipxe-qemu)")
	}
}

func TestE2E(t *testing.T) {
	needRoot(t)
	r := setup(t)

	t.Run("concurrent boots", r.concurrentBoots)
	if r.allBooted {
		t.Run("metrics after the boots", r.metricsAfterBoots)
	}
	t.Run("reference stack", r.reference)
	t.Run("iscsi plugin killed during a boot", r.fault)
	t.Run("sessions API", r.sessionsAPI)
	t.Run("prometheus", r.prometheus)
	r.report()
}

// newLab makes the lab of one test run: namespaces named after
// DLS_E2E_PREFIX (run.sh sets it; the pid otherwise), files in a temporary
// folder, or with DLS_E2E_KEEP=1 in /tmp/<keep>* kept after the run
// (configs, state, logs). A failed run dumps its logs.
func newLab(t *testing.T, keep string) *lab.Lab {
	prefix := os.Getenv("DLS_E2E_PREFIX")
	if prefix == "" {
		prefix = fmt.Sprintf("dlse2e%d", os.Getpid()%100000)
	}
	dir := t.TempDir()
	if os.Getenv("DLS_E2E_KEEP") != "" {
		var err error
		dir, err = os.MkdirTemp("/tmp", keep) // not $TMPDIR: run.sh removes that
		must(t, err)
		t.Logf("DLS_E2E_KEEP: the run's files stay in %s", dir)
	}
	l := lab.New(prefix, dir, t.Logf)
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, dir)
		}
		l.Close()
	})
	return l
}

func setup(t *testing.T) *run {
	l := newLab(t, "dls-e2e-")
	dir := l.Dir
	r := &run{t: t, lab: l, vm: map[string]*lab.Machine{}}
	root, err := lab.RepoRoot()
	must(t, err)

	start := time.Now()
	bin := filepath.Join(dir, "bin")
	must(t, lab.Build(root, bin))
	image := filepath.Join(dir, "disk.img")
	must(t, lab.Image(root, image))
	t.Logf("built dls, plugins and the image in %.1fs", time.Since(start).Seconds())

	r.dlsNS = twoSegments(t, l, "")
	for _, m := range machines {
		br := "br0"
		if m.proxy {
			br = "br1"
		}
		r.vm[m.name], err = l.Machine(r.dlsNS, br, "t-"+m.name, m.name, m.mac)
		must(t, err)
	}
	for _, br := range []string{"br0", "br1"} {
		ra, err := l.Router(r.dlsNS, br)
		must(t, err)
		r.routers = append(r.routers, ra)
	}

	// DLS.
	var clients []lab.HostClient
	for _, m := range machines {
		c := lab.HostClient{Name: m.name, MAC: m.mac, NotPersistent: m.transient}
		if m.tftp {
			c.Script = filepath.Join(root, "e2e", "testdata", "tftp-script.ipxe")
		}
		clients = append(clients, c)
	}
	r.host, err = l.StartHost(r.dlsNS, bin, lab.HostConfig{
		BootIP:  fullIP,
		Image:   image,
		Clients: clients,
		DHCP: []lab.HostDHCP{
			{Name: "lan", Interface: "br0", Mode: "full", ServerIP: fullIP, PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: fullIP},
			{Name: "pxe", Interface: "br1", Mode: "proxy", ServerIP: proxyIP},
		},
	}, adminPassword)
	must(t, err)
	t.Logf("DLS ready: %s", r.host.Config)

	// Prometheus scrapes DLS every second from now on.
	r.prom, err = l.StartPrometheus(r.dlsNS, 19090, lab.HTTPAddr)
	must(t, err)

	// The reference stack: dnsmasq (DHCP + TFTP) and tgt, with a router
	// advertiser like DLS's segments, in a namespace of its own.
	r.refNS, err = l.NS("ref")
	must(t, err)
	must(t, r.refNS.Bridge("brr", refIP+"/24"))
	r.refVM, err = l.Machine(r.refNS, "brr", "t-refvm", "ref@dnsmasq+tgt", ref.mac)
	must(t, err)
	r.refRA, err = l.Router(r.refNS, "brr")
	must(t, err)
	r.refs, err = l.ReferenceStack(r.refNS, "brr", refIP, image, iqnPrefix+":initiator:ref")
	must(t, err)
	t.Logf("setup done in %.1fs", time.Since(start).Seconds())
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// boot boots m once and records it.
func (r *run) boot(ctx context.Context, vm *lab.Machine, label, server string, opts lab.BootOptions) (*lab.Boot, error) {
	b, err := vm.Boot(ctx, opts)
	r.mu.Lock()
	r.boots = append(r.boots, &record{boot: b, label: label, server: server})
	r.mu.Unlock()
	return b, err
}

// bootAll boots every machine named at once and waits for all.
func (r *run) bootAll(t *testing.T, label string, ms []machine) map[string]*lab.Boot {
	t.Helper()
	out := map[string]*lab.Boot{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := r.boot(context.Background(), r.vm[m.name], label, "DLS", lab.BootOptions{})
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			out[m.name] = b
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("%s: %d machines at once, all done in %.1fs", label, len(ms), time.Since(start).Seconds())
	return out
}

// concurrentBoots: four machines on the full-mode segment (two take
// their script over HTTP, one over TFTP, one is not persistent) and one
// on the proxy segment boot at once, twice.
func (r *run) concurrentBoots(t *testing.T) {
	group := []machine{pc1, pc2, pc3, np1, px1}
	first := r.bootAll(t, "first boot", group)
	if t.Failed() {
		return
	}
	second := r.bootAll(t, "second boot", group)
	if t.Failed() {
		return
	}
	r.allBooted = true
	nonces := map[uint32]string{}
	for _, m := range group {
		for i, b := range []*lab.Boot{first[m.name], second[m.name]} {
			if !b.Ran || !b.Payload || !b.Wrote {
				t.Errorf("%s boot %d: ran %v, payload read %v, marker written %v", m.name, i+1, b.Ran, b.Payload, b.Wrote)
			}
			if other, dup := nonces[b.Nonce]; dup {
				t.Errorf("%s boot %d wrote nonce %08x, as %s did", m.name, i+1, b.Nonce, other)
			}
			nonces[b.Nonce] = m.name
			want := "http"
			if m.tftp {
				want = "tftp"
			}
			if b.ScriptBy != want {
				t.Errorf("%s boot %d: booted from a script fetched over %q, want %s", m.name, i+1, b.ScriptBy, want)
			}
		}
		b1, b2 := first[m.name], second[m.name]
		// The first boot of a fresh clone sees nothing: no other
		// machine's marker, though all five wrote to clones of one image.
		if b1.Seen != 0 || b1.Prev != 0 {
			t.Errorf("%s first boot saw a marker (seen %d, nonce %08x, written by %s)", m.name, b1.Seen, b1.Prev, nonces[b1.Prev])
		}
		switch {
		case m.transient:
			if b2.Seen != 0 || b2.Prev != 0 {
				var why []string
				for _, l := range strings.Split(r.host.Proc.LogText(), "\n") {
					if strings.Contains(l, "reset") && strings.Contains(l, m.name) {
						why = append(why, l)
					}
				}
				t.Errorf("%s (persistent = false) second boot saw its earlier write (seen %d, nonce %08x); host log:\n%s",
					m.name, b2.Seen, b2.Prev, strings.Join(why, "\n"))
			}
		default:
			if b2.Seen != 1 || b2.Prev != b1.Nonce {
				t.Errorf("%s second boot: seen %d, nonce %08x; want 1, %08x (its own first boot's)", m.name, b2.Seen, b2.Prev, b1.Nonce)
			}
		}
	}
	if pc3b := second[pc3.name]; pc3b != nil && !pc3b.Has("DLS-SCRIPT-VIA-TFTP") {
		t.Errorf("pc-3 did not run the script it fetched over TFTP:\n%s", pc3b.Tail(20))
	}
}

// metricsAfterBoots: the counters moved by what the machines did, and
// promtool finds nothing to say about the exposition.
func (r *run) metricsAfterBoots(t *testing.T) {
	ctx := context.Background()
	text, err := r.host.Scrape(ctx)
	must(t, err)
	m := lab.ParseMetrics(text)
	boots := 10 // five machines, twice
	checks := []struct {
		what string
		got  float64
		min  float64
	}{
		{"dls_boot_sessions_total", m.Sum("dls_boot_sessions_total"), float64(boots)},
		{"dls_boot_time_seconds_count", m.Sum("dls_boot_time_seconds_count"), float64(boots)},
		{`dls_dhcp_requests_total{plugin="lan",type="discover"}`, m.Sum("dls_dhcp_requests_total", `plugin="lan"`, `type="discover"`), 8},
		{`dls_dhcp_requests_total{plugin="lan",type="request"}`, m.Sum("dls_dhcp_requests_total", `plugin="lan"`, `type="request"`), 8},
		{`dls_dhcp_requests_total{plugin="pxe",type="discover"}`, m.Sum("dls_dhcp_requests_total", `plugin="pxe"`, `type="discover"`), 2},
		{`dls_tftp_requests_total{plugin="boot"}`, m.Sum("dls_tftp_requests_total", `plugin="boot"`), 2},
		{`dls_iscsi_connections_total{plugin="disks"}`, m.Sum("dls_iscsi_connections_total", `plugin="disks"`), float64(boots)},
	}
	for _, c := range checks {
		if c.got < c.min {
			t.Errorf("%s = %g after %d boots, want >= %g", c.what, c.got, boots, c.min)
		} else {
			t.Logf("%s = %g", c.what, c.got)
		}
	}
	if f := m.Sum("dls_boot_failures_total"); f != 0 {
		t.Errorf("dls_boot_failures_total = %g, want 0", f)
	}
	// promtool lints the scrape: nothing to report.
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	} else {
		t.Logf("promtool check metrics on a scrape after the boots: no output (%d lines scraped)", strings.Count(text, "\n"))
	}
}

// reference: the same machine (MAC, QEMU, image) boots from DLS and from
// dnsmasq + tgt, one at a time: with a router on the segment (twice each),
// with dnsmasq also told to answer as a PXE server (option 60
// PXEClient), and with no router at all.
func (r *run) reference(t *testing.T) {
	ctx := context.Background()
	type round struct {
		name      string
		router    bool
		pxeClient bool // dnsmasq forces option 60 PXEClient
	}
	rounds := []round{
		{"router", true, false}, {"router", true, false},
		{"router, dnsmasq says PXEClient", true, true},
		{"no router", false, false},
	}
	times := map[string]*[2][]time.Duration{} // round name → DLS, reference
	var order []string
	pxe := false
	for _, rd := range rounds {
		for _, ra := range append(r.routers, r.refRA) {
			ra.Enable(rd.router)
		}
		if rd.pxeClient != pxe {
			var extra []string
			if rd.pxeClient {
				extra = []string{"--dhcp-option-force=60,PXEClient"}
			}
			must(t, r.refs.StartDnsmasq(extra...))
			pxe = rd.pxeClient
		}
		if times[rd.name] == nil {
			times[rd.name] = &[2][]time.Duration{}
			order = append(order, rd.name)
		}
		label := "reference comparison: " + rd.name
		if b, err := r.boot(ctx, r.vm[ref.name], label, "DLS", lab.BootOptions{}); err != nil {
			t.Error(err)
		} else {
			times[rd.name][0] = append(times[rd.name][0], b.Wall)
			if b.N == 1 && (b.Seen != 0 || b.Prev != 0) {
				// Ten boots of five machines wrote to their clones of
				// the same image before: none of it shows in this one.
				t.Errorf("ref's first boot saw a marker: seen %d, nonce %08x", b.Seen, b.Prev)
			}
		}
		if b, err := r.boot(ctx, r.refVM, label, "dnsmasq+tgt", lab.BootOptions{}); err != nil {
			t.Errorf("reference stack: %v\ndnsmasq:\n%s\ntgtd:\n%s", err, r.refs.Dnsmasq.LogTail(20), r.refs.Tgtd.LogTail(20))
		} else {
			times[rd.name][1] = append(times[rd.name][1], b.Wall)
		}
	}
	for _, ra := range append(r.routers, r.refRA) {
		ra.Enable(true)
	}
	if pxe {
		must(t, r.refs.StartDnsmasq())
	}
	for _, name := range order {
		p := times[name]
		if len(p[0]) == 0 || len(p[1]) == 0 {
			continue
		}
		d, f := median(p[0]), median(p[1])
		r.ratios = append(r.ratios, fmt.Sprintf("%-32s DLS %5.2fs  dnsmasq+tgt %5.2fs  ratio %.2fx  (DLS %s; reference %s)",
			name+":", d.Seconds(), f.Seconds(), d.Seconds()/f.Seconds(), secs(p[0]), secs(p[1])))
		t.Logf("boot time, %s: DLS %.2fs / dnsmasq+tgt %.2fs = %.2fx", name, d.Seconds(), f.Seconds(), d.Seconds()/f.Seconds())
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2fs", d.Seconds()))
	}
	return strings.Join(parts, " ")
}

// fault: kill -9 of the iSCSI plugin while a machine is booting from it
// (its boot sector has read its marker and is about to write the next).
// iPXE retries or the boot fails cleanly, the supervisor brings the
// plugin back, a re-run boots, and nothing the machine wrote is lost.
func (r *run) fault(t *testing.T) {
	ctx := context.Background()
	vm := r.vm[ft.name]
	b1, err := r.boot(ctx, vm, "fault: before", "DLS", lab.BootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b1.Seen != 0 {
		t.Errorf("ft's first boot saw a marker: seen %d, nonce %08x", b1.Seen, b1.Prev)
	}
	before := lab.ParseMetrics(mustScrape(t, r.host))
	oldPid := r.host.PluginPid("dls-protocol-iscsi")
	if oldPid == 0 {
		t.Fatal("no iSCSI plugin process under the host")
	}
	var killedAt time.Time
	b2, err := r.boot(ctx, vm, faultKilled, "DLS", lab.BootOptions{OnReady: func() {
		if err := syscall.Kill(oldPid, syscall.SIGKILL); err != nil {
			t.Errorf("kill -9 %d: %v", oldPid, err)
		}
		killedAt = time.Now()
	}})
	switch {
	case killedAt.IsZero():
		t.Fatalf("the boot never reached DLS-READY: %v", err)
	case err == nil && b2.Wrote:
		t.Logf("kill -9 of the iSCSI plugin (pid %d) mid-boot: iPXE reconnected and the boot went on; marker %08x written %.1fs after the kill",
			oldPid, b2.Nonce, b2.Wall.Seconds()-b2.ReadyAt.Seconds())
	case b2.Status == lab.StatusWriteFailed:
		t.Logf("kill -9 of the iSCSI plugin (pid %d) mid-boot: the boot failed cleanly (INT 13h write error, QEMU status %d)", oldPid, b2.Status)
	default:
		t.Errorf("boot with the plugin killed neither went on nor failed cleanly: %v", err)
	}

	// The supervisor restarts it.
	deadline := time.Now().Add(60 * time.Second)
	var newPid int
	for {
		newPid = r.host.PluginPid("dls-protocol-iscsi")
		if newPid != 0 && newPid != oldPid {
			if err := r.host.WaitReady(ctx); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the iSCSI plugin is not back 60s after kill -9; host log:\n%s", r.host.Proc.LogTail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
	after := lab.ParseMetrics(mustScrape(t, r.host))
	restarts := after.Sum("dls_service_restarts_total", `plugin="disks"`) - before.Sum("dls_service_restarts_total", `plugin="disks"`)
	if restarts < 1 || after.Sum("dls_plugin_up", `plugin="disks"`) != 1 {
		t.Errorf("after kill -9: dls_service_restarts_total{plugin=\"disks\"} moved by %g, dls_plugin_up %g; want >= 1 and 1",
			restarts, after.Sum("dls_plugin_up", `plugin="disks"`))
	}
	t.Logf("iSCSI plugin back as pid %d (was %d); dls_service_restarts_total{plugin=\"disks\"} +%g", newPid, oldPid, restarts)

	// The iSCSI plugin sends its boot events in batches: the kill may
	// have taken boot 2's handoff with it, leaving its session waiting at
	// iscsi_login. A discover within the restart grace (10 s) of a
	// session's latest stage belongs to that boot ("a script that runs
	// dhcp again"): wait it out, as a real machine's reboot would, so
	// that the re-run is a boot of its own.
	if wait := time.Until(b2.Start.Add(b2.Wall).Add(11 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}

	// A re-run boots and finds everything the machine had written.
	b3, err := r.boot(ctx, vm, "fault: re-run", "DLS", lab.BootOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantSeen, wantPrev := uint32(1), b1.Nonce
	if b2.Wrote {
		wantSeen, wantPrev = 2, b2.Nonce
	}
	if b2.Prev != b1.Nonce || b3.Seen != wantSeen || b3.Prev != wantPrev {
		t.Errorf("markers: boot 1 wrote %08x; boot 2 saw %08x and wrote %v %08x; re-run saw seen %d %08x, want %d %08x",
			b1.Nonce, b2.Prev, b2.Wrote, b2.Nonce, b3.Seen, b3.Prev, wantSeen, wantPrev)
	} else {
		t.Logf("re-run booted and saw marker %08x (seen %d): nothing written before or after the kill was lost", b3.Prev, b3.Seen)
	}
}

const faultKilled = "fault: iSCSI plugin killed"

func mustScrape(t *testing.T, h *lab.Host) string {
	t.Helper()
	s, err := h.Scrape(context.Background())
	must(t, err)
	return s
}

// sessionsAPI: /api/v1/sessions (as an admin created with dls user add)
// lists every boot of every machine, with its stages.
func (r *run) sessionsAPI(t *testing.T) {
	ctx := context.Background()
	token, err := r.host.Login(ctx, "admin", adminPassword)
	must(t, err)
	all, err := r.host.Sessions(ctx, token, "")
	must(t, err)
	byClient := map[string][]lab.Session{}
	for _, s := range all {
		byClient[s.Client] = append(byClient[s.Client], s)
	}
	for _, m := range machines {
		if len(byClient[m.name]) == 0 {
			t.Errorf("/api/v1/sessions lists no session of %s", m.name)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.boots {
		if rec.server != "DLS" || rec.boot.Start.IsZero() {
			continue
		}
		// The session this boot started: the client's first one started
		// after QEMU did (its DHCPDISCOVER, on the same clock) and before
		// it exited.
		for i := range byClient[rec.boot.Machine] {
			s := byClient[rec.boot.Machine][i]
			if !s.Started.Before(rec.boot.Start) && s.Started.Before(rec.boot.Start.Add(rec.boot.Wall)) &&
				(rec.session == nil || s.Started.Before(rec.session.Started)) {
				rec.session = &s
			}
		}
		if rec.session == nil {
			if rec.boot.Status == lab.StatusOK {
				t.Errorf("no session for %s boot %d (%s)", rec.boot.Machine, rec.boot.N, rec.label)
			}
			continue
		}
		s := rec.session
		if rec.label == faultKilled && s.State == "failed" {
			// Its handoff event died with the plugin (see fault).
			t.Logf("session %d of %s (boot %d, plugin killed): %s at %s, stages %v", s.ID, s.Client, rec.boot.N, s.State, s.FailedStage, s.StageList(", "))
			continue
		}
		for _, stage := range []string{"dhcp", "script", "iscsi_login", "handoff"} {
			if _, ok := s.Stages[stage]; !ok && rec.boot.Ran {
				t.Errorf("session %d of %s (boot %d) has no stage %s: %v", s.ID, s.Client, rec.boot.N, stage, s.Stages)
			}
		}
		if rec.boot.Ran && (s.State != "done" || s.Expect != "handoff") {
			t.Errorf("session %d of %s: state %s, expect %s; want done at handoff", s.ID, s.Client, s.State, s.Expect)
		}
	}
	t.Logf("/api/v1/sessions: %d sessions of %d clients", len(all), len(byClient))
}

// prometheus: the real Prometheus scraped DLS throughout: up is 1 and it
// stored the plugins' series with their plugin labels.
func (r *run) prometheus(t *testing.T) {
	ctx := context.Background()
	final := lab.ParseMetrics(mustScrape(t, r.host)).Sum("dls_boot_sessions_total")
	// Wait for a scrape that saw every session.
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := r.prom.Query(ctx, `dls_boot_sessions_total{job="dls"}`)
		if err == nil && len(s) == 1 && s[0].Value == fmt.Sprint(final) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never stored dls_boot_sessions_total = %g: %v %v; log:\n%s", final, s, err, r.prom.Proc.LogTail(20))
		}
		time.Sleep(500 * time.Millisecond)
	}
	up, err := r.prom.Query(ctx, `up{job="dls"}`)
	must(t, err)
	if len(up) != 1 || up[0].Value != "1" {
		t.Errorf(`up{job="dls"} = %v, want 1`, up)
	}
	minUp, err := r.prom.Query(ctx, `min_over_time(up{job="dls"}[10m])`)
	must(t, err)
	if len(minUp) != 1 || minUp[0].Value != "1" {
		t.Errorf(`min_over_time(up{job="dls"}[10m]) = %v: a scrape failed during the run`, minUp)
	}
	series, err := r.prom.Query(ctx, `count by (plugin) ({job="dls", plugin!="", __name__=~"dls_(dhcp|tftp|iscsi|storage)_.+"})`)
	must(t, err)
	got := map[string]string{}
	for _, s := range series {
		got[s.Metric["plugin"]] = s.Value
	}
	for _, p := range []string{"lan", "pxe", "boot", "disks", "local"} {
		if got[p] == "" {
			t.Errorf("Prometheus stored no dls_dhcp/tftp/iscsi/storage series with plugin=%q (has %v)", p, got)
		}
	}
	for _, q := range []string{
		`max_over_time(dls_iscsi_connections_total{plugin="disks"}[10m])`,
		`max_over_time(dls_tftp_requests_total{plugin="boot"}[10m])`,
		`max_over_time(dls_dhcp_requests_total{plugin="lan",type="discover"}[10m])`,
		`max_over_time(dls_dhcp_requests_total{plugin="pxe",type="discover"}[10m])`,
	} {
		s, err := r.prom.Query(ctx, q)
		must(t, err)
		if len(s) != 1 || s[0].Value == "0" {
			t.Errorf("Prometheus: %s = %v, want one series > 0", q, s)
		}
	}
	t.Logf(`Prometheus: up{job="dls"} = 1 throughout; series per plugin label: %v`, got)
}

// report prints every boot: the test's wall clock (QEMU start to exit)
// and DLS's session time (first DHCPDISCOVER to handoff).
func (r *run) report() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-16s %-4s %-12s %-6s %6s %8s %15s  %s\n", "machine", "boot", "server", "script", "status", "wall (s)", "DLS session (s)", "for")
	for _, rec := range r.boots {
		bt := rec.boot
		dls := "-"
		switch {
		case rec.session == nil:
		case rec.session.State == "done":
			dls = fmt.Sprintf("%.3f", rec.session.Seconds())
		default:
			dls = rec.session.State + "@" + rec.session.FailedStage
		}
		via := bt.ScriptBy
		if via == "" {
			via = "-"
		}
		fmt.Fprintf(&b, "%-16s %-4d %-12s %-6s %6d %8.2f %15s  %s\n", bt.Machine, bt.N, rec.server, via, bt.Status, bt.Wall.Seconds(), dls, rec.label)
	}
	if len(r.ratios) > 0 {
		b.WriteString("\nBoot time (wall clock, medians), the same machine from DLS and from dnsmasq + tgt:\n")
		for _, l := range r.ratios {
			b.WriteString("  " + l + "\n")
		}
	}
	r.t.Log(b.String())
}

// dumpLogs prints the tails of the servers' logs when the test failed (a
// failed boot's error has its serial console).
func dumpLogs(t *testing.T, dir string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, m := range matches {
		if strings.HasPrefix(filepath.Base(m), "serial-") {
			continue
		}
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("--- %s (tail)\n%s", filepath.Base(m), strings.Join(lines, "\n"))
	}
}

// twoSegments makes the namespace DLS runs in (<role>dls): the full-mode
// segment br0 and the proxy-mode segment br1, where the site's own DHCP
// server (dnsmasq in <role>site, on a veth) gives addresses and no PXE
// options; its router option points at DLS's namespace, which holds the
// boot address (fullIP) the proxied machines reach.
func twoSegments(t *testing.T, l *lab.Lab, role string) *lab.NS {
	t.Helper()
	dls, err := l.NS(role + "dls")
	must(t, err)
	must(t, dls.Bridge("br0", fullIP+"/24"))
	must(t, dls.Bridge("br1", proxyIP+"/24"))
	site, err := l.NS(role + "site")
	must(t, err)
	must(t, l.Veth(site, "vsite", dls, "psite"))
	must(t, dls.Run("ip", "link", "set", "psite", "master", "br1"))
	must(t, site.Run("ip", "addr", "add", siteIP+"/24", "dev", "vsite"))
	_, err = l.Dnsmasq(role+"site-dnsmasq", site, "vsite", "192.168.78.100", "192.168.78.150", proxyIP)
	must(t, err)
	return dls
}
