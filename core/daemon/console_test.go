package daemon

// The console in a real browser: Debian's chromium, headless, driven by
// chromedp, against a whole host (real API, store, sessions, local auth
// plugin) with clients declared in its config. Boot events are reported to
// the host as plugins report them; no QEMU. Skipped when chromium is not
// installed (.ci/run installs it).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dls-project/dls/sdk/host"
)

// chromium finds the browser, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("a real browser: not in -short")
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (apt-get install chromium)")
	return ""
}

// artifacts is where screenshots go: $DLS_E2E_ARTIFACTS, or e2e/artifacts
// of the repository (kept after the test, ignored by git).
func artifacts(t *testing.T, sub string) string {
	t.Helper()
	dir := os.Getenv("DLS_E2E_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "e2e", "artifacts")
	}
	dir, err := filepath.Abs(filepath.Join(dir, sub))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser starts a headless chromium and answers a tab's context.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("enable-precise-memory-info", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs browser actions with a deadline, naming the step on failure.
func run(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(tctx, actions...); err != nil {
		failPage(t, ctx, step, err)
	}
}

// value runs one browser action that answers a value.
func value[T any](t *testing.T, ctx context.Context, step string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		failPage(t, ctx, step, err)
	}
	return v
}

func failPage(t *testing.T, ctx context.Context, step string, err error) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	page, _ := chromedp.Run(pctx, chromedp.Evaluate[string](`document.body.innerText.slice(0, 2000)`))
	t.Fatalf("%s: %v\npage: %s", step, err, page)
}

// eval evaluates js, awaiting the promise it may answer.
func eval[T any](js string) chromedp.Action[T] {
	return chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise)
}

