//go:build linux

// Command storm is a boot-storm load tool: it plays N diskless machines
// booting at once (or ramped over T seconds) against a DLS host, each
// running the real chain — relayed DHCP DORA, TFTP of the first-stage
// file, its iPXE script over HTTP, iSCSI login to its own target, a read
// of its first M MiB and a synced write — and then the same storm against
// a reference stack (dnsmasq + busybox httpd + tgt), and prints per-stage
// latencies, the servers' CPU and peak RSS, and the ratios DLS/reference.
// With -chaos it kills each plugin and the host mid-storm and checks that
// every machine still boots with no duplicate lease and no lost write;
// with -loop it soaks DLS and records its processes over time; with
// -console it storms DLS with and without the floor console open in
// chromium and measures the page (first render, heap, lag) beside the
// storm.
//
// It runs as root inside the clients' network namespace; the servers run
// in -server-ns (see run.sh, which makes both).
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dls-project/dls/core/console/consoletest"
	"github.com/dls-project/dls/e2e/lab"
)

type options struct {
	n            int
	ramp         time.Duration
	readMiB      int
	imageMiB     int
	stacks       string
	chaos        bool
	loop         time.Duration
	sample       time.Duration
	csv          string
	work         string
	bin          string
	serverNS     string
	iface        string
	serverIP     string
	relayIP      string
	clientIface  string
	prefixLen    int
	bootFile     string
	deadline     time.Duration
	resultsJSON  string
	maxLogins    int
	cold         bool
	unknown      string
	console      bool
	consoleAt    time.Duration
	consoleFirst bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "machines")
	flag.DurationVar(&o.ramp, "ramp", 0, "spread the machines' power-on over this long (0: all at once)")
	flag.IntVar(&o.readMiB, "read-mib", 4, "MiB each machine reads from the start of its disk")
	flag.IntVar(&o.imageMiB, "image-mib", 64, "image size in MiB (its first 8 MiB are data, the rest a hole)")
	flag.StringVar(&o.stacks, "stacks", "dls,ref", "which stacks to storm: dls, ref or dls,ref")
	flag.BoolVar(&o.chaos, "chaos", false, "DLS only: kill -9 each plugin in turn and the host mid-storm, then verify")
	flag.DurationVar(&o.loop, "loop", 0, "DLS only: storm back to back for this long (soak), recording -csv")
	flag.DurationVar(&o.sample, "sample", 5*time.Second, "soak: sampling interval")
	flag.StringVar(&o.csv, "csv", "storm-soak.csv", "soak: the CSV of host and plugin RSS, threads, fds, goroutines")
	flag.StringVar(&o.work, "work", "", "folder for configs, state and logs (default: a temporary one)")
	flag.StringVar(&o.bin, "bin", "", "folder with dls and plugins/ (default: build them into -work)")
	flag.StringVar(&o.serverNS, "server-ns", "", "network namespace the servers run in (required)")
	flag.StringVar(&o.iface, "iface", "vsrv", "the servers' interface in -server-ns")
	flag.StringVar(&o.serverIP, "server-ip", "10.99.0.1", "the servers' address")
	flag.StringVar(&o.relayIP, "relay-ip", "10.99.0.2", "this namespace's address: the relay's giaddr")
	flag.StringVar(&o.clientIface, "client-iface", "vcli", "this namespace's interface: each machine adds its leased address to it")
	flag.IntVar(&o.prefixLen, "prefix-len", 16, "the prefix length the machines add their leased addresses with")
	flag.StringVar(&o.bootFile, "boot-file", "/usr/lib/ipxe/undionly.kpxe", "the first-stage file served over TFTP")
	flag.DurationVar(&o.deadline, "deadline", 10*time.Minute, "a machine not booted by then counts as failed")
	flag.IntVar(&o.maxLogins, "iscsi-max-logins", 0, "DLS's iSCSI max_login_connections (0: the plugin's default)")
	flag.BoolVar(&o.cold, "cold", false, "DLS: power on at /readyz, while the declared clients' clones are still being made (default: wait for dls_volumes_pending 0, as the reference's targets are made before it is ready)")
	flag.StringVar(&o.unknown, "unknown", "", `DLS only: "register" declares no client, the machines are registered at their first DHCP (unknown_clients = "register") and boot`)
	flag.BoolVar(&o.console, "console", false, "DLS: storm twice on fresh hosts, without and then with the floor console open in chromium (signed in as an admin); print the page's first render idle and mid-storm, its heap, DOM size and lag behind the host, and the storm's ratios with / without the page (skipped when chromium is missing)")
	flag.DurationVar(&o.consoleAt, "console-at", 0, "-console: open the floor in a second tab this long after the power-on (0: half the ramp, at least 1 s; below 0: only the tab opened before the storm watches)")
	flag.BoolVar(&o.consoleFirst, "console-first", false, "-console: the storm with the page first, then the one without")
	flag.StringVar(&o.resultsJSON, "results", "", "write every machine's outcome (leases, its acknowledged write) here as JSON")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func run(o options) error {
	if o.serverNS == "" {
		return errors.New("-server-ns is required (run it through bench/storm/run.sh)")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if o.work == "" {
		d, err := os.MkdirTemp("", "dls-storm.")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.work = d
	}
	l := lab.New("storm", o.work, logf)
	defer l.Close()
	ns := &lab.NS{Name: o.serverNS}

	if o.bin == "" {
		root, err := lab.RepoRoot()
		if err != nil {
			return err
		}
		o.bin = filepath.Join(o.work, "bin")
		logf("building dls and its plugins into %s", o.bin)
		if err := lab.Build(root, o.bin); err != nil {
			return err
		}
	}
	image := filepath.Join(o.work, "storm.img")
	img, err := makeImage(image, o.imageMiB, o.readMiB)
	if err != nil {
		return err
	}
	bootFile, err := os.ReadFile(o.bootFile)
	if err != nil {
		return fmt.Errorf("first-stage file (Debian package ipxe): %w", err)
	}
	machines := makeMachines(o.n)
	rl, err := listenRelay(net.ParseIP(o.relayIP), net.ParseIP(o.serverIP))
	if err != nil {
		return err
	}
	defer rl.Close()
	ad, err := openAddrs(o.clientIface, o.prefixLen)
	if err != nil {
		return err
	}
	defer func() {
		if err := ad.Close(); err != nil {
			logf("leased addresses: %v", err)
		}
	}()
	runID := make([]byte, 4)
	_, _ = crand.Read(runID)
	c := &chain{
		relay: rl, bootFile: bootFile, image: img, readMiB: o.readMiB, runID: hex.EncodeToString(runID),
		addrs: ad,
		http:  &http.Client{Transport: &http.Transport{DialContext: dialFromLocal, DisableKeepAlives: true, MaxConnsPerHost: 0}},
		// iPXE's DHCP: 1 s doubling to 10 s; TFTP: resend after 1 s, 5
		// times; each stage 5 tries before the machine reboots.
		dhcpTimeouts: backoff(time.Second, 10*time.Second, 6),
		tftpTimeout:  time.Second, tftpRetries: 5, stageTries: 5,
	}

	doDLS, doRef := false, false
	switch o.stacks {
	case "dls":
		doDLS = true
	case "ref":
		doRef = true
	case "dls,ref", "ref,dls":
		doDLS, doRef = true, true
	default:
		return fmt.Errorf("-stacks %q: dls, ref or dls,ref", o.stacks)
	}
	switch o.unknown {
	case "":
	case "register":
		// The reference has no notion of a machine it was not told of.
		doRef = false
	default:
		return fmt.Errorf(`-unknown %q: "register" or nothing`, o.unknown)
	}
	if o.chaos || o.loop > 0 {
		doRef = false
	}
	logf("run %s: %d machines, ramp %s, read %d MiB each, image %d MiB", c.runID, o.n, o.ramp, o.readMiB, o.imageMiB)

	var all []*outcome
	var dlsSum, refSum summary
	failed := false
	if o.console && (o.chaos || o.loop > 0 || !doDLS) {
		return errors.New("-console: with the DLS stack only, not with -chaos or -loop")
	}
	if o.console {
		if _, err := consoletest.FindChromium(); err != nil {
			fmt.Printf("-console skipped: %v\n", err)
			o.console = false
		}
	}
	if doDLS && o.console {
		// The same storm on two fresh hosts, the page watching one of
		// them: what the page costs the boots is the ratio. The second
		// storm of a run finds warmer caches: -console-first swaps the
		// order, so that runs of both orders tell that apart.
		order := []bool{false, true}
		if o.consoleFirst {
			order = []bool{true, false}
		}
		var with, without summary
		for _, page := range order {
			if ctx.Err() != nil {
				break
			}
			dir := "dls"
			if page {
				dir = "dls-console"
			}
			outs, sum, bad, err := runDLS(ctx, c, l, ns, o, machines, image, dir, page)
			if err != nil {
				return err
			}
			all, failed = append(all, outs...), failed || bad
			if page {
				with, dlsSum = sum, sum
			} else {
				without = sum
			}
		}
		if with.Machines > 0 && without.Machines > 0 {
			printRatios(os.Stdout, "DLS with the console watching / without", with, without)
		}
	} else if doDLS {
		outs, sum, bad, err := runDLS(ctx, c, l, ns, o, machines, image, "dls", false)
		if err != nil {
			return err
		}
		all, dlsSum, failed = append(all, outs...), sum, failed || bad
	}
	if doRef && ctx.Err() == nil {
		c.stack = stack{Name: "reference", HTTPPort: 9180, WriteLUNDelta: 1}
		t0 := time.Now()
		r, err := startRef(ctx, l, ns, filepath.Join(o.work, "ref"), o.iface, o.serverIP, image, o.bootFile, machines)
		if err != nil {
			return fmt.Errorf("start the reference: %w", err)
		}
		logf("reference (dnsmasq, busybox httpd, tgtd with %d targets) ready in %.1f s", o.n, time.Since(t0).Seconds())
		before := r.procsNow()
		sctx, cancel := context.WithTimeout(ctx, o.deadline)
		var done atomic.Int64
		outs := storm(sctx, c, machines, o.ramp, &done)
		cancel()
		refSum = summarize("reference: dnsmasq + busybox httpd + tgt", outs)
		refSum.Procs = usage(before, r.procsNow())
		checked, lost := verifyWrites(ctx, c.runID, outs)
		released, err := c.addrs.releaseAll()
		if err != nil {
			failed = true
			fmt.Printf("leased addresses: %v\n", err)
		}
		r.stop()
		fmt.Printf("leased addresses the machines used: %d, taken off %s\n", released, o.clientIface)
		refSum.print(os.Stdout)
		fmt.Printf("writes read back: %d checked, %d lost\n", checked, len(lost))
		for _, x := range lost {
			fmt.Println("  LOST", x)
		}
		if d := duplicateLeases(outs); len(d) > 0 {
			failed = true
			fmt.Printf("duplicate leases: %v\n", d)
		}
		failed = failed || refSum.Done != refSum.Machines || len(lost) > 0
		all = append(all, outs...)
	}
	if doDLS && doRef && dlsSum.Machines > 0 && refSum.Machines > 0 {
		printRatios(os.Stdout, "DLS / reference ("+refSum.Stack+")", dlsSum, refSum)
	}
	if o.resultsJSON != "" {
		b, err := json.MarshalIndent(all, "", " ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.resultsJSON, b, 0o644); err != nil {
			return err
		}
	}
	if failed {
		return errors.New("some machines did not boot or a check failed (see above)")
	}
	return ctx.Err()
}

// runDLS starts a DLS host in work/dir, waits for its clones (unless
// -cold), and storms it (or soaks it with -loop); with page, the floor
// console watches the storm (-console).
func runDLS(ctx context.Context, c *chain, l *lab.Lab, ns *lab.NS, o options, machines []machine, image, dir string, page bool) ([]*outcome, summary, bool, error) {
	c.stack = stack{Name: "DLS", HTTPPort: 9180, WriteOffset: int64(o.imageMiB) << 20 / 2}
	if page {
		c.stack.Name = "DLS, the console watching"
	}
	t0 := time.Now()
	h, err := startDLS(ctx, l, ns, filepath.Join(o.work, dir), o.bin, o.iface, o.serverIP, image, o.bootFile, o.maxLogins, machines, o.unknown == "register", page)
	if err != nil {
		return nil, summary{}, false, fmt.Errorf("start DLS: %w", err)
	}
	logf("DLS ready in %.1f s (host log %s)", time.Since(t0).Seconds(), h.proc.Log)
	if !o.cold {
		t1 := time.Now()
		if err := h.awaitVolumes(ctx); err != nil {
			h.stop()
			return nil, summary{}, false, err
		}
		logf("DLS: every client's clone made %.1f s after /readyz", time.Since(t1).Seconds())
	}
	if o.loop > 0 {
		rounds, err := soak(ctx, c, h, machines, o.ramp, o.loop, o.sample, o.csv, logf)
		h.stop()
		if err != nil {
			return nil, summary{}, false, err
		}
		failed := false
		for _, s := range rounds {
			if s.Done != s.Machines {
				failed = true
			}
		}
		logf("soak: %d rounds, samples in %s", len(rounds), o.csv)
		return nil, summary{}, failed, nil
	}
	outs, sum, failed := dlsStorm(ctx, c, h, machines, o)
	return outs, sum, failed, nil
}

// dlsStorm runs one storm against h (with chaos when asked), then checks
// the writes and the leases, and prints the summary.
func dlsStorm(ctx context.Context, c *chain, h *dlsHost, machines []machine, o options) ([]*outcome, summary, bool) {
	failed := false
	var page *consolePage
	var crep consoleReport
	if h.consolePassword != "" {
		var err error
		page, crep.Idle, err = idleFloor(ctx, h, len(machines))
		if err != nil {
			fmt.Printf("console: %v\n", err)
			return nil, summary{Stack: c.stack.Name}, true
		}
		defer page.close()
	}
	before := h.procs()
	var browserBefore float64
	if page != nil {
		browserBefore = page.cpu()
	}
	sctx, cancel := context.WithTimeout(ctx, o.deadline)
	var done atomic.Int64
	start := time.Now()
	midStorm := make(chan struct{})
	go func() {
		defer close(midStorm)
		if page != nil {
			crep.OpenedAt, crep.Storm, crep.StormErr = stormFloor(sctx, page, start, o, &done)
		}
	}()
	var cres chaosResult
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		if o.chaos {
			// Kills every interval, the last (the host) before the last
			// machine powers on: every stage is busy at each kill.
			cres = chaos(sctx, h, start, max(o.ramp/6, time.Second))
		}
	}()
	progress := time.NewTicker(5 * time.Second)
	stormDone := make(chan []*outcome)
	go func() { stormDone <- storm(sctx, c, machines, o.ramp, &done) }()
	var outs []*outcome
	for outs == nil {
		select {
		case outs = <-stormDone:
		case <-progress.C:
			logf("DLS storm: %d/%d booted", done.Load(), len(machines))
		}
	}
	progress.Stop()
	<-chaosDone
	<-midStorm
	cancel()
	sum := summarize(c.stack.Name, outs)
	sum.Procs = usage(before, h.procs())
	if page != nil {
		crep.BrowserCPU = page.cpu() - browserBefore
	}
	sum.print(os.Stdout)
	if page != nil {
		booted := 0
		for _, o := range outs {
			if o.Done {
				booted++
			}
		}
		crep.Live, crep.LiveErr = page.liveness(ctx, booted, start, 60*time.Second)
		crep.print(os.Stdout, len(machines))
		failed = failed || crep.LiveErr != nil || crep.StormErr != nil
	}
	if m, err := h.metrics(ctx); err == nil {
		loginSteps(os.Stdout, m)
	}
	if o.chaos {
		fmt.Println("(chaos: a process restarted mid-storm counts from its restart)")
	}
	if o.chaos {
		fmt.Println("\n== chaos")
		for _, k := range cres.Kills {
			if k.Err != nil {
				failed = true
				fmt.Printf("kill -9 %-32s at %6.2f s: %v\n", k.What, k.At.Seconds(), k.Err)
				continue
			}
			fmt.Printf("kill -9 %-32s at %6.2f s: ready again after %.2f s\n", k.What, k.At.Seconds(), k.Back.Seconds())
		}
		if m, err := h.metrics(ctx); err == nil {
			cres.RestartsAfterHost = map[string]float64{}
			for _, inst := range chaosOrder {
				cres.RestartsAfterHost[inst] = m.Sum("dls_service_restarts_total", fmt.Sprintf("plugin=%q", inst))
			}
		}
		for _, inst := range chaosOrder {
			ok := cres.Restarts[inst] == 1 && cres.RestartsAfterHost[inst] == 0
			failed = failed || !ok
			fmt.Printf("dls_service_restarts_total{plugin=%q}: %.0f after its kill (want 1), %.0f on the restarted host (want 0)\n",
				inst, cres.Restarts[inst], cres.RestartsAfterHost[inst])
		}
	}
	checked, lost := verifyWrites(ctx, c.runID, outs)
	// After the read-back (it logs in from each machine's address): the
	// machines power off, and the reference's storm starts with a bare
	// interface.
	released, err := c.addrs.releaseAll()
	if err != nil {
		failed = true
		fmt.Printf("leased addresses: %v\n", err)
	}
	h.stop()
	fmt.Printf("writes read back through iSCSI: %d checked, %d lost\n", checked, len(lost))
	fmt.Printf("leased addresses the machines used: %d, taken off %s\n", released, o.clientIface)
	for _, x := range lost {
		fmt.Println("  LOST", x)
	}
	dup := duplicateLeases(outs)
	acks := 0
	for _, o := range outs {
		acks += len(o.Acks)
	}
	fmt.Printf("DHCPACKs received: %d; addresses ACKed to more than one MAC: %d\n", acks, len(dup))
	for addr, macs := range dup {
		fmt.Printf("  DUPLICATE %s: %v\n", addr, macs)
	}
	mismatch := 0
	if stored, err := h.storeLeases(ctx); err != nil {
		failed = true
		fmt.Printf("store leases: %v\n", err)
	} else {
		for _, o := range outs {
			if n := len(o.Acks); n > 0 {
				if a := o.Acks[n-1]; stored[a.Addr] != a.MAC {
					mismatch++
					fmt.Printf("  STORE %s: ACKed to %s, stored for %q\n", a.Addr, a.MAC, stored[a.Addr])
				}
			}
		}
		fmt.Printf("store: %d leases; machines whose last ACK the store does not hold: %d\n", len(stored), mismatch)
	}
	failed = failed || sum.Done != sum.Machines || len(lost) > 0 || len(dup) > 0 || mismatch > 0
	return outs, sum, failed
}

// makeImage writes the image: sizeMiB, its first 8 MiB (at least readMiB)
// random data, the rest a hole. It returns the first readMiB, which every
// machine must read back.
func makeImage(path string, sizeMiB, readMiB int) ([]byte, error) {
	data := max(8, readMiB) << 20
	if sizeMiB<<20 < data+(1<<20) {
		return nil, fmt.Errorf("-image-mib %d: too small for %d MiB of data and the write", sizeMiB, data>>20)
	}
	b := make([]byte, data)
	r := rand.NewChaCha8([32]byte{'d', 'l', 's'})
	_, _ = r.Read(b)
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return nil, err
	}
	if err := f.Truncate(int64(sizeMiB) << 20); err != nil {
		return nil, err
	}
	return b[:readMiB<<20], f.Close()
}
