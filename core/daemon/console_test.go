package daemon

// The console in a real browser: Debian's chromium, headless, driven by
// chromedp, against a whole host (real API, store, sessions, local auth
// plugin) with clients declared in its config. Boot events are reported to
// the host as plugins report them; no QEMU. Skipped when chromium is not
// installed (.ci/run installs it).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/dls-project/dls/core/console/consoletest"
	"github.com/dls-project/dls/sdk/host"
)

// TestConsoleInBrowser: sign in; the floor shows the config's clients as
// tiles grouped by room; boot events move a tile to booted without a
// reload; an operator wakes and resets a client and the audit log shows
// it; a viewer sees no action and a forged POST with their cookie is
// refused (403); an admin sees the images page.
func TestConsoleInBrowser(t *testing.T) {
	ctx := consoletest.Start(t, 1280, 900, nil)
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
  labels = { room = "r1", ring = "canary" }
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
	dir := consoletest.Artifacts(t, filepath.Join("..", "..", "e2e", "artifacts"), "console")

	// The operator's floor.
	consoletest.SignIn(t, ctx, h.url, "oscar", "operator pass 1")
	groups := consoletest.Value(t, ctx, "floor groups", consoletest.Eval[[]string](`[...document.querySelectorAll("section.group")].map(s => s.dataset.group + ":" + s.querySelectorAll(".tile").length)`))
	state := consoletest.Value(t, ctx, "pc-01 state", consoletest.Eval[string](`document.querySelector('.tile[data-client="pc-01"]').dataset.state`))
	if strings.Join(groups, " ") != "r1:2 r2:1 :1" || state != "off" {
		t.Fatalf("floor groups %v, pc-01 %q: want r1:2 r2:1 :1 (no room last), off", groups, state)
	}
	// A mark that a reload would wipe.
	consoletest.Do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.noReload = 1`),
		chromedp.WaitVisible(consoletest.CSS(`.live[data-live="stream"]`)))

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
		consoletest.Do(t, ctx, "tile to "+step.state, consoletest.WaitJS(`!!document.querySelector('.tile[data-client="pc-01"][data-state="`+step.state+`"]')`))
		t.Logf("%s on the tile %v after the event", step.state, time.Since(sent).Round(time.Millisecond))
	}
	booted := consoletest.Value(t, ctx, "booted count", consoletest.Eval[string](`document.querySelector('.counts li[data-state="booted"]').dataset.count`))
	marked := consoletest.Value(t, ctx, "no reload", consoletest.Eval[string](`String(window.noReload)`))
	if booted != "1" || marked != "1" {
		t.Errorf("booted count %q, mark %q: want 1 booted and no reload", booted, marked)
	}
	consoletest.Screenshot(t, ctx, dir, "floor.png")

	// Keyboard: tiles are links in the tab order; arrows move between them.
	consoletest.Do(t, ctx, "arrow keys",
		chromedp.Focus(consoletest.CSS(`.tile[data-client="pc-01"]`)),
		chromedp.KeyEvent(kb.ArrowRight))
	if got := consoletest.Value(t, ctx, "focus", consoletest.Eval[string](`document.activeElement.dataset.client || ""`)); got != "pc-02" {
		t.Errorf("ArrowRight from pc-01 focused %q, want pc-02", got)
	}
	// Dark, as the system prefers; then a phone's width: nothing wider
	// than the screen.
	dark := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	})
	consoletest.Do(t, ctx, "dark", dark)
	if bg := consoletest.Value(t, ctx, "dark background", consoletest.Eval[string](`getComputedStyle(document.body).backgroundColor`)); bg != "rgb(21, 23, 26)" {
		t.Errorf("dark background %s, want rgb(21, 23, 26)", bg)
	}
	consoletest.Screenshot(t, ctx, dir, "floor-dark.png")
	consoletest.Do(t, ctx, "phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile))
	if w := consoletest.Value(t, ctx, "page width", consoletest.Eval[int](`document.documentElement.scrollWidth`)); w > 390 {
		t.Errorf("at 390 px wide the page is %d px wide", w)
	}
	consoletest.Screenshot(t, ctx, dir, "floor-phone.png")
	consoletest.Do(t, ctx, "desktop, light", chromedp.EmulateViewport(1280, 900), chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
		return err
	}))

	// The client's page: its boot as a bar of stage segments; wake, reset.
	consoletest.Do(t, ctx, "client page",
		chromedp.Click(consoletest.CSS(`.tile[data-client="pc-01"]`)),
		chromedp.WaitVisible(consoletest.CSS(`.boot .seg`)))
	segs := consoletest.Value(t, ctx, "segments", consoletest.Eval[[]string](`[...document.querySelectorAll(".boot .seg")].map(s => s.dataset.stage)`))
	if strings.Join(segs, " ") != "dhcp script iscsi_login handoff" {
		t.Errorf("timeline segments %v", segs)
	}
	consoletest.Screenshot(t, ctx, dir, "client-timeline.png")
	notice := func(text string) chromedp.Action[chromedp.Void] {
		return consoletest.WaitJS(`(n => !n.hidden && n.textContent.includes(` + "`" + text + "`" + `))(document.getElementById("notice"))`)
	}
	consoletest.Do(t, ctx, "wake and reset",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(consoletest.CSS(`#act-wake`)),
		notice("magic packet sent"),
		chromedp.Click(consoletest.CSS(`#act-reset`)),
		notice("fresh clone"),
		chromedp.Navigate(h.url+"/#/audit?q=pc-01"),
		chromedp.WaitVisible(consoletest.CSS(`#audit-filter`)))
	actions := consoletest.Value(t, ctx, "audit", consoletest.Eval[[]string](`[...document.querySelectorAll("tbody tr")].map(r => r.dataset.action + " " + r.children[1].textContent)`))
	joined := strings.Join(actions, ", ")
	if !strings.Contains(joined, "client.wake oscar") || !strings.Contains(joined, "client.volume_reset oscar") {
		t.Errorf("audit filtered on pc-01: %s; want oscar's client.wake and client.volume_reset", joined)
	}

	// The boot-time chart: 24 hours, pc-01's boot of 7 s in this hour.
	consoletest.Do(t, ctx, "boot times",
		chromedp.Navigate(h.url+"/#/boots"),
		chromedp.WaitVisible(consoletest.CSS(`.chart .col`)))
	cols := consoletest.Value(t, ctx, "chart", consoletest.Eval[int](`document.querySelectorAll(".chart .col").length`))
	row := consoletest.Value(t, ctx, "chart table", consoletest.Eval[string](`[...document.querySelectorAll("tbody tr:first-child td")].map(td => td.textContent).slice(1).join(" ")`))
	if cols != 24 || !strings.HasPrefix(row, "1 0 0 7.0 s 7.0 s") {
		t.Errorf("boot times: %d columns, latest hour %q; want 24, and 1 boot of 7 s", cols, row)
	}
	consoletest.Screenshot(t, ctx, dir, "boot-times.png")
	consoletest.SignOut(t, ctx)

	// A viewer: no action on the page, and the server refuses anyway.
	consoletest.SignIn(t, ctx, h.url, "vera", "viewer pass 1")
	consoletest.Do(t, ctx, "viewer's client page",
		chromedp.Navigate(h.url+"/#/client/pc-01"),
		chromedp.WaitVisible(consoletest.CSS(`.boot .seg`)))
	if n := consoletest.Value(t, ctx, "viewer's buttons", consoletest.Eval[int](`document.querySelectorAll("main button, main form.actions, main #act-image").length`)); n != 0 {
		t.Errorf("a viewer's client page has %d buttons or action forms", n)
	}
	forged := consoletest.Value(t, ctx, "forged POST", consoletest.Eval[int](`fetch("/api/v1/clients/pc-01/wake", {method: "POST"}).then(r => r.status)`))
	withToken := consoletest.Value(t, ctx, "viewer's POST", consoletest.Eval[int](`fetch("/api/v1/auth/session").then(r => r.json()).then(s =>
		fetch("/api/v1/clients/pc-01/wake", {method: "POST", headers: {"X-CSRF-Token": s.csrf_token}})).then(r => r.status)`))
	if forged != 403 || withToken != 403 {
		t.Errorf("viewer's POST without CSRF token: %d, with it: %d; want 403 (CSRF) and 403 (role)", forged, withToken)
	}
	consoletest.SignOut(t, ctx)

	// An admin's images page.
	consoletest.SignIn(t, ctx, h.url, "alice", "admin pass 1")
	consoletest.Do(t, ctx, "images",
		chromedp.Navigate(h.url+"/#/images"),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="lab"] tr[data-version="1"]`)))
	if n := consoletest.Value(t, ctx, "promote forms", consoletest.Eval[int](`document.querySelectorAll("section[data-image=lab] form.promote").length`)); n != 1 {
		t.Errorf("admin's images page has %d promote forms, want 1", n)
	}
	consoletest.Screenshot(t, ctx, dir, "images.png")

	// Maintenance: the teacher's PC prepares the next version; the admin
	// promotes it, and the images page shows v2 current.
	consoletest.Do(t, ctx, "maintenance",
		chromedp.Navigate(h.url+"/#/client/teacher"),
		chromedp.WaitVisible(consoletest.CSS(`#act-maintenance-start`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(consoletest.CSS(`#act-maintenance-start`)),
		chromedp.WaitVisible(consoletest.CSS(`#act-maintenance-promote`)))
	consoletest.Screenshot(t, ctx, dir, "client-maintenance.png")
	consoletest.Do(t, ctx, "promote",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(consoletest.CSS(`#act-maintenance-promote`)),
		chromedp.WaitVisible(consoletest.CSS(`#act-maintenance-start`)),
		chromedp.Navigate(h.url+"/#/images"),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="lab"] tr[data-version="2"][data-current="true"]`)))

	// A staged rollout: v3 to the ring=canary clients (pc-02) first, then
	// to everyone.
	code, body := h.do("POST", "/api/v1/auth/login", "", `{"username":"alice","password":"admin pass 1"}`)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &tok); code != 200 || err != nil {
		t.Fatalf("login: %d %s", code, body)
	}
	for _, call := range [][3]string{{"POST", "/api/v1/images/lab/versions", `{"action":"snapshot"}`}, {"PUT", "/api/v1/images/lab/versions/current", `{"version":2}`}} {
		if code, body := h.do(call[0], call[1], tok.AccessToken, call[2]); code/100 != 2 {
			t.Fatalf("%s %s: %d %s", call[0], call[1], code, body)
		}
	}
	consoletest.Do(t, ctx, "rollout",
		chromedp.Navigate(h.url+"/?r=1#/images"),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="lab"] form.rollout`)),
		chromedp.SetValue(consoletest.CSS(`section[data-image="lab"] form.rollout select`), "3"),
		chromedp.Click(consoletest.CSS(`section[data-image="lab"] form.rollout button`)),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="lab"] .rollout[data-stage="ring"][data-version="3"]`)))
	consoletest.Screenshot(t, ctx, dir, "images-rollout.png")
	consoletest.Do(t, ctx, "canary tile",
		chromedp.Navigate(h.url+"/#/floor"),
		consoletest.WaitJS(`(document.querySelector('.tile[data-client="pc-02"] .img') || {}).textContent === "lab v3 (rollout)"`),
		consoletest.WaitJS(`document.querySelector('.tile[data-client="pc-01"] .img').textContent === "lab v2"`),
		chromedp.Navigate(h.url+"/#/images"),
		chromedp.WaitVisible(consoletest.CSS(`.rollout-complete`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(consoletest.CSS(`.rollout-complete`)),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="lab"] tr[data-version="3"][data-current="true"]`)))
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
	ctx := consoletest.Start(t, 1280, 900, nil)
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
	consoletest.SignIn(t, ctx, h.url, "vera", "viewer pass 1")
	// A fresh navigation, signed in: what an operator opening the page sees.
	for i := range 2 { // the second load is measured: the first warms the host's caches
		// A new query string: a real page load, not a fragment change.
		consoletest.Do(t, ctx, "reload the floor", chromedp.Navigate(fmt.Sprintf("%s/?load=%d#/floor", h.url, i)),
			consoletest.WaitJS(fmt.Sprintf(`document.body.dataset.floorTiles === "%d"`, n)))
	}
	consoletest.Do(t, ctx, "floor live",
		consoletest.WaitJS(fmt.Sprintf(`document.body.dataset.floorTiles === "%d"`, n)),
		chromedp.WaitVisible(consoletest.CSS(`.live[data-live="stream"]`)))
	modulesAt := consoletest.Value(t, ctx, "modules", consoletest.Eval[string](`document.body.dataset.modulesAt`))
	signedInAt := consoletest.Value(t, ctx, "whoami", consoletest.Eval[string](`document.body.dataset.signedInAt`))
	renderedAt := consoletest.Value(t, ctx, "render time", consoletest.Eval[string](`document.body.dataset.floorRenderedAt`))
	renderMs := consoletest.Value(t, ctx, "render cost", consoletest.Eval[string](`document.body.dataset.floorRenderMs`))
	heap := consoletest.Value(t, ctx, "heap", consoletest.Eval[float64](`performance.memory ? performance.memory.usedJSHeapSize : -1`))
	nodes := consoletest.Value(t, ctx, "DOM nodes", consoletest.Eval[int](`document.getElementsByTagName("*").length`))
	floorMs := consoletest.Value(t, ctx, "GET floor", consoletest.Eval[float64](`(async () => { const t = performance.now(); await (await fetch("/api/v1/floor")).json(); return performance.now() - t })()`))
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
	consoletest.Do(t, ctx, "every tile booted", consoletest.WaitJS(fmt.Sprintf(`document.querySelectorAll('.tile[data-state="booted"]').length === %d`, n)))
	mode := consoletest.Value(t, ctx, "live mode", consoletest.Eval[string](`document.querySelector(".live").dataset.live`))
	heap2 := consoletest.Value(t, ctx, "heap after", consoletest.Eval[float64](`performance.memory ? performance.memory.usedJSHeapSize : -1`))
	t.Logf("storm: %d boots × 4 stages reported in %v; every tile booted %v after the first event; stream mode after: %s; JS heap %.1f MiB",
		n, reported.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), mode, heap2/(1<<20))
}
