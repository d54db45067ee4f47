//go:build linux

package main

// -console: Debian's chromium, headless, signed in to the DLS host's floor
// console while the storm runs against the same host. It measures the
// floor's first render (navigation → every tile in the DOM) on the idle
// host and again opened mid-storm, the page's JS heap and DOM size, and
// how far the page lags behind the host: each tile's switch to booted
// against the time the host ended that machine's boot session.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/dls-project/dls/core/console/consoletest"
	"github.com/dls-project/dls/e2e/lab"
)

// consoleUser is the admin the storm's host gets for the console.
const consoleUser = "storm-admin"

// addConsoleUser makes the host's admin for the browser with `dls user
// add` (before `dls serve`, as an admin would) and returns its password.
func (h *dlsHost) addConsoleUser() (string, error) {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	password := hex.EncodeToString(b)
	cmd := h.ns.Command(filepath.Join(h.bin, "dls"), "user", "add", consoleUser, "--password-stdin", "--role", "admin", "--config", h.config)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("dls user add: %v: %s", err, out)
	}
	return password, nil
}

// floorLoad is one navigation to the floor.
type floorLoad struct {
	// RenderedMs is the page's own clock from the navigation's start to
	// every tile in the DOM (the floor's data-floor-rendered-at).
	RenderedMs float64
	Tiles      int
	HeapMiB    float64
	DOM        int
	// Booted is how many machines the storm counted booted when the
	// navigation started and when the floor was rendered.
	BootedAtStart, BootedAtRender int64
}

// liveness is what the watching page saw of the storm.
type liveness struct {
	// Booted is how many tiles turned booted; Lags are, per tile, the
	// page's switch to booted minus the host's end of that session.
	Booted int
	Lags   []time.Duration
	// StreamLags are the host's session end → the booted event's
	// arrival in the page, DrawLags that arrival → the tile drawn.
	StreamLags, DrawLags []time.Duration
	// LastHost is the host's last session end, LastPage the page's last
	// tile switch to booted.
	LastHost, LastPage time.Time
	// Modes are the stream indicator's states in order ("stream at 0
	// s", "polling at 3.1 s", ... since watch); Polled is whether
	// polling was ever on.
	Modes   []string
	Polled  bool
	HeapMiB float64
	DOM     int
}

// consolePage is a chromium in the host's namespace, signed in as the
// host's admin, its first tab on the floor.
type consolePage struct {
	pid    int // the browser's process
	url    string
	n      int
	tab    context.Context
	cancel func()
}

