//go:build e2e && linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/e2e/lab"
)

// TestLinux: a real Debian (bookworm, debootstrap --variant=minbase, cached
// in /var/cache/dls-e2e) boots diskless from DLS on a BIOS and a UEFI
// machine at once, each from its own clone: iPXE sanhooks the clone and
// boots the kernel over HTTP, the initramfs logs in from the iBFT and
// mounts root from it, and e2e/testdata/linux-init.sh (init=) proves it,
// writes a file, confirms the boot on /boot/done and powers off. The same
// boots run against dnsmasq + tgt + busybox httpd, and the iSCSI plugin is
// killed while a Linux machine runs. See README.md.

const (
	lxIP    = "192.168.77.1" // DLS, in the namespace <prefix>-lxdls
	lxRefIP = "192.168.88.1" // the reference stack, in <prefix>-lxref

	// lxCmdline is the Linux image's kernel line (DLS adds initrd= on
	// UEFI and dls.url, dls.token). panic=-1: a kernel that cannot go on
	// reboots at once, and QEMU (-no-reboot) exits instead of hanging.
	lxCmdline = "iscsi_auto root=/dev/sda rw console=ttyS0 init=" + lab.LinuxInit + " panic=-1"

	lxTimeout = 8 * time.Minute // one Linux boot under TCG, two at once on 2 cores
)

// lxMachine is a Linux client.
type lxMachine struct {
	name, mac string
	uefi      bool
}

var (
	lxBIOS  = lxMachine{"lx-bios", "52:54:00:e2:01:01", false}
	lxUEFI  = lxMachine{"lx-uefi", "52:54:00:e2:01:02", true}
	lxFault = lxMachine{"lx-ft", "52:54:00:e2:01:03", false}

	lxMachines = []lxMachine{lxBIOS, lxUEFI, lxFault}
)

// lxRun is the state TestLinux's phases share.
type lxRun struct {
	t     *testing.T
	lab   *lab.Lab
	host  *lab.Host
	refs  *lab.Reference
	vm    map[string]*lab.Machine // DLS's machines by name
	refVM map[string]*lab.Machine // the reference's, same MACs
	image *lab.LinuxImage
	first map[string]*lxRecord // DLS's first boots by machine

	mu    sync.Mutex
	boots []*lxRecord
}

// lxRecord is one Linux boot, what its console said and what DLS measured.
type lxRecord struct {
	boot    *lab.Boot
	res     linuxResult
	m       lxMachine
	server  string // "DLS" or "reference"
	label   string
	session *lab.Session
}

func TestLinux(t *testing.T) {
	needRoot(t)
	if err := lab.Need("mke2fs", "busybox", "debootstrap"); err != nil {
		skip(t, "%v: make e2e installs e2fsprogs busybox debootstrap", err)
	}
	for _, f := range []string{lab.OVMFCode, lab.OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			skip(t, "%v: make e2e installs ovmf", err)
		}
	}
	r := lxSetup(t)
	// DLS and the reference alternate, so that both see the same load
	// (the machine may be shared).
	t.Run("DLS first boot, BIOS and UEFI at once", r.firstBoot)
	t.Run("reference first boot", func(t *testing.T) { r.reference(t, 1) })
	t.Run("DLS second boot", r.secondBoot)
	t.Run("reference second boot", func(t *testing.T) { r.reference(t, 2) })
	t.Run("iscsi plugin killed while Linux runs", r.fault)
	t.Run("sessions", r.sessions)
	r.report()
}

