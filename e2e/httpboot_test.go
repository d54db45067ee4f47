//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/e2e/lab"
)

// TestHTTPBoot: UEFI machines whose NIC has no option ROM boot by UEFI
// HTTP boot (OVMF's own network stack, its PXE off) from DLS configured
// without a TFTP plugin, one on a full-mode segment, one on a proxy-mode
// segment beside the site's dnsmasq, at once: DLS's DHCP answers the
// HTTPClient discover with option 60 HTTPClient and the URL of iPXE
// (snponly.efi) under /boot/files, iPXE fetches its script over HTTP,
// sanhooks its clone over iSCSI and boots the Debian kernel, which
// confirms on /boot/done: the full-mode session goes dhcp, ipxe, script,
// iscsi_login, handoff, booted (the proxy-mode one without ipxe: its
// address is not known when it downloads). The full-mode machine boots
// from dnsmasq answering HTTPClient the same way (its dhcp-vendorclass tag
// and a forced option 60), busybox httpd and tgt, for the reference time.
// See README.md.

const (
	hbIP    = "192.168.77.1" // DLS, in the namespace <prefix>-hbdls
	hbRefIP = "192.168.88.1" // the reference, in <prefix>-hbref

	// snponly is Debian's iPXE for UEFI that drives the NIC through the
	// firmware's SNP (a file in /usr/lib/ipxe; ipxe.efi there is a link).
	snponly = "/usr/lib/ipxe/snponly.efi"
)

var (
	hbMachine = lxMachine{name: "hb-uefi", mac: "52:54:00:e2:02:01", uefi: true}  // full mode
	hbProxy   = lxMachine{name: "hb-proxy", mac: "52:54:00:e2:02:02", uefi: true} // proxy mode
)

// hbRun is the state TestHTTPBoot's phases share.
type hbRun struct {
	host  *lab.Host
	vm    map[string]*lab.Machine // DLS's machines by name
	refVM *lab.Machine            // hb-uefi's twin on the reference's segment

	mu    sync.Mutex
	boots []*lxRecord
}

