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

// TestHTTPBoot: a UEFI machine whose NIC has no option ROM boots by UEFI
// HTTP boot (OVMF's own network stack, its PXE off) from DLS configured
// without a TFTP plugin: DLS's DHCP answers the HTTPClient discover with
// option 60 HTTPClient and the URL of iPXE (snponly.efi) under
// /boot/files, iPXE fetches its script over HTTP, sanhooks its clone over
// iSCSI and boots the Debian kernel, which confirms on /boot/done: the
// session goes dhcp, ipxe, script, iscsi_login, handoff, booted. The same
// machine boots from dnsmasq answering HTTPClient the same way (its
// dhcp-vendorclass tag and a forced option 60), busybox httpd and tgt,
// for the reference time. See README.md.

const (
	hbIP    = "192.168.77.1" // DLS, in the namespace <prefix>-hbdls
	hbRefIP = "192.168.88.1" // the reference, in <prefix>-hbref

	// snponly is Debian's iPXE for UEFI that drives the NIC through the
	// firmware's SNP (a file in /usr/lib/ipxe; ipxe.efi there is a link).
	snponly = "/usr/lib/ipxe/snponly.efi"
)

var hbMachine = lxMachine{name: "hb-uefi", mac: "52:54:00:e2:02:01", uefi: true}