func lxSetup(t *testing.T) *lxRun {
	l := newLab(t, "dls-e2e-linux-")
	dir := l.Dir
	r := &lxRun{t: t, lab: l, vm: map[string]*lab.Machine{}, refVM: map[string]*lab.Machine{}}
	root, err := lab.RepoRoot()
	must(t, err)

	start := time.Now()
	bin := filepath.Join(dir, "bin")
	must(t, lab.Build(root, bin))
	debian, err := lab.DebianRoot(lab.DebianCache(), t.Logf)
	must(t, err)
	files := filepath.Join(dir, "boot-files")
	r.image, err = lab.MakeLinuxImage(debian, filepath.Join(root, "e2e", "testdata", "linux-init.sh"), dir, files)
	must(t, err)
	t.Logf("dls built, Debian root ready, %d MiB ext4 image made (mke2fs -d) in %.1fs", r.image.Size>>20, time.Since(start).Seconds())

	ns, err := l.NS("lxdls")
	must(t, err)
	must(t, ns.Bridge("br0", lxIP+"/24"))
	var clients []lab.HostClient
	for _, m := range lxMachines {
		r.vm[m.name], err = l.Machine(ns, "br0", "t-"+m.name, m.name, m.mac)
		must(t, err)
		clients = append(clients, lab.HostClient{Name: m.name, MAC: m.mac, Image: "linux"})
	}
	_, err = l.Router(ns, "br0")
	must(t, err)
	r.host, err = l.StartHost(ns, bin, lab.HostConfig{
		BootIP: lxIP,
		Files:  files,
		Images: []lab.HostImage{{
			Name: "linux", Source: r.image.Disk,
			Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: lxCmdline, Confirm: true,
		}},
		Clients: clients,
		DHCP:    []lab.HostDHCP{{Name: "lan", Interface: "br0", Mode: "full", ServerIP: lxIP, PoolStart: "192.168.77.100", PoolEnd: "192.168.77.199", Router: lxIP}},
	}, adminPassword)
	must(t, err)
	t.Logf("DLS ready: %s", r.host.Config)

	// The admin's tool: version 2 of the image is the same tree made into
	// a disk by `dls image import --from-dir` through the API; every
	// machine clones it (version 1, from the config, is the one the
	// reference serves).
	imported := time.Now()
	_, err = r.host.CLI(adminPassword+"\n", "login", "--user", "admin", "--password-stdin")
	must(t, err)
	_, err = r.host.CLI("", "image", "import", "linux", "--from-dir", debian)
	must(t, err)
	versions, err := r.host.CLI("", "image", "versions", "linux")
	must(t, err)
	if lines := strings.Split(strings.TrimSpace(versions), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], "2 ") || !strings.HasSuffix(lines[2], "*") {
		t.Fatalf("dls image versions linux after the import:\n%s", versions)
	}
	t.Logf("dls image import linux --from-dir %s: version 2 current, in %.1fs", debian, time.Since(imported).Seconds())

	// The reference: dnsmasq (DHCP + TFTP), tgt (a copy of the image per
	// machine, LUN 1), busybox httpd (the kernel and initrd).
	refNS, err := l.NS("lxref")
	must(t, err)
	must(t, refNS.Bridge("brr", lxRefIP+"/24"))
	_, err = l.Router(refNS, "brr")
	must(t, err)
	r.refs, err = l.ReferenceServers(refNS, "brr", lxRefIP)
	must(t, err)
	must(t, r.refs.StartHTTP(filepath.Join(files, "linux"), 8080))
	boot := "#!ipxe\nchain ${mac:hexhyp}.ipxe\n"
	must(t, os.WriteFile(filepath.Join(r.refs.TFTP, "boot.ipxe"), []byte(boot), 0o644))
	for i, m := range []lxMachine{lxBIOS, lxUEFI} {
		r.refVM[m.name], err = l.Machine(refNS, "brr", "r-"+m.name, m.name+"@reference", m.mac)
		must(t, err)
		disk := filepath.Join(dir, "reference-"+m.name+".img")
		must(t, lab.CopySparse(r.image.Disk, disk))
		target := refTarget(m)
		must(t, r.refs.AddTarget(i+1, target, disk))
		script := fmt.Sprintf(`#!ipxe
set initiator-iqn %[1]s:initiator:%[2]s
sanhook iscsi:%[3]s:::1:%[4]s
set dls-initrd initrd=initrd.img
iseq ${platform} efi || clear dls-initrd
kernel http://%[3]s:8080/vmlinuz %[5]s ${dls-initrd}
initrd http://%[3]s:8080/initrd.img
boot
`, iqnPrefix, m.name, lxRefIP, target, lxCmdline)
		mac := strings.ReplaceAll(m.mac, ":", "-")
		must(t, os.WriteFile(filepath.Join(r.refs.TFTP, mac+".ipxe"), []byte(script), 0o644))
	}
	// Option 60 PXEClient spares iPXE its 3 s wait for a ProxyDHCP offer
	// (README.md, "Reference stack"): the reference at its fastest.
	must(t, r.refs.StartDnsmasq("--dhcp-option-force=60,PXEClient"))
	t.Logf("setup done in %.1fs", time.Since(start).Seconds())
	return r
}

func refTarget(m lxMachine) string { return iqnPrefix + ":reference-" + m.name }