func TestHTTPBoot(t *testing.T) {
	needRoot(t)
	if err := lab.Need("mke2fs", "busybox", "debootstrap"); err != nil {
		skip(t, "%v: make e2e installs e2fsprogs busybox debootstrap", err)
	}
	for _, f := range []string{lab.OVMFCode, lab.OVMFVars, snponly} {
		if _, err := os.Stat(f); err != nil {
			skip(t, "%v: make e2e installs ovmf ipxe", err)
		}
	}
	l := newLab(t, "dls-e2e-httpboot-")
	r := &hbRun{vm: map[string]*lab.Machine{}}
	root, err := lab.RepoRoot()
	must(t, err)
	start := time.Now()
	bin := filepath.Join(l.Dir, "bin")
	must(t, lab.Build(root, bin))
	debian, err := lab.DebianRoot(lab.DebianCache(), t.Logf)
	must(t, err)
	files := filepath.Join(l.Dir, "boot-files")
	image, err := lab.MakeLinuxImage(debian, filepath.Join(root, "e2e", "testdata", "linux-init.sh"), l.Dir, files)
	must(t, err)
	must(t, lab.CopySparse(snponly, filepath.Join(files, "snponly.efi")))
	t.Logf("dls built, Debian root ready, %d MiB image made in %.1fs", image.Size>>20, time.Since(start).Seconds())

	// DLS, without TFTP: full mode on br0, proxy mode on br1 beside the
	// site's dnsmasq.
	ns := twoSegments(t, l, "hb")
	r.vm[hbMachine.name], err = l.Machine(ns, "br0", "t-hb", hbMachine.name, hbMachine.mac)
	must(t, err)
	r.vm[hbProxy.name], err = l.Machine(ns, "br1", "t-hbpx", hbProxy.name, hbProxy.mac)
	must(t, err)
	for _, br := range []string{"br0", "br1"} {
		_, err = l.Router(ns, br)
		must(t, err)
	}
	hostDir := filepath.Join(l.Dir, "dls")
	must(t, os.MkdirAll(hostDir, 0o755))
	cfg, err := lab.WriteHostConfig(hostDir, bin, lab.HostConfig{
		BootIP: hbIP, Files: files, NoTFTP: true,
		Images: []lab.HostImage{{
			Name: "linux", Source: image.Disk,
			Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: lxCmdline, Confirm: true,
		}},
		Clients: []lab.HostClient{
			{Name: hbMachine.name, MAC: hbMachine.mac, Image: "linux"},
			{Name: hbProxy.name, MAC: hbProxy.mac, Image: "linux"},
		},
		DHCP: []lab.HostDHCP{
			{Name: "lan", Interface: "br0", Mode: "full", ServerIP: hbIP,
				PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: hbIP,
				BootFiles: map[string]string{"efi_x64": "snponly.efi"}},
			{Name: "pxe", Interface: "br1", Mode: "proxy", ServerIP: proxyIP,
				BootFiles: map[string]string{"efi_x64": "snponly.efi"}},
		},
	})
	must(t, err)
	text, err := os.ReadFile(cfg)
	must(t, err)
	if strings.Contains(string(text), `protocol "tftp"`) {
		t.Fatalf("the config has a TFTP plugin:\n%s", text)
	}
	// dls validate --deep passes a site without TFTP: the UEFI first stage
	// is in boot.files (a note says only UEFI HTTP boot clients get it).
	out, err := ns.Command(filepath.Join(bin, "dls"), "validate", "--deep", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deep checks passed") || !strings.Contains(string(out), "served from boot.files") {
		t.Errorf("dls validate --deep of the TFTP-less config: %v\n%s", err, out)
	} else {
		t.Logf("dls validate --deep:\n%s", out)
	}
	r.host = l.OpenHost(ns, bin, hostDir, cfg)
	must(t, r.host.UserAdd("admin", adminPassword))
	must(t, r.host.Start())
	if m := mustScrape(t, r.host); strings.Contains(m, "dls-protocol-tftp") || strings.Contains(m, `plugin="boot"`) {
		t.Errorf("a TFTP plugin runs:\n%s", grepLines(m, "tftp"))
	}

	// The reference: dnsmasq answering HTTPClient with the URL of
	// snponly.efi and iPXE with its script, busybox httpd, tgt.
	refNS, err := l.NS("hbref")
	must(t, err)
	must(t, refNS.Bridge("brr", hbRefIP+"/24"))
	_, err = l.Router(refNS, "brr")
	must(t, err)
	refs, err := l.ReferenceServers(refNS, "brr", hbRefIP)
	must(t, err)
	web := filepath.Join(l.Dir, "reference-http")
	must(t, os.MkdirAll(web, 0o755))
	for src, dst := range map[string]string{
		snponly: "snponly.efi", filepath.Join(files, "linux", "vmlinuz"): "vmlinuz", filepath.Join(files, "linux", "initrd.img"): "initrd.img",
	} {
		must(t, lab.CopySparse(src, filepath.Join(web, dst)))
	}
	disk := filepath.Join(l.Dir, "reference-"+hbMachine.name+".img")
	must(t, lab.CopySparse(image.Disk, disk))
	must(t, refs.AddTarget(1, refTarget(hbMachine), disk))
	script := fmt.Sprintf("#!ipxe\nset initiator-iqn %s:initiator:%s\nsanhook iscsi:%s:::1:%s\nkernel http://%[3]s:8080/vmlinuz %[5]s initrd=initrd.img\ninitrd http://%[3]s:8080/initrd.img\nboot\n",
		iqnPrefix, hbMachine.name, hbRefIP, refTarget(hbMachine), lxCmdline)
	must(t, os.WriteFile(filepath.Join(web, "hb.ipxe"), []byte(script), 0o644))
	must(t, refs.StartHTTP(web, 8080))
	// dnsmasq has no HTTP boot of its own: tags do it. The HTTPClient
	// vendor class gets the URL as its boot file and option 60 forced
	// (edk2 takes only offers that carry it); iPXE (option 175) its
	// script, with option 60 PXEClient as in TestLinux's reference.
	_, err = l.Dnsmasq("reference-dnsmasq", refNS, "brr", "192.168.88.100", "192.168.88.150", "",
		"--dhcp-vendorclass=set:efihttp,HTTPClient",
		"--dhcp-match=set:ipxe,175",
		"--dhcp-boot=tag:efihttp,http://"+hbRefIP+":8080/snponly.efi",
		"--dhcp-option-force=tag:efihttp,60,HTTPClient",
		"--dhcp-boot=tag:ipxe,http://"+hbRefIP+":8080/hb.ipxe",
		"--dhcp-option-force=tag:ipxe,60,PXEClient")
	must(t, err)
	r.refVM, err = l.Machine(refNS, "brr", "r-hb", hbMachine.name+"@dnsmasq", hbMachine.mac)
	must(t, err)
	t.Logf("setup done in %.1fs", time.Since(start).Seconds())

	// DLS (both machines at once) and the reference alternate: both see
	// the same load.
	first := r.pair(t, "first boot")
	r.boot(t, hbMachine, "reference", "reference boot 1")
	second := r.pair(t, "second boot")
	r.boot(t, hbMachine, "reference", "reference boot 2")
	for _, m := range []lxMachine{hbMachine, hbProxy} {
		b1, b2 := first[m.name], second[m.name]
		if b1 == nil || b2 == nil || !b1.res.Done || !b2.res.Done {
			continue
		}
		if len(b1.res.Seen) != 0 {
			t.Errorf("%s: first boot saw %v on a fresh clone", m.name, b1.res.Seen)
		}
		if want := []string{m.name + "-1"}; !slices.Equal(b2.res.Seen, want) {
			t.Errorf("%s: second boot saw %v, want %v (its first boot's file on its clone)", m.name, b2.res.Seen, want)
		}
	}
	r.sessions(t)
	r.report(t)
}