// hbRun is the state TestHTTPBoot's phases share.
type hbRun struct {
	host  *lab.Host
	vm    *lab.Machine // on DLS's segment
	refVM *lab.Machine // on the reference's, same MAC

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
	r := &hbRun{}
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

	// DLS, without TFTP.
	ns, err := l.NS("hbdls")
	must(t, err)
	must(t, ns.Bridge("br0", hbIP+"/24"))
	r.vm, err = l.Machine(ns, "br0", "t-hb", hbMachine.name, hbMachine.mac)
	must(t, err)
	_, err = l.Router(ns, "br0")
	must(t, err)
	hostDir := filepath.Join(l.Dir, "dls")
	must(t, os.MkdirAll(hostDir, 0o755))
	cfg, err := lab.WriteHostConfig(hostDir, bin, lab.HostConfig{
		BootIP: hbIP, Files: files, NoTFTP: true,
		Images: []lab.HostImage{{
			Name: "linux", Source: image.Disk,
			Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: lxCmdline, Confirm: true,
		}},
		Clients: []lab.HostClient{{Name: hbMachine.name, MAC: hbMachine.mac, Image: "linux"}},
		DHCP: []lab.HostDHCP{{Name: "lan", Interface: "br0", Mode: "full", ServerIP: hbIP,
			PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: hbIP,
			BootFiles: map[string]string{"efi_x64": "snponly.efi"}}},
	})
	must(t, err)
	text, err := os.ReadFile(cfg)
	must(t, err)
	if strings.Contains(string(text), `protocol "tftp"`) {
		t.Fatalf("the config has a TFTP plugin:\n%s", text)
	}
	// dls validate --deep passes a site without TFTP: the UEFI first stage
	// is in boot.files, BIOS (no HTTP boot) is a note.
	out, err := ns.Command(filepath.Join(bin, "dls"), "validate", "--deep", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "served from boot.files") {
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

	// DLS and the reference alternate: both see the same load.
	first := r.boot(t, "DLS", "first boot")
	r.boot(t, "reference", "reference boot 1")
	second := r.boot(t, "DLS", "second boot")
	r.boot(t, "reference", "reference boot 2")
	if first != nil && second != nil && first.res.Done && second.res.Done {
		if len(first.res.Seen) != 0 {
			t.Errorf("first boot saw %v on a fresh clone", first.res.Seen)
		}
		if want := []string{hbMachine.name + "-1"}; !slices.Equal(second.res.Seen, want) {
			t.Errorf("second boot saw %v, want %v (its first boot's file on its clone)", second.res.Seen, want)
		}
	}
	r.sessions(t)
	r.report(t)
}

// boot powers the machine on by UEFI HTTP boot from server and checks what
// the console shows: OVMF's HTTP boot over IPv4 (no PXE), the first stage
// from the expected URL, then Linux with root on the expected iSCSI
// target, the file written and, from DLS, the boot confirmed.
func (r *hbRun) boot(t *testing.T, server, label string) *lxRecord {
	vm, target, url := r.vm, iqnPrefix+":"+hbMachine.name, "http://"+hbIP+":9180/boot/files/snponly.efi"
	if server != "DLS" {
		vm, target, url = r.refVM, refTarget(hbMachine), "http://"+hbRefIP+":8080/snponly.efi"
	}
	b, err := vm.Boot(context.Background(), lab.BootOptions{
		Timeout: lxTimeout, HTTPBoot: true, Memory: 512, PowerOff: true, Ready: "DLS-LINUX-READY", Go: "go\n",
	})
	rec := &lxRecord{boot: b, res: parseLinux(b), m: hbMachine, server: server, label: label}
	r.mu.Lock()
	r.boots = append(r.boots, rec)
	r.mu.Unlock()
	res := rec.res
	if err != nil || !res.Done || res.Fail != "" {
		t.Errorf("%s from %s (%s): QEMU %v, init script done %v, failed %q; serial console (%s):\n%s",
			hbMachine.name, server, label, err, res.Done, res.Fail, b.Log, b.Tail(80))
		return rec
	}
	if !b.Has("Start HTTP Boot over IPv4") || b.Has("Start PXE over") {
		t.Errorf("%s from %s: the console does not show OVMF's HTTP boot over IPv4 alone:\n%s", hbMachine.name, server, b.Tail(200))
	}
	if !b.Has(url) {
		t.Errorf("%s from %s: the console does not name the first stage %s:\n%s", hbMachine.name, server, url, b.Tail(200))
	}
	if res.Root != "/dev/sda" || !strings.Contains(res.SDA, "/session") || res.Target != target {
		t.Errorf("%s from %s: root %s (sda %s) on target %s; want /dev/sda on %s", hbMachine.name, server, res.Root, res.SDA, res.Target, target)
	}
	if res.Wrote == "" || res.Wrote != res.Ready {
		t.Errorf("%s from %s: wrote %q, meant to write %q", hbMachine.name, server, res.Wrote, res.Ready)
	}
	if server == "DLS" && strings.TrimSpace(res.Confirmed) != "ok" {
		t.Errorf("%s: POST /boot/done answered %q (failed: %q)", hbMachine.name, res.Confirmed, res.ConfirmFailed)
	}
	t.Logf("%s from %s (%s): %.1fs; first stage %s; root on %s; saw %v, wrote %s", hbMachine.name, server, label,
		b.Wall.Seconds(), url, res.Target, res.Seen, res.Wrote)
	return rec
}

// sessions: every DLS boot has its session, done at booted, through the
// first-stage download (ipxe) between dhcp and script.
func (r *hbRun) sessions(t *testing.T) {
	ctx := context.Background()
	token, err := r.host.Login(ctx, "admin", adminPassword)
	must(t, err)
	all, err := r.host.Sessions(ctx, token, hbMachine.name)
	must(t, err)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.boots {
		if rec.server != "DLS" || rec.boot.Start.IsZero() {
			continue
		}
		for i := range all {
			s := all[i]
			if !s.Started.Before(rec.boot.Start) && s.Started.Before(rec.boot.Start.Add(rec.boot.Wall)) &&
				(rec.session == nil || s.Started.Before(rec.session.Started)) {
				rec.session = &s
			}
		}
		s := rec.session
		if s == nil {
			t.Errorf("no session for %s boot %d (%s)", hbMachine.name, rec.boot.N, rec.label)
			continue
		}
		var missing []string
		for _, st := range []string{"dhcp", "ipxe", "script", "iscsi_login", "handoff", "booted"} {
			if s.Stages[st].IsZero() {
				missing = append(missing, st)
			}
		}
		if s.State != "done" || s.Expect != "booted" || len(missing) > 0 {
			t.Errorf("session %d (%s): state %s, expect %s, stages %s; missing %v", s.ID, rec.label, s.State, s.Expect, s.StageList(", "), missing)
			continue
		}
		t.Logf("session %d (%s): %s", s.ID, rec.label, s.StageList(", "))
	}
}

// report prints every boot, the test's wall clock (QEMU start to
// power-off) and DLS's session (first DHCPDISCOVER to /boot/done), and the
// ratio DLS / dnsmasq.
func (r *hbRun) report(t *testing.T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\nUEFI HTTP boot (OVMF, no option ROM, no TFTP) of Debian with root on iSCSI:\n%-10s %8s %15s %12s  %s\n", "server", "wall (s)", "DLS session (s)", "ipxe at (s)", "for")
	walls := map[string][]time.Duration{}
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
		fmt.Fprintf(&b, "%-10s %8.2f %15s %12s  %s\n", rec.server, rec.boot.Wall.Seconds(), sess, ipxe, rec.label)
		if rec.res.Done {
			walls[rec.server] = append(walls[rec.server], rec.boot.Wall)
		}
	}
	if d, f := walls["DLS"], walls["reference"]; len(d) > 0 && len(f) > 0 {
		fmt.Fprintf(&b, "DLS %.1fs (median of %s), dnsmasq + busybox httpd + tgt %.1fs (median of %s): ratio %.2fx\n",
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