// linuxResult is what linux-init.sh printed.
type linuxResult struct {
	Root, SDA, Target, Initiator, IBFT string
	IscsidStarted                      bool
	Seen                               []string // files of earlier boots
	Ready                              string   // the file this boot writes
	Wrote                              string
	Confirmed                          string // /boot/done's answer
	ConfirmFailed                      string
	Done                               bool
	Fail                               string
}

var reLinuxWhere = regexp.MustCompile(`^DLS-LINUX root=(\S*) sda=(\S*) target=(\S*) initiator=(\S*) ibft=(\S*)`)

func parseLinux(b *lab.Boot) linuxResult {
	var r linuxResult
	for _, l := range b.Lines {
		text := l.Text
		if i := strings.Index(text, "DLS-LINUX"); i > 0 {
			text = text[i:] // after kernel messages on the same line
		}
		switch {
		case reLinuxWhere.MatchString(text):
			m := reLinuxWhere.FindStringSubmatch(text)
			r.Root, r.SDA, r.Target, r.Initiator, r.IBFT = m[1], m[2], m[3], m[4], m[5]
		case text == "DLS-LINUX iscsid started":
			r.IscsidStarted = true
		case strings.HasPrefix(text, "DLS-LINUX seen=["):
			list := strings.TrimSuffix(strings.TrimPrefix(text, "DLS-LINUX seen=["), "]")
			r.Seen = strings.Fields(list)
		case strings.HasPrefix(text, "DLS-LINUX-READY "):
			r.Ready = strings.TrimPrefix(text, "DLS-LINUX-READY ")
		case strings.HasPrefix(text, "DLS-LINUX-WROTE "):
			r.Wrote = strings.TrimPrefix(text, "DLS-LINUX-WROTE ")
		case strings.HasPrefix(text, "DLS-LINUX-CONFIRMED "):
			r.Confirmed = strings.TrimPrefix(text, "DLS-LINUX-CONFIRMED ")
		case strings.HasPrefix(text, "DLS-LINUX-CONFIRM-FAILED"):
			r.ConfirmFailed = strings.TrimSpace(strings.TrimPrefix(text, "DLS-LINUX-CONFIRM-FAILED"))
		case strings.HasPrefix(text, "DLS-LINUX-DONE "):
			r.Done = true
		case strings.HasPrefix(text, "DLS-LINUX-FAIL "):
			r.Fail = strings.TrimPrefix(text, "DLS-LINUX-FAIL ")
		}
	}
	return r
}

// bootLinux boots m once (on DLS's machine or the reference's) and
// records it; it checks what every Linux boot must show: root is /dev/sda
// on the expected iSCSI target, the file was written and read back, and
// (on DLS) the boot was confirmed.
func (r *lxRun) bootLinux(t *testing.T, m lxMachine, server, label string, onReady func()) *lxRecord {
	vm, target := r.vm[m.name], iqnPrefix+":"+m.name
	if server != "DLS" {
		vm, target = r.refVM[m.name], refTarget(m)
	}
	b, err := vm.Boot(context.Background(), lab.BootOptions{
		Timeout: lxTimeout, UEFI: m.uefi, Memory: 512, PowerOff: true,
		Ready: "DLS-LINUX-READY", Go: "go\n", OnReady: onReady,
	})
	rec := &lxRecord{boot: b, res: parseLinux(b), m: m, server: server, label: label}
	r.mu.Lock()
	r.boots = append(r.boots, rec)
	r.mu.Unlock()
	res := rec.res
	if err != nil || !res.Done || res.Fail != "" {
		t.Errorf("%s from %s (%s): QEMU %v, init script done %v, failed %q; serial console (%s):\n%s",
			m.name, server, label, err, res.Done, res.Fail, b.Log, b.Tail(60))
		return rec
	}
	if res.Root != "/dev/sda" || !strings.Contains(res.SDA, "/session") || res.Target != target ||
		res.Initiator != iqnPrefix+":initiator:"+m.name {
		t.Errorf("%s from %s: root %s (sda %s), iSCSI target %s initiator %s; want /dev/sda on a session with %s",
			m.name, server, res.Root, res.SDA, res.Target, res.Initiator, target)
	}
	if res.IBFT != "none" && res.IBFT != target {
		t.Errorf("%s from %s: the iBFT names target %s, the session %s", m.name, server, res.IBFT, target)
	}
	if !res.IscsidStarted {
		t.Errorf("%s from %s: iscsid did not start: no one would log in again after a target restart", m.name, server)
	}
	if res.Wrote == "" || res.Wrote != res.Ready {
		t.Errorf("%s from %s: wrote %q, meant to write %q", m.name, server, res.Wrote, res.Ready)
	}
	if server == "DLS" && strings.TrimSpace(res.Confirmed) != "ok" {
		t.Errorf("%s: POST /boot/done answered %q (failed: %q)", m.name, res.Confirmed, res.ConfirmFailed)
	}
	t.Logf("%s from %s (%s): %.1fs; root %s on %s (iBFT %s); saw %v, wrote %s; /boot/done %q",
		m.name, server, label, b.Wall.Seconds(), res.Root, res.Target, res.IBFT, res.Seen, res.Wrote, strings.TrimSpace(res.Confirmed))
	return rec
}