// pair boots the full-mode and the proxy-mode machine from DLS at once.
func (r *hbRun) pair(t *testing.T, label string) map[string]*lxRecord {
	out := map[string]*lxRecord{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range []lxMachine{hbMachine, hbProxy} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := r.boot(t, m, "DLS", label)
			mu.Lock()
			out[m.name] = rec
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// boot powers the machine on by UEFI HTTP boot from server and checks what
// the console shows: OVMF's HTTP boot over IPv4 (no PXE), the first stage
// from the expected URL, then Linux with root on the expected iSCSI
// target, the file written and, from DLS, the boot confirmed.
func (r *hbRun) boot(t *testing.T, m lxMachine, server, label string) *lxRecord {
	vm, target, url := r.vm[m.name], iqnPrefix+":"+m.name, "http://"+hbIP+":9180/boot/files/snponly.efi"
	if server != "DLS" {
		vm, target, url = r.refVM, refTarget(m), "http://"+hbRefIP+":8080/snponly.efi"
	}
	b, err := vm.Boot(context.Background(), lab.BootOptions{
		Timeout: lxTimeout, HTTPBoot: true, Memory: 512, PowerOff: true, Ready: "DLS-LINUX-READY", Go: "go\n",
	})
	rec := &lxRecord{boot: b, res: parseLinux(b), m: m, server: server, label: label}
	r.mu.Lock()
	r.boots = append(r.boots, rec)
	r.mu.Unlock()
	res := rec.res
	if err != nil || !res.Done || res.Fail != "" {
		t.Errorf("%s from %s (%s): QEMU %v, init script done %v, failed %q; serial console (%s):\n%s",
			m.name, server, label, err, res.Done, res.Fail, b.Log, b.Tail(80))
		return rec
	}
	if !b.Has("Start HTTP Boot over IPv4") || b.Has("Start PXE over") {
		t.Errorf("%s from %s: the console does not show OVMF's HTTP boot over IPv4 alone:\n%s", m.name, server, b.Tail(200))
	}
	if !b.Has(url) {
		t.Errorf("%s from %s: the console does not name the first stage %s:\n%s", m.name, server, url, b.Tail(200))
	}
	if res.Root != "/dev/sda" || !strings.Contains(res.SDA, "/session") || res.Target != target {
		t.Errorf("%s from %s: root %s (sda %s) on target %s; want /dev/sda on %s", m.name, server, res.Root, res.SDA, res.Target, target)
	}
	if res.Wrote == "" || res.Wrote != res.Ready {
		t.Errorf("%s from %s: wrote %q, meant to write %q", m.name, server, res.Wrote, res.Ready)
	}
	if server == "DLS" && strings.TrimSpace(res.Confirmed) != "ok" {
		t.Errorf("%s: POST /boot/done answered %q (failed: %q)", m.name, res.Confirmed, res.ConfirmFailed)
	}
	t.Logf("%s from %s (%s): %.1fs; first stage %s; root on %s; saw %v, wrote %s", m.name, server, label,
		b.Wall.Seconds(), url, res.Target, res.Seen, res.Wrote)
	return rec
}

// sessions: every DLS boot has its session, done at booted; in full mode
// through the first-stage download (ipxe) between dhcp and script.
func (r *hbRun) sessions(t *testing.T) {
	ctx := context.Background()
	token, err := r.host.Login(ctx, "admin", adminPassword)
	must(t, err)
	all, err := r.host.Sessions(ctx, token, "")
	must(t, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.boots {
		if rec.server != "DLS" || rec.boot.Start.IsZero() {
			continue
		}
		for i := range all {
			s := all[i]
			if s.Client == rec.m.name && !s.Started.Before(rec.boot.Start) && s.Started.Before(rec.boot.Start.Add(rec.boot.Wall)) &&
				(rec.session == nil || s.Started.Before(rec.session.Started)) {
				rec.session = &s
			}
		}
		s := rec.session
		if s == nil {
			t.Errorf("no session for %s boot %d (%s)", rec.m.name, rec.boot.N, rec.label)
			continue
		}
		want := []string{"dhcp", "ipxe", "script", "iscsi_login", "handoff", "booted"}
		if rec.m == hbProxy {
			want = slices.DeleteFunc(want, func(st string) bool { return st == "ipxe" })
		}
		var missing []string
		for _, st := range want {
			if s.Stages[st].IsZero() {
				missing = append(missing, st)
			}
		}
		if s.State != "done" || s.Expect != "booted" || len(missing) > 0 {
			t.Errorf("session %d of %s (%s): state %s, expect %s, stages %s; missing %v", s.ID, s.Client, rec.label, s.State, s.Expect, s.StageList(", "), missing)
			continue
		}
		t.Logf("session %d of %s (%s): %s", s.ID, s.Client, rec.label, s.StageList(", "))
	}
}

// report prints every boot, the test's wall clock (QEMU start to
// power-off) and DLS's session (first DHCPDISCOVER to /boot/done), and the
// ratio DLS / dnsmasq.
func (r *hbRun) report(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\nUEFI HTTP boot (OVMF, no option ROM, no TFTP) of Debian with root on iSCSI:\n%-9s %-10s %8s %15s %12s  %s\n", "machine", "server", "wall (s)", "DLS session (s)", "ipxe at (s)", "for")
	walls := map[string][]time.Duration{} // full-mode machine's, by server
	for _, rec := range r.boots {
		sess, ipxe := "-", "-"
		if s := rec.session; s != nil {
			if s.State == "done" {
				sess = fmt.Sprintf("%.2f", s.Seconds())
			} else {
				sess = s.State + "@" + s.FailedStage
			}
			if at, ok := s.Stages["ipxe"]; ok {
				ipxe = fmt.Sprintf("+%.2f", at.Sub(s.Started).Seconds())
			}
		}
		fmt.Fprintf(&b, "%-9s %-10s %8.2f %15s %12s  %s\n", rec.m.name, rec.server, rec.boot.Wall.Seconds(), sess, ipxe, rec.label)
		if rec.res.Done && rec.m == hbMachine {
			walls[rec.server] = append(walls[rec.server], rec.boot.Wall)
		}
	}
	if d, f := walls["DLS"], walls["reference"]; len(d) > 0 && len(f) > 0 {
		fmt.Fprintf(&b, "full mode: DLS %.1fs (median of %s), dnsmasq + busybox httpd + tgt %.1fs (median of %s): ratio %.2fx\n",
			median(d).Seconds(), secs(d), median(f).Seconds(), secs(f), median(d).Seconds()/median(f).Seconds())
	}
	t.Log(b.String())
}

// grepLines returns the lines of text holding s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