// openConsole starts chromium in ns (the host's namespace: its address
// does not change as the machines' leases come and go, which chromium
// would take as a network change and drop its connections for), signs in
// through the form and leaves the first tab on the floor.
func openConsole(ctx context.Context, ns *lab.NS, url, password string, n int) (*consolePage, error) {
	bin, err := consoletest.FindChromium()
	if err != nil {
		return nil, err
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		return nil, err
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("enable-precise-memory-info", true),
		chromedp.CombinedOutput(io.Discard),
		chromedp.ModifyCmdFunc(func(cmd *exec.Cmd) {
			cmd.Path, cmd.Args = ip, ns.Exec(cmd.Args...)
		}),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tab, cancelTab := chromedp.NewContext(actx)
	p := &consolePage{url: url, n: n, tab: tab, cancel: func() { cancelTab(); cancelAlloc() }}
	// The first run starts the browser and ties it to its context: the
	// tab's own, not a step's deadline.
	if err := chromedp.Do(tab); err != nil {
		p.close()
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	if c := chromedp.FromContext(tab); c != nil && c.Browser != nil && c.Browser.Process() != nil {
		p.pid = c.Browser.Process().Pid
	}
	sctx, cancel := context.WithTimeout(tab, 2*time.Minute)
	defer cancel()
	err = chromedp.Do(sctx,
		chromedp.Navigate(url+"/#/floor"),
		chromedp.WaitVisible(chromedp.CSS(`#signin input[name="username"]`)),
		chromedp.SendKeys(chromedp.CSS(`#signin input[name="username"]`), consoleUser),
		chromedp.SendKeys(chromedp.CSS(`#signin input[name="password"]`), password),
		chromedp.Click(chromedp.CSS(`#signin button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.tile`)))
	if err != nil {
		p.close()
		return nil, fmt.Errorf("sign in to the console at %s: %w", url, err)
	}
	return p, nil
}

func (p *consolePage) close() { p.cancel() }

// cpu is the CPU seconds the browser and its renderers used so far.
func (p *consolePage) cpu() float64 {
	if p.pid == 0 {
		return 0
	}
	return treeCPU(p.pid)
}

// load navigates tab to the floor (a new query string: a real page load)
// and waits for every tile; booted, when not nil, is read at the start
// and at the render.
func (p *consolePage) load(ctx, tab context.Context, tag string, booted func() int64) (floorLoad, error) {
	var f floorLoad
	if booted != nil {
		f.BootedAtStart = booted()
	}
	tctx, cancel := context.WithTimeout(tab, 2*time.Minute)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	err := chromedp.Do(tctx,
		chromedp.Navigate(fmt.Sprintf("%s/?load=%s#/floor", p.url, tag)),
		waitJS(fmt.Sprintf(`document.body.dataset.floorTiles === "%d"`, p.n)))
	if booted != nil {
		f.BootedAtRender = booted()
	}
	if err != nil {
		return f, fmt.Errorf("floor (%s): %w", tag, err)
	}
	v, err := chromedp.Run(tctx, chromedp.Evaluate[map[string]float64](`({
		rendered: Number(document.body.dataset.floorRenderedAt),
		tiles: document.querySelectorAll(".tile").length,
		heap: performance.memory ? performance.memory.usedJSHeapSize : -1,
		dom: document.getElementsByTagName("*").length})`))
	if err != nil {
		return f, fmt.Errorf("floor (%s) figures: %w", tag, err)
	}
	f.RenderedMs, f.Tiles, f.HeapMiB, f.DOM = v["rendered"], int(v["tiles"]), v["heap"]/(1<<20), int(v["dom"])
	return f, nil
}

// watch starts recording, in the first tab, when each tile turns booted
// (its data-state, or a tile drawn booted by a reload of the floor) and
// every change of the stream indicator.
func (p *consolePage) watch(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(p.tab, 30*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	return chromedp.Do(tctx,
		waitJS(`!!document.querySelector('.live[data-live="stream"]')`),
		chromedp.Evaluate[chromedp.Void](`(() => {
	const t0 = Date.now();
	const w = window.stormWatch = { booted: {}, modes: [document.querySelector(".live").dataset.live + " at 0 s"] };
	const rec = (el) => {
		if (el.dataset.state === "booted" && !(el.dataset.client in w.booted)) w.booted[el.dataset.client] = Date.now();
	};
	new MutationObserver((muts) => {
		for (const m of muts) {
			if (m.type === "attributes") { if (m.target.classList.contains("tile")) rec(m.target); continue; }
			for (const n of m.addedNodes) if (n.querySelectorAll) n.querySelectorAll('.tile[data-state="booted"]').forEach(rec);
		}
	}).observe(document.getElementById("view"), { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
	const live = document.querySelector(".live");
	new MutationObserver(() => w.modes.push(live.dataset.live + " at " + ((Date.now() - t0) / 1000).toFixed(1) + " s")).observe(live, { attributes: true, attributeFilter: ["data-live"] });
})()`))
}

// liveness waits (up to wait) for the first tab to show want tiles booted
// since watch, then compares each tile's switch with the end of the
// client's latest session started after since, as the host stored it.
func (p *consolePage) liveness(ctx context.Context, want int, since time.Time, wait time.Duration) (liveness, error) {
	var l liveness
	tctx, cancel := context.WithTimeout(p.tab, wait+30*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	wctx, wcancel := context.WithTimeout(tctx, wait)
	werr := chromedp.Do(wctx, waitJS(fmt.Sprintf(`Object.keys(window.stormWatch.booted).length >= %d`, want)))
	wcancel()
	type sample struct {
		Client string  `json:"client"`
		Page   float64 `json:"page"`
		Host   float64 `json:"host"`
		Stream float64 `json:"stream"` // 0: not noted
	}
	type result struct {
		Samples []sample `json:"samples"`
		Booted  int      `json:"booted"`
		Modes   []string `json:"modes"`
		Heap    float64  `json:"heap"`
		DOM     int      `json:"dom"`
	}
	r, err := chromedp.Run(tctx, chromedp.Evaluate[result](fmt.Sprintf(`(async () => {
	const w = window.stormWatch;
	const res = await fetch("/api/v1/sessions?state=done&limit=10000");
	if (!res.ok) throw new Error("GET sessions: HTTP " + res.status);
	const ended = {};
	for (const s of await res.json()) { // newest first
		if (s.client && s.ended && !(s.client in ended) && Date.parse(s.started) >= %d) ended[s.client] = Date.parse(s.ended);
	}
	const samples = Object.entries(w.booted).filter(([c]) => c in ended).map(([c, at]) => ({ client: c, page: at, host: ended[c], stream: (window.stormStream || {})[c] || 0 }));
	return { samples, booted: Object.keys(w.booted).length, modes: w.modes,
		heap: performance.memory ? performance.memory.usedJSHeapSize : -1, dom: document.getElementsByTagName("*").length };
})()`, since.UnixMilli()), chromedp.EvalAwaitPromise))
	if err != nil {
		return l, fmt.Errorf("the page's record: %w", err)
	}
	l.Booted, l.Modes, l.HeapMiB, l.DOM = r.Booted, r.Modes, r.Heap/(1<<20), r.DOM
	l.Polled = slices.ContainsFunc(r.Modes, func(m string) bool { return strings.HasPrefix(m, "polling") })
	for _, s := range r.Samples {
		page, host := time.UnixMilli(int64(s.Page)), time.UnixMilli(int64(s.Host))
		l.Lags = append(l.Lags, page.Sub(host))
		if s.Stream > 0 {
			stream := time.UnixMilli(int64(s.Stream))
			l.StreamLags = append(l.StreamLags, stream.Sub(host))
			l.DrawLags = append(l.DrawLags, page.Sub(stream))
		}
		if page.After(l.LastPage) {
			l.LastPage = page
		}
		if host.After(l.LastHost) {
			l.LastHost = host
		}
	}
	slices.Sort(l.Lags)
	slices.Sort(l.StreamLags)
	slices.Sort(l.DrawLags)
	if werr != nil {
		return l, fmt.Errorf("%d of %d tiles booted on the page: %w", l.Booted, want, werr)
	}
	return l, nil
}

// waitJS polls js in the page until it answers true, every 10 ms: it
// times first renders.
func waitJS(js string) chromedp.Action[chromedp.Void] {
	return consoletest.PollJS(js, 10*time.Millisecond)
}

// consoleReport is what -console prints after the storm with the page.
type consoleReport struct {
	Idle, Storm floorLoad
	StormErr    error
	OpenedAt    time.Duration // after the power-on
	Live        liveness
	LiveErr     error
	// BrowserCPU is the CPU seconds chromium used during the storm, on
	// the same cores as the host and the machines.
	BrowserCPU float64
}

func (r consoleReport) print(w io.Writer, n int) {
	fmt.Fprintf(w, "\n== console: the floor in chromium, signed in as an admin, watching the storm\n")
	line := func(what string, f floorLoad) {
		fmt.Fprintf(w, "%-32s %8.0f ms  %5d tiles  JS heap %6.1f MiB  %6d DOM elements", what, f.RenderedMs, f.Tiles, f.HeapMiB, f.DOM)
	}
	line("first render, idle host", r.Idle)
	fmt.Fprintln(w)
	if r.OpenedAt < 0 {
		fmt.Fprintln(w, "first render, mid-storm: not measured (-console-at below 0)")
	} else if r.StormErr != nil {
		fmt.Fprintf(w, "first render, mid-storm: %v\n", r.StormErr)
	} else {
		line("first render, mid-storm", r.Storm)
		fmt.Fprintf(w, "  (opened %.2f s after power-on, %d → %d of %d booted meanwhile)\n", r.OpenedAt.Seconds(), r.Storm.BootedAtStart, r.Storm.BootedAtRender, n)
		fmt.Fprintf(w, "%-32s %8s\n", "first render, mid-storm / idle", ratio(r.Storm.RenderedMs, r.Idle.RenderedMs))
	}
	l := r.Live
	if r.LiveErr != nil {
		fmt.Fprintf(w, "liveness: %v\n", r.LiveErr)
	}
	if len(l.Lags) > 0 {
		fmt.Fprintf(w, "host session end → tile booted, %d tiles: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n",
			len(l.Lags), ms(percentile(l.Lags, 50)), ms(percentile(l.Lags, 90)), ms(percentile(l.Lags, 99)), ms(l.Lags[len(l.Lags)-1]))
		dist := func(what string, ds []time.Duration) {
			if len(ds) > 0 {
				fmt.Fprintf(w, "  %-40s p50 %s ms, p90 %s ms, p99 %s ms, max %s ms\n", what,
					ms(percentile(ds, 50)), ms(percentile(ds, 90)), ms(percentile(ds, 99)), ms(ds[len(ds)-1]))
			}
		}
		dist("of which host → event in the page:", l.StreamLags)
		dist("and event in the page → tile drawn:", l.DrawLags)
		fmt.Fprintf(w, "last boot ended on the host → the page's booted count at %d: %s ms\n", l.Booted, ms(l.LastPage.Sub(l.LastHost)))
	}
	fmt.Fprintf(w, "watching page after the storm: JS heap %.1f MiB, %d DOM elements; stream indicator %s; fell back to polling: %v\n",
		l.HeapMiB, l.DOM, strings.Join(l.Modes, " → "), l.Polled)
	fmt.Fprintf(w, "chromium's CPU during the storm (the same cores as the host and the machines): %.2f s\n", r.BrowserCPU)
}

// idleFloor opens the console on the idle host (every client declared,
// none booting) and loads the floor twice, the second measured (the first
// warms the host's and the browser's caches, as an operator's second
// look), then starts recording the storm in that tab.
func idleFloor(ctx context.Context, h *dlsHost, n int) (*consolePage, floorLoad, error) {
	url := "http://" + h.serverIP + ":9180"
	p, err := openConsole(ctx, h.ns, url, h.consolePassword, n)
	if err != nil {
		return nil, floorLoad{}, err
	}
	// The watching tab also notes when each booted event arrives from the
	// stream (a listener of its own on the page's EventSource, before the
	// page's): the lag splits into host → page and page → tile.
	tctx, cancel := context.WithTimeout(p.tab, 30*time.Second)
	err = chromedp.Do(tctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: streamNotes})
		return err
	}))
	cancel()
	if err != nil {
		p.close()
		return nil, floorLoad{}, fmt.Errorf("note the stream's arrivals: %w", err)
	}
	var f floorLoad
	for i, tag := range []string{"idle-warm", "idle"} {
		if f, err = p.load(ctx, p.tab, tag, nil); err != nil {
			p.close()
			return nil, f, err
		}
		if i == 1 {
			logf("console: the floor's first render on the idle host: %.0f ms, %d tiles", f.RenderedMs, f.Tiles)
		}
	}
	if err := p.watch(ctx); err != nil {
		p.close()
		return nil, f, fmt.Errorf("watch the floor: %w", err)
	}
	return p, f, nil
}