// bootPair boots the BIOS and the UEFI machine at once.
func (r *lxRun) bootPair(t *testing.T, server, label string) map[string]*lxRecord {
	out := map[string]*lxRecord{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start, load, cpu := time.Now(), lab.LoadAverage(), r.host.CPU()
	for _, m := range []lxMachine{lxBIOS, lxUEFI} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := r.bootLinux(t, m, server, label, nil)
			mu.Lock()
			out[m.name] = rec
			mu.Unlock()
		}()
	}
	wg.Wait()
	// The load average before, and DLS's processor time during, the pair
	// (DLS idles while the reference serves): figures from a shared
	// machine are read with both.
	t.Logf("%s from %s: BIOS and UEFI at once, both done in %.1fs (load average %s before; DLS used %.1fs of CPU meanwhile)",
		label, server, time.Since(start).Seconds(), load, (r.host.CPU() - cpu).Seconds())
	return out
}

// firstBoot: BIOS and UEFI boot Linux from DLS at once, each from a
// fresh clone: neither sees a file.
func (r *lxRun) firstBoot(t *testing.T) {
	r.first = r.bootPair(t, "DLS", "first boot")
	for _, rec := range r.first {
		if len(rec.res.Seen) != 0 {
			t.Errorf("%s's first boot saw %v on a fresh clone", rec.m.name, rec.res.Seen)
		}
	}
}

// secondBoot: again; each sees its own first boot's file and nothing of
// the other's.
func (r *lxRun) secondBoot(t *testing.T) {
	second := r.bootPair(t, "DLS", "second boot")
	for _, rec := range second {
		if want := []string{rec.m.name + "-1"}; !slices.Equal(rec.res.Seen, want) {
			t.Errorf("%s's second boot saw %v, want %v (its own first boot's file only)", rec.m.name, rec.res.Seen, want)
		}
	}
}

// reference: the same two boots from dnsmasq + tgt + busybox httpd, each
// machine on its own copy of the image.
func (r *lxRun) reference(t *testing.T, n int) {
	got := r.bootPair(t, "reference", fmt.Sprintf("reference boot %d", n))
	for _, rec := range got {
		var want []string
		if n == 2 {
			want = []string{rec.m.name + "-1"}
		}
		if !slices.Equal(rec.res.Seen, want) {
			t.Errorf("%s from the reference (boot %d) saw %v, want %v", rec.m.name, n, rec.res.Seen, want)
		}
	}
}