// waitJS polls js until it answers true.
func waitJS(js string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		for {
			ok, err := chromedp.Evaluate[bool](js)(ctx, tg)
			if err != nil || ok {
				return chromedp.Void{}, err
			}
			select {
			case <-ctx.Done():
				return chromedp.Void{}, fmt.Errorf("waiting for %s: %w", js, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// css is a CSS selector.
type css = chromedp.CSS

func signInAs(t *testing.T, ctx context.Context, url, user, password string) {
	t.Helper()
	run(t, ctx, "sign in as "+user,
		chromedp.Navigate(url+"/#/floor"),
		chromedp.WaitVisible(css(`#signin input[name="username"]`)),
		chromedp.SendKeys(css(`#signin input[name="username"]`), user),
		chromedp.SendKeys(css(`#signin input[name="password"]`), password),
		chromedp.Click(css(`#signin button[type="submit"]`)),
		chromedp.WaitVisible(css(`.tile`)),
	)
}

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "sign out",
		chromedp.Click(css(`#signout`)),
		chromedp.WaitVisible(css(`#signin input[name="username"]`)))
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	fmt.Fprintf(os.Stderr, "console screenshot: %s\n", path)
}

// TestConsoleInBrowser: sign in; the floor shows the config's clients as
// tiles grouped by room; boot events move a tile to booted without a
// reload; an operator wakes and resets a client and the audit log shows
// it; a viewer sees no action and a forged POST with their cookie is
// refused (403); an admin sees the images page.
func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t, 1280, 900)
	img := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(img, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	h := start(t, fmt.Sprintf(`
auth "local" "users" {
  config {
    hash_memory_kib = 8192
    hash_iterations = 1
  }
}
storage "file" "files" {}
image "lab" {
  storage = "files"
  source  = %q
}
client "pc-01" {
  mac    = "52:54:00:00:00:01"
  image  = "lab"
  labels = { room = "r1" }
}
client "pc-02" {
  mac    = "52:54:00:00:00:02"
  image  = "lab"
  labels = { room = "r1" }
}
client "pc-03" {
  mac    = "52:54:00:00:00:03"
  image  = "lab"
  labels = { room = "r2" }
}
client "teacher" {
  mac   = "52:54:00:00:00:04"
  image = "lab"
}
`, img))
	h.waitFor(20*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	h.d.mu.Lock()
	p := h.d.instances["users"].sup.Process()
	h.d.mu.Unlock()
	for _, u := range [][3]string{{"oscar", "operator pass 1", "operator"}, {"vera", "viewer pass 1", "viewer"}, {"alice", "admin pass 1", "admin"}} {
		if err := createUser(p, u[0], u[1], u[2]); err != nil {
			t.Fatal(err)
		}
	}
	dir := artifacts(t, "console")

	// The operator's floor.
	signInAs(t, ctx, h.url, "oscar", "operator pass 1")
	groups := value(t, ctx, "floor groups", eval[[]string](`[...document.querySelectorAll("section.group")].map(s => s.dataset.group + ":" + s.querySelectorAll(".tile").length)`))
	state := value(t, ctx, "pc-01 state", eval[string](`document.querySelector('.tile[data-client="pc-01"]').dataset.state`))
	if strings.Join(groups, " ") != "r1:2 r2:1 :1" || state != "off" {
		t.Fatalf("floor groups %v, pc-01 %q: want r1:2 r2:1 :1 (no room last), off", groups, state)
	}
	// A mark that a reload would wipe.
	run(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.noReload = 1`),
		chromedp.WaitVisible(css(`.live[data-live="stream"]`)))

	// One boot, as the plugins report it: each stage shows on the tile.
	t0 := time.Now().Add(-10 * time.Second)
	firmware := map[string]string{host.AttrVendorClass: "PXEClient:Arch:00000:UNDI:002001"}
	for _, step := range []struct {
		ev    host.Event
		state string
	}{
		{host.Event{Type: host.EventDHCPDiscover, MAC: "52:54:00:00:00:01", Time: t0, Attrs: firmware}, "dhcp"},
		{host.Event{Type: host.EventScriptServed, Client: "pc-01", MAC: "52:54:00:00:00:01", Address: "192.0.2.21", Time: t0.Add(1500 * time.Millisecond)}, "script"},
		{host.Event{Type: host.EventISCSILogin, Client: "pc-01", Time: t0.Add(2 * time.Second)}, "iscsi_login"},
		{host.Event{Type: host.EventISCSIHandoff, Client: "pc-01", Time: t0.Add(7 * time.Second)}, "booted"},
	} {
		sent := time.Now()
		if err := h.d.services.Report(t.Context(), []host.Event{step.ev}); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, "tile to "+step.state, waitJS(`!!document.querySelector('.tile[data-client="pc-01"][data-state="`+step.state+`"]')`))
		t.Logf("%s on the tile %v after the event", step.state, time.Since(sent).Round(time.Millisecond))
	}
	booted := value(t, ctx, "booted count", eval[string](`document.querySelector('.counts li[data-state="booted"]').dataset.count`))
	marked := value(t, ctx, "no reload", eval[string](`String(window.noReload)`))
	if booted != "1" || marked != "1" {
		t.Errorf("booted count %q, mark %q: want 1 booted and no reload", booted, marked)
	}
	screenshot(t, ctx, dir, "floor.png")

	// The client's page: its boot as a bar of stage segments; wake, reset.
	run(t, ctx, "client page",
		chromedp.Click(css(`.tile[data-client="pc-01"]`)),
		chromedp.WaitVisible(css(`.boot .seg`)))
	segs := value(t, ctx, "segments", eval[[]string](`[...document.querySelectorAll(".boot .seg")].map(s => s.dataset.stage)`))
	if strings.Join(segs, " ") != "dhcp script iscsi_login handoff" {
		t.Errorf("timeline segments %v", segs)
	}
	screenshot(t, ctx, dir, "client-timeline.png")
	notice := func(text string) chromedp.Action[chromedp.Void] {
		return waitJS(`(n => !n.hidden && n.textContent.includes(` + "`" + text + "`" + `))(document.getElementById("notice"))`)
	}
	run(t, ctx, "wake and reset",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(css(`#act-wake`)),
		notice("magic packet sent"),
		chromedp.Click(css(`#act-reset`)),
		notice("fresh clone"),
		chromedp.Navigate(h.url+"/#/audit?q=pc-01"),
		chromedp.WaitVisible(css(`#audit-filter`)))
	actions := value(t, ctx, "audit", eval[[]string](`[...document.querySelectorAll("tbody tr")].map(r => r.dataset.action + " " + r.children[1].textContent)`))
	joined := strings.Join(actions, ", ")
	if !strings.Contains(joined, "client.wake oscar") || !strings.Contains(joined, "client.volume_reset oscar") {
		t.Errorf("audit filtered on pc-01: %s; want oscar's client.wake and client.volume_reset", joined)
	}
	signOut(t, ctx)

	// A viewer: no action on the page, and the server refuses anyway.
	signInAs(t, ctx, h.url, "vera", "viewer pass 1")
	run(t, ctx, "viewer's client page",
		chromedp.Navigate(h.url+"/#/client/pc-01"),
		chromedp.WaitVisible(css(`.boot .seg`)))
	if n := value(t, ctx, "viewer's buttons", eval[int](`document.querySelectorAll("main button, main form.actions, main #act-image").length`)); n != 0 {
		t.Errorf("a viewer's client page has %d buttons or action forms", n)
	}
	forged := value(t, ctx, "forged POST", eval[int](`fetch("/api/v1/clients/pc-01/wake", {method: "POST"}).then(r => r.status)`))
	withToken := value(t, ctx, "viewer's POST", eval[int](`fetch("/api/v1/auth/session").then(r => r.json()).then(s =>
		fetch("/api/v1/clients/pc-01/wake", {method: "POST", headers: {"X-CSRF-Token": s.csrf_token}})).then(r => r.status)`))
	if forged != 403 || withToken != 403 {
		t.Errorf("viewer's POST without CSRF token: %d, with it: %d; want 403 (CSRF) and 403 (role)", forged, withToken)
	}
	signOut(t, ctx)

	// An admin's images page.
	signInAs(t, ctx, h.url, "alice", "admin pass 1")
	run(t, ctx, "images",
		chromedp.Navigate(h.url+"/#/images"),
		chromedp.WaitVisible(css(`section[data-image="lab"] tr[data-version="1"]`)))
	if n := value(t, ctx, "promote forms", eval[int](`document.querySelectorAll("section[data-image=lab] form.promote").length`)); n != 1 {
		t.Errorf("admin's images page has %d promote forms, want 1", n)
	}
	screenshot(t, ctx, dir, "images.png")
}

// TestConsoleFloorAtScale measures the floor with many clients (set
// DLS_CONSOLE_FLOOR_N, e.g. 1000; skipped otherwise): time to the first
// render from navigation, the page's JS heap and DOM size, then a storm of
// boot events for every client at once (each stage one batch of N events,
// as plugins batch them) and the time until the page counts them all
// booted, and whether the stream kept up (no fallback to polling). It
// reports figures; it asserts only that every tile got there.
func TestConsoleFloorAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DLS_CONSOLE_FLOOR_N"))
	if n <= 0 {
		t.Skip("set DLS_CONSOLE_FLOOR_N=1000 to measure the floor at that many clients")
	}
	ctx := browser(t, 1280, 900)
	img := filepath.Join(t.TempDir(), "lab.img")
	if err := os.WriteFile(img, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "auth \"local\" \"users\" {\n  config {\n    hash_memory_kib = 8192\n    hash_iterations = 1\n  }\n}\n"+
		"storage \"file\" \"files\" {}\nimage \"lab\" {\n  storage = \"files\"\n  source  = %q\n}\n", img)
	mac := func(i int) string { return fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff) }
	for i := range n {
		fmt.Fprintf(&cfg, "client \"pc-%04d\" {\n  mac = %q\n  image = \"lab\"\n  labels = { room = \"r%02d\" }\n}\n", i, mac(i), i/40)
	}
	h := start(t, cfg.String())
	h.waitFor(120*time.Second, "ready", func() bool { c, _ := h.readyz(); return c == 200 })
	h.d.mu.Lock()
	p := h.d.instances["users"].sup.Process()
	h.d.mu.Unlock()
	if err := createUser(p, "vera", "viewer pass 1", "viewer"); err != nil {
		t.Fatal(err)
	}
	signInAs(t, ctx, h.url, "vera", "viewer pass 1")
	// A fresh navigation, signed in: what an operator opening the page sees.
	for i := range 2 { // the second load is measured: the first warms the host's caches
		// A new query string: a real page load, not a fragment change.
		run(t, ctx, "reload the floor", chromedp.Navigate(fmt.Sprintf("%s/?load=%d#/floor", h.url, i)),
			waitJS(fmt.Sprintf(`document.body.dataset.floorTiles === "%d"`, n)))
	}
	run(t, ctx, "floor live",
		waitJS(fmt.Sprintf(`document.body.dataset.floorTiles === "%d"`, n)),
		chromedp.WaitVisible(css(`.live[data-live="stream"]`)))
	modulesAt := value(t, ctx, "modules", eval[string](`document.body.dataset.modulesAt`))
	signedInAt := value(t, ctx, "whoami", eval[string](`document.body.dataset.signedInAt`))
	renderedAt := value(t, ctx, "render time", eval[string](`document.body.dataset.floorRenderedAt`))
	renderMs := value(t, ctx, "render cost", eval[string](`document.body.dataset.floorRenderMs`))
	heap := value(t, ctx, "heap", eval[float64](`performance.memory ? performance.memory.usedJSHeapSize : -1`))
	nodes := value(t, ctx, "DOM nodes", eval[int](`document.getElementsByTagName("*").length`))
	floorMs := value(t, ctx, "GET floor", eval[float64](`(async () => { const t = performance.now(); await (await fetch("/api/v1/floor")).json(); return performance.now() - t })()`))
	t.Logf("floor of %d tiles: first render %s ms after navigation (modules loaded at %s ms, GET auth/session answered at %s ms; %s ms from the view's start, GET floor included); JS heap %.1f MiB; %d DOM elements; GET floor alone %.0f ms",
		n, renderedAt, modulesAt, signedInAt, renderMs, heap/(1<<20), nodes, floorMs)

	// The storm.
	t0 := time.Now()
	firmware := map[string]string{host.AttrVendorClass: "PXEClient:Arch:00000:UNDI:002001"}
	for s, typ := range []string{host.EventDHCPDiscover, host.EventScriptServed, host.EventISCSILogin, host.EventISCSIHandoff} {
		evs := make([]host.Event, n)
		for i := range n {
			evs[i] = host.Event{Type: typ, MAC: mac(i), Client: fmt.Sprintf("pc-%04d", i), Time: t0.Add(time.Duration(s) * time.Second)}
			if typ == host.EventDHCPDiscover {
				evs[i].Client, evs[i].Attrs = "", firmware
			}
		}
		if err := h.d.services.Report(t.Context(), evs); err != nil {
			t.Fatal(err)
		}
	}
	reported := time.Since(t0)
	run(t, ctx, "every tile booted", waitJS(fmt.Sprintf(`document.querySelectorAll('.tile[data-state="booted"]').length === %d`, n)))
	mode := value(t, ctx, "live mode", eval[string](`document.querySelector(".live").dataset.live`))
	heap2 := value(t, ctx, "heap after", eval[float64](`performance.memory ? performance.memory.usedJSHeapSize : -1`))
	t.Logf("storm: %d boots × 4 stages reported in %v; every tile booted %v after the first event; stream mode after: %s; JS heap %.1f MiB",
		n, reported.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), mode, heap2/(1<<20))
}