// streamNotes wraps the page's EventSource: each client's first booted
// session event is noted with its arrival time in window.stormStream.
const streamNotes = `(() => {
	const ES = window.EventSource;
	window.stormStream = {};
	window.EventSource = class extends ES {
		constructor(...args) {
			super(...args);
			this.addEventListener("session", (ev) => {
				const e = JSON.parse(ev.data);
				if (e.state === "booted" && !(e.client in window.stormStream)) window.stormStream[e.client] = Date.now();
			});
		}
	};
})();`

// stormFloor opens the floor in a second tab -console-at after the
// power-on (0: half the ramp, at least 1 s; below 0: never, answering
// -1), while the first tab keeps watching.
func stormFloor(ctx context.Context, p *consolePage, start time.Time, o options, done interface{ Load() int64 }) (time.Duration, floorLoad, error) {
	at := o.consoleAt
	if at < 0 {
		return -1, floorLoad{}, nil
	}
	if at == 0 {
		at = max(o.ramp/2, time.Second)
	}
	if !sleep(ctx, time.Until(start.Add(at))) {
		return 0, floorLoad{}, ctx.Err()
	}
	opened := time.Since(start)
	tab, cancel := chromedp.NewContext(p.tab)
	defer cancel()
	f, err := p.load(ctx, tab, "storm", done.Load)
	if err == nil {
		logf("console: the floor's first render %.2f s into the storm: %.0f ms, %d tiles", opened.Seconds(), f.RenderedMs, f.Tiles)
	}
	return opened, f, err
}