// fault: kill -9 of the iSCSI plugin while Linux runs (booted, before it
// writes). iscsid in the OS logs in again once the supervisor has
// restarted the plugin, the write goes through, and the next boot finds
// the file on the clone.
func (r *lxRun) fault(t *testing.T) {
	m := lxFault
	b1 := r.bootLinux(t, m, "DLS", "fault: before", nil)
	if t.Failed() {
		return
	}
	oldPid := r.host.PluginPid("dls-protocol-iscsi")
	if oldPid == 0 {
		t.Fatal("no iSCSI plugin process under the host")
	}
	var killed, back time.Time
	var newPid int
	b2 := r.bootLinux(t, m, "DLS", faultKilled, func() {
		if err := syscall.Kill(oldPid, syscall.SIGKILL); err != nil {
			t.Errorf("kill -9 %d: %v", oldPid, err)
			return
		}
		killed = time.Now()
		// The write waits for the supervisor's restart: the OS's go line
		// is sent once the new plugin serves.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			if newPid = r.host.PluginPid("dls-protocol-iscsi"); newPid != 0 && newPid != oldPid && r.host.WaitReady(ctx) == nil {
				back = time.Now()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("the iSCSI plugin is not back 60s after kill -9; host log:\n%s", r.host.Proc.LogTail(30))
	})
	if killed.IsZero() || back.IsZero() {
		t.Fatalf("kill -9 at DLS-LINUX-READY did not happen or the plugin never came back")
	}
	// The new plugin served a login: iscsid's, the only initiator left,
	// so the kernel's session reconnected. The kernel's own "detected conn
	// error" line is logged when the console shows it; it is not required:
	// printk to the serial console is asynchronous and a machine powering
	// off right after its write can lose it (seen once in CI).
	var connErr []string
	for _, l := range b2.boot.Lines {
		if l.At > b2.boot.ReadyAt && strings.Contains(l.Text, "detected conn error") {
			connErr = append(connErr, strings.TrimSpace(l.Text))
		}
	}
	logins := lab.ParseMetrics(mustScrape(t, r.host)).Sum("dls_iscsi_connections_total", `plugin="disks"`)
	if logins < 1 {
		t.Errorf("the restarted iSCSI plugin counted %g connections, want the initiator's new login", logins)
	}
	t.Logf("kill -9 of the iSCSI plugin (pid %d) while %s ran: back as pid %d after %.1fs, %g connection(s) to it since; kernel: %v; the OS then wrote %s",
		oldPid, m.name, newPid, back.Sub(killed).Seconds(), logins, connErr, b2.res.Wrote)
	b3 := r.bootLinux(t, m, "DLS", "fault: after", nil)
	want := []string{m.name + "-1", m.name + "-2"}
	if b1.res.Wrote != m.name+"-1" || !slices.Equal(b3.res.Seen, want) {
		t.Errorf("the boot after the kill saw %v, want %v: the write made after the plugin restarted is not on the clone", b3.res.Seen, want)
	} else {
		t.Logf("the next boot found %v on its clone: the write after the restart reached the disk", b3.res.Seen)
	}
}

// sessions: every DLS boot has its session, done at booted.
func (r *lxRun) sessions(t *testing.T) {
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
		switch {
		case s == nil:
			t.Errorf("no session for %s boot %d (%s)", rec.m.name, rec.boot.N, rec.label)
		case s.State != "done" || s.Expect != "booted" || s.Stages["booted"].IsZero():
			t.Errorf("session %d of %s (%s): state %s, expect %s, stages %s; want done at booted",
				s.ID, s.Client, rec.label, s.State, s.Expect, s.StageList(", "))
		default:
			t.Logf("session %d of %s (%s): %s", s.ID, s.Client, rec.label, s.StageList(", "))
		}
	}
}

// report prints every Linux boot: the test's wall clock (QEMU start to
// power-off) and DLS's session (first DHCPDISCOVER to /boot/done), and the
// ratio DLS / reference by firmware.
func (r *lxRun) report() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "\n%-8s %-5s %-4s %-10s %8s %15s  %s\n", "machine", "fw", "boot", "server", "wall (s)", "DLS session (s)", "for")
	walls := map[string]map[string][]time.Duration{} // firmware → server → walls
	for _, rec := range r.boots {
		fw := "BIOS"
		if rec.m.uefi {
			fw = "UEFI"
		}
		dls := "-"
		if s := rec.session; s != nil {
			if s.State == "done" {
				dls = fmt.Sprintf("%.2f", s.Seconds())
			} else {
				dls = s.State + "@" + s.FailedStage
			}
		}
		fmt.Fprintf(&b, "%-8s %-5s %-4d %-10s %8.2f %15s  %s\n", rec.m.name, fw, rec.boot.N, rec.server, rec.boot.Wall.Seconds(), dls, rec.label)
		if rec.m == lxFault || !rec.res.Done {
			continue
		}
		if walls[fw] == nil {
			walls[fw] = map[string][]time.Duration{}
		}
		walls[fw][rec.server] = append(walls[fw][rec.server], rec.boot.Wall)
	}
	b.WriteString("\nLinux boot time (wall clock, BIOS and UEFI at once), DLS against dnsmasq + tgt + busybox httpd:\n")
	for _, fw := range []string{"BIOS", "UEFI"} {
		d, f := walls[fw]["DLS"], walls[fw]["reference"]
		if len(d) == 0 || len(f) == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %s: DLS %.1fs (median of %s)  reference %.1fs  ratio %.2fx\n",
			fw, median(d).Seconds(), secs(d), median(f).Seconds(), median(d).Seconds()/median(f).Seconds())
	}
	r.t.Log(b.String())
}
