//go:build e2e

// The floor console while a real machine boots (issue 19, acceptance 1):
// Debian's chromium, headless, runs in the host's namespace and drives the
// console with chromedp. An operator signs in; a QEMU machine boots from
// DLS and its tile goes through its stages to booted with no reload; the
// operator wakes and resets it (refused until the iSCSI target has
// noticed the machine is off: within dead_peer_timeout) and the audit log
// shows both; a viewer sees no action and a forged POST is refused; an
// admin sees the images page.
// Screenshots go to $DLS_E2E_ARTIFACTS/console-e2e (default
// e2e/artifacts/console-e2e).

package e2e

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/dls-project/dls/core/console/consoletest"
	"github.com/dls-project/dls/e2e/lab"
)

// browserIn starts chromium in ns, the host's namespace: chromedp talks
// to it over a pipe, which `ip netns exec` passes on.
func browserIn(t *testing.T, ns *lab.NS) context.Context {
	return consoletest.Start(t, 1280, 900, func(cmd *exec.Cmd) {
		argv := ns.Exec(cmd.Args...)
		if p, err := exec.LookPath(argv[0]); err == nil {
			cmd.Path, cmd.Args = p, argv
		}
	})
}

func TestConsole(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("chromium"); err != nil {
		skip(t, "chromium is not installed: make e2e installs it")
	}
	l := newLab(t, "dls-console-")
	root, err := lab.RepoRoot()
	must(t, err)
	bin := filepath.Join(l.Dir, "bin")
	must(t, lab.Build(root, bin))
	img := filepath.Join(l.Dir, "disk.img")
	must(t, lab.Image(root, img))
	ns, err := l.NS("con")
	must(t, err)
	must(t, ns.Bridge("br0", fullIP+"/24"))
	vm, err := l.Machine(ns, "br0", "t-con1", pc1.name, pc1.mac)
	must(t, err)
	_, err = l.Router(ns, "br0")
	must(t, err)
	// Wake-on-LAN for a client without a reserved address goes to
	// 255.255.255.255, which needs a route, as a site's host has.
	must(t, ns.Run("ip", "route", "add", "default", "dev", "br0"))
	host, err := l.StartHost(ns, bin, lab.HostConfig{
		BootIP: fullIP,
		Image:  img,
		Clients: []lab.HostClient{
			{Name: pc1.name, MAC: pc1.mac, Labels: map[string]string{"room": "r1"}},
			{Name: pc2.name, MAC: pc2.mac, Labels: map[string]string{"room": "r2"}},
		},
		DHCP: []lab.HostDHCP{{Name: "lan", Interface: "br0", Mode: "full", ServerIP: fullIP,
			PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: fullIP}},
	}, adminPassword)
	must(t, err)
	must(t, host.UserAddRole("oscar", "e2e operator passphrase", "operator"))
	must(t, host.UserAddRole("vera", "e2e viewer passphrase", "viewer"))
	url := "http://" + lab.HTTPAddr

	ctx := browserIn(t, ns)
	dir := consoletest.Artifacts(t, filepath.Join(root, "e2e", "artifacts"), "console-e2e")

	consoletest.SignIn(t, ctx, url, "oscar", "e2e operator passphrase")
	// Every state pc-1's tile shows, in order; and a mark a reload would
	// wipe.
	consoletest.Do(t, ctx, "watch the tile", chromedp.Evaluate[chromedp.Void](`
		window.noReload = 1;
		window.seen = [];
		const rec = () => {
			const el = document.querySelector('.tile[data-client="pc-1"]');
			const s = el && el.dataset.state;
			if (s && window.seen[window.seen.length - 1] !== s) window.seen.push(s);
		};
		rec();
		new MutationObserver(rec).observe(document.getElementById("view"),
			{subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"]});`),
		chromedp.WaitVisible(consoletest.CSS(`.live[data-live="stream"]`)))

	b, err := vm.Boot(context.Background(), lab.BootOptions{})
	if err != nil {
		t.Fatalf("pc-1 boot: %v\n%s", err, b.Tail(20))
	}
	consoletest.Do(t, ctx, "tile booted", consoletest.WaitJS(`document.querySelector('.tile[data-client="pc-1"]').dataset.state === "booted"`))
	seen := consoletest.Value(t, ctx, "states seen", consoletest.Eval[[]string](`window.seen`))
	marked := consoletest.Value(t, ctx, "no reload", consoletest.Eval[string](`String(window.noReload)`))
	t.Logf("pc-1 booted in %.1fs; its tile showed %s", b.Wall.Seconds(), strings.Join(seen, " → "))
	order := []string{"off", "dhcp", "script", "iscsi_login", "handoff", "booted"}
	last := -1
	for _, s := range seen {
		i := slices.Index(order, s)
		if i <= last {
			t.Errorf("tile states %v: %s out of order", seen, s)
		}
		last = i
	}
	if len(seen) < 4 || seen[0] != "off" || seen[len(seen)-1] != "booted" || marked != "1" {
		t.Errorf("tile states %v (reload mark %q): want off, at least two stages, booted, and no reload", seen, marked)
	}
	consoletest.Screenshot(t, ctx, dir, "floor.png")

	consoletest.Do(t, ctx, "client page",
		chromedp.Click(consoletest.CSS(`.tile[data-client="pc-1"]`)),
		chromedp.WaitVisible(consoletest.CSS(`.boot .seg`)))
	segs := consoletest.Value(t, ctx, "segments", consoletest.Eval[[]string](`[...document.querySelectorAll(".boot .seg")].map(s => s.dataset.stage)`))
	t.Logf("pc-1's timeline: %v", segs)
	consoletest.Screenshot(t, ctx, dir, "client-timeline.png")
	notice := func(text string) chromedp.Action[chromedp.Void] {
		return consoletest.WaitJS(`(n => !n.hidden && n.textContent.includes("` + text + `"))(document.getElementById("notice"))`)
	}
	text := func() string {
		return consoletest.Value(t, ctx, "notice", consoletest.Eval[string](`document.getElementById("notice").textContent`))
	}
	consoletest.Do(t, ctx, "wake",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(consoletest.CSS(`#act-wake`)),
		notice("Wake"))
	msg := text()
	t.Logf("wake: %s", msg)
	// pc-1 powered off without logging out of its target: the target
	// holds the session (and the volume) until it notices, and refuses a
	// reset until then, which the page says. pc-2's volume is free.
	consoletest.Do(t, ctx, "reset pc-1",
		chromedp.Evaluate[chromedp.Void](`document.getElementById("notice").hidden = true`),
		chromedp.Click(consoletest.CSS(`#act-reset`)),
		notice("Reset"))
	t.Logf("reset pc-1 right after its power-off: %s", text())
	consoletest.Do(t, ctx, "reset pc-2",
		chromedp.Navigate(url+"/#/client/pc-2"),
		chromedp.WaitVisible(consoletest.CSS(`h1[data-client="pc-2"]`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(consoletest.CSS(`#act-reset`)),
		notice("fresh clone"))
	msg = text()
	t.Logf("reset pc-2: %s", msg)
	// The target notices that pc-1 is gone within the iSCSI plugin's
	// dead_peer_timeout (default 30 s; TCP keepalive, which iPXE's stack
	// answers while the machine is on) and releases its volume: then
	// pc-1's reset goes through. It used to take about 5 minutes.
	off := b.Start.Add(b.Wall)
	for {
		consoletest.Do(t, ctx, "reset pc-1 again",
			chromedp.Navigate(url+"/#/client/pc-1"),
			chromedp.WaitVisible(consoletest.CSS(`h1[data-client="pc-1"]`)),
			chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; document.getElementById("notice").hidden = true`),
			chromedp.Click(consoletest.CSS(`#act-reset`)),
			notice("Reset"))
		if m := text(); strings.Contains(m, "fresh clone") {
			t.Logf("reset pc-1 %.1fs after its power-off: %s", time.Since(off).Seconds(), m)
			break
		}
		if time.Since(off) > 45*time.Second {
			t.Errorf("pc-1's reset still refused %.0fs after its power-off: %s", time.Since(off).Seconds(), text())
			break
		}
		time.Sleep(2 * time.Second)
	}
	consoletest.Do(t, ctx, "audit",
		chromedp.Navigate(url+"/#/audit?q=oscar"),
		chromedp.WaitVisible(consoletest.CSS(`#audit-filter`)))
	actions := consoletest.Value(t, ctx, "audit rows", consoletest.Eval[[]string](`[...document.querySelectorAll("tbody tr")].map(r => r.dataset.action + " " + r.children[1].textContent + " " + r.children[3].textContent)`))
	joined := strings.Join(actions, ", ")
	if !strings.Contains(joined, "client.wake oscar client/pc-1") || !strings.Contains(joined, "client.volume_reset oscar client/pc-2") || !strings.Contains(joined, "client.volume_reset oscar client/pc-1") {
		t.Errorf("audit filtered on oscar: %s (last notice %q); want oscar's client.wake of pc-1 and client.volume_reset of pc-2 and pc-1", joined, msg)
	}
	consoletest.Screenshot(t, ctx, dir, "audit.png")
	consoletest.SignOut(t, ctx)

	consoletest.SignIn(t, ctx, url, "vera", "e2e viewer passphrase")
	consoletest.Do(t, ctx, "viewer's client page",
		chromedp.Navigate(url+"/#/client/pc-1"),
		chromedp.WaitVisible(consoletest.CSS(`.boot .seg`)))
	if n := consoletest.Value(t, ctx, "viewer's buttons", consoletest.Eval[int](`document.querySelectorAll("main button, main form.actions").length`)); n != 0 {
		t.Errorf("a viewer's client page has %d buttons or action forms", n)
	}
	forged := consoletest.Value(t, ctx, "forged POST", consoletest.Eval[int](`fetch("/api/v1/clients/pc-1/wake", {method: "POST"}).then(r => r.status)`))
	if forged != 403 {
		t.Errorf("viewer's POST without a CSRF token: %d, want 403", forged)
	}
	consoletest.SignOut(t, ctx)

	consoletest.SignIn(t, ctx, url, "admin", adminPassword)
	consoletest.Do(t, ctx, "images",
		chromedp.Navigate(url+"/#/images"),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="e2e"] tr[data-version="1"]`)))
	consoletest.Screenshot(t, ctx, dir, "images.png")
}

// v2Mark is the nonce version 2 of TestRollout's image holds in its
// marker sector: a machine that booted a clone of version 2 prints
// "DLS-MARK seen=00000000 prev=5eed0002"; one of version 1 (a zero marker
// sector) "prev=00000000".
const v2Mark = 0x5eed0002

// markLBA is the boot sector's marker sector (MARK_LBA in
// e2e/testdata/boot.asm).
const markLBA = 64

// markedImage writes a copy of the raw image src to dst whose marker
// sector already holds the boot sector's signature, a count of 0 and the
// nonce mark.
func markedImage(src, dst string, mark uint32) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	sector := b[markLBA*512 : markLBA*512+16]
	copy(sector, "DLSMARK1")
	binary.LittleEndian.PutUint32(sector[8:], 0)
	binary.LittleEndian.PutUint32(sector[12:], mark)
	return os.WriteFile(dst, b, 0o644)
}

// TestRollout: a staged rollout, started and completed from the console,
// reaches the canary first, on real machines. The image "e2e" has version
// 1 (the boot sector) and version 2 (the same with a marker the boot
// sector prints); 1 is current. Two non-persistent QEMU machines use it,
// pc-1 labelled ring=canary in HCL. An admin starts the rollout of v2 to
// ring=canary on the images page; the two machines boot at once: pc-1
// reads v2's marker, pc-2 v1's (none). The admin completes the rollout
// on the page; both boot again and read v2's marker.
func TestRollout(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("chromium"); err != nil {
		skip(t, "chromium is not installed: make e2e installs it")
	}
	l := newLab(t, "dls-rollout-")
	root, err := lab.RepoRoot()
	must(t, err)
	bin := filepath.Join(l.Dir, "bin")
	must(t, lab.Build(root, bin))
	img, img2 := filepath.Join(l.Dir, "disk.img"), filepath.Join(l.Dir, "disk-v2.img")
	must(t, lab.Image(root, img))
	must(t, markedImage(img, img2, v2Mark))
	ns, err := l.NS("ro")
	must(t, err)
	must(t, ns.Bridge("br0", fullIP+"/24"))
	canary, err := l.Machine(ns, "br0", "t-ro1", pc1.name, pc1.mac)
	must(t, err)
	other, err := l.Machine(ns, "br0", "t-ro2", pc2.name, pc2.mac)
	must(t, err)
	_, err = l.Router(ns, "br0")
	must(t, err)
	host, err := l.StartHost(ns, bin, lab.HostConfig{
		BootIP: fullIP,
		Image:  img,
		Clients: []lab.HostClient{
			{Name: pc1.name, MAC: pc1.mac, NotPersistent: true, Labels: map[string]string{"room": "r1", "ring": "canary"}},
			{Name: pc2.name, MAC: pc2.mac, NotPersistent: true, Labels: map[string]string{"room": "r1"}},
		},
		DHCP: []lab.HostDHCP{{Name: "lan", Interface: "br0", Mode: "full", ServerIP: fullIP,
			PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: fullIP}},
	}, adminPassword)
	must(t, err)
	// Version 2, made by the admin's tool; version 1 stays current.
	_, err = host.CLI(adminPassword+"\n", "login", "--user", "admin", "--password-stdin")
	must(t, err)
	_, err = host.CLI("", "image", "import", "e2e", "--source", img2)
	must(t, err)
	_, err = host.CLI("", "image", "current", "e2e", "1")
	must(t, err)
	url := "http://" + lab.HTTPAddr

	ctx := browserIn(t, ns)
	dir := consoletest.Artifacts(t, filepath.Join(root, "e2e", "artifacts"), "console-e2e")
	consoletest.SignIn(t, ctx, url, "admin", adminPassword)
	consoletest.Do(t, ctx, "start the rollout",
		chromedp.Navigate(url+"/#/images"),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="e2e"] tr[data-version="1"][data-current="true"]`)),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="e2e"] form.rollout`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.SetValue(consoletest.CSS(`section[data-image="e2e"] form.rollout select`), "2"),
		chromedp.SetValue(consoletest.CSS(`section[data-image="e2e"] form.rollout input[name="ring"]`), "ring=canary"),
		chromedp.Click(consoletest.CSS(`section[data-image="e2e"] form.rollout button`)),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="e2e"] .rollout[data-stage="ring"][data-version="2"]`)))
	ring := consoletest.Value(t, ctx, "rollout text", consoletest.Eval[string](`document.querySelector('section[data-image="e2e"] .rollout').textContent`))
	t.Logf("images page: %s", ring)
	if !strings.Contains(ring, pc1.name) || strings.Contains(ring, pc2.name) {
		t.Errorf("the rollout's ring, as the images page shows it: %q; want %s only", ring, pc1.name)
	}
	consoletest.Screenshot(t, ctx, dir, "images-rollout.png")
	consoletest.Do(t, ctx, "the ring's tiles",
		chromedp.Navigate(url+"/#/floor"),
		consoletest.WaitJS(`(document.querySelector('.tile[data-client="pc-1"] .img') || {}).textContent === "e2e v2 (rollout)"`),
		consoletest.WaitJS(`document.querySelector('.tile[data-client="pc-2"] .img').textContent === "e2e v1"`))

	// bootBoth boots both machines at once and answers the nonce each
	// found in its marker sector. Each boots a fresh clone (not
	// persistent): a marker count other than 0 is an error.
	bootBoth := func(round string) map[string]uint32 {
		t.Helper()
		var mu sync.Mutex
		var wg sync.WaitGroup
		marks := map[string]uint32{}
		for _, vm := range []*lab.Machine{canary, other} {
			wg.Go(func() {
				b, err := vm.Boot(context.Background(), lab.BootOptions{})
				if err != nil {
					t.Errorf("%s, %s: %v", round, vm.Name, err)
					return
				}
				t.Logf("%s: %s booted in %.1fs, marker seen=%08x prev=%08x", round, vm.Name, b.Wall.Seconds(), b.Seen, b.Prev)
				if b.Seen != 0 {
					t.Errorf("%s: %s's volume was not a fresh clone: its marker counts %d boots", round, vm.Name, b.Seen)
				}
				mu.Lock()
				marks[vm.Name] = b.Prev
				mu.Unlock()
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return marks
	}
	marks := bootBoth("during the rollout")
	if marks[pc1.name] != v2Mark || marks[pc2.name] != 0 {
		t.Errorf("during the rollout: %s read %08x, %s read %08x; want v2's %08x on the canary, v1's 00000000 on the other",
			pc1.name, marks[pc1.name], pc2.name, marks[pc2.name], v2Mark)
	}
	consoletest.Do(t, ctx, "both booted",
		consoletest.WaitJS(`document.querySelectorAll('.tile[data-state="booted"]').length === 2`))
	consoletest.Screenshot(t, ctx, dir, "floor-rollout.png")

	consoletest.Do(t, ctx, "complete the rollout",
		chromedp.Navigate(url+"/#/images"),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="e2e"] .rollout-complete`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(consoletest.CSS(`section[data-image="e2e"] .rollout-complete`)),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="e2e"] tr[data-version="2"][data-current="true"]`)),
		chromedp.WaitVisible(consoletest.CSS(`section[data-image="e2e"] .rollout[data-stage="none"]`)))
	consoletest.Screenshot(t, ctx, dir, "images-rollout-complete.png")
	marks = bootBoth("after complete")
	if marks[pc1.name] != v2Mark || marks[pc2.name] != v2Mark {
		t.Errorf("after complete: %s read %08x, %s read %08x; want v2's %08x on both", pc1.name, marks[pc1.name], pc2.name, marks[pc2.name], v2Mark)
	}
}
