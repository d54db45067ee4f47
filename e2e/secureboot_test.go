//go:build e2e

package e2e

import (
	"context"
	"encoding/binary"
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

// TestSecureBoot: two OVMF machines enforcing Secure Boot with
// Microsoft's keys (no NIC option ROM: OVMF's own PXE) boot from DLS at
// once through Debian's signed chain, shim → GRUB → kernel, served by the
// TFTP plugin from Debian's paths.
//
//   - sb-signed's image has Debian's signed kernel: the kernel logs
//     "Secure boot enabled", the initramfs logs in to the client's clone
//     from the command line GRUB was given (no iBFT), e2e/testdata/
//     linux-init.sh proves root is on it, writes, confirms on /boot/done;
//     the session is done at booted through dhcp, shim, grub, script.
//   - sb-unsigned's image has the same kernel with its signature removed:
//     GRUB refuses it (shim's verifier), the machine never logs in, and
//     its session fails at iscsi_login after the stage timeout, having
//     reached shim, grub and script.
//
// See README.md and docs/secure-boot.md.
const (
	sbIP = "192.168.79.1"

	// sbCmdline: no iscsi_auto (nothing published an iBFT); ip=dhcp:
	// the initramfs configures the NIC before open-iscsi logs in.
	sbCmdline = "root=/dev/sda rw ip=dhcp console=ttyS0 init=" + lab.LinuxInit + " panic=-1"

	// sbStageTimeout: GRUB fetches the kernel and the 36 MiB initrd over
	// TFTP, lock-step at 1024-byte blocks, between the script and
	// iscsi_login stages: about 85 s here with two machines under TCG.
	sbStageTimeout = 3 * time.Minute
)

var (
	sbSigned   = lxMachine{"sb-signed", "52:54:00:5b:00:01", true}
	sbUnsigned = lxMachine{"sb-unsigned", "52:54:00:5b:00:02", true}
)

// What GRUB (Debian 2.06) and shim print when the kernel is refused.
var sbRefused = []string{"bad shim signature", "you need to load the kernel first", "Security Violation", "Verification failed"}

// sbReported begins what DLS's GRUB configuration prints once GRUB has
// reported the failed boot to the server (after the TFTP request); the
// console wraps the rest onto the next line.
const sbReported = "did not boot (refused by Secure Boot"

func TestSecureBoot(t *testing.T) {
	needRoot(t)
	if err := lab.Need("mke2fs", "busybox", "debootstrap"); err != nil {
		skip(t, "%v: make e2e installs e2fsprogs busybox debootstrap", err)
	}
	for _, f := range []string{lab.OVMFCodeMS, lab.OVMFVarsMS, "/usr/lib/shim/shimx64.efi.signed", "/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"} {
		if _, err := os.Stat(f); err != nil {
			skip(t, "%v: make e2e installs ovmf, shim-signed, grub-efi-amd64-signed", err)
		}
	}
	l := newLab(t, "dls-e2e-sb-")
	dir := l.Dir
	root, err := lab.RepoRoot()
	must(t, err)
	start := time.Now()
	bin := filepath.Join(dir, "bin")
	must(t, lab.Build(root, bin))
	debian, err := lab.DebianRoot(lab.DebianCache(), t.Logf)
	must(t, err)
	files := filepath.Join(dir, "boot-files")
	image, err := lab.MakeLinuxImage(debian, filepath.Join(root, "e2e", "testdata", "linux-init.sh"), dir, files)
	must(t, err)
	unsigned := filepath.Join(files, "linux", "vmlinuz-unsigned")
	must(t, unsignPE(image.Kernel, unsigned))
	// The refused machine never reads its disk: a small one will do.
	small := filepath.Join(dir, "small.img")
	must(t, os.WriteFile(small, make([]byte, 1<<20), 0o644))
	t.Logf("dls built, Debian root ready, image made, kernel unsigned into %s, in %.1fs", unsigned, time.Since(start).Seconds())

	ns, err := l.NS("sb")
	must(t, err)
	must(t, ns.Bridge("br0", sbIP+"/24"))
	vm := map[string]*lab.Machine{}
	for _, m := range []lxMachine{sbSigned, sbUnsigned} {
		vm[m.name], err = l.Machine(ns, "br0", "t-"+m.name, m.name, m.mac)
		must(t, err)
	}
	host, err := l.StartHost(ns, bin, lab.HostConfig{
		BootIP: sbIP, Files: files, TFTPFiles: files, StageTimeout: sbStageTimeout.String(),
		Images: []lab.HostImage{
			{Name: "signed", Source: image.Disk, Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: sbCmdline, Confirm: true, Loader: "shim"},
			{Name: "unsigned", Source: small, Kernel: "linux/vmlinuz-unsigned", Initrd: "linux/initrd.img", Cmdline: sbCmdline, Confirm: true, Loader: "shim"},
		},
		Clients: []lab.HostClient{{Name: sbSigned.name, MAC: sbSigned.mac, Image: "signed"}, {Name: sbUnsigned.name, MAC: sbUnsigned.mac, Image: "unsigned"}},
		DHCP:    []lab.HostDHCP{{Name: "lan", Interface: "br0", Mode: "full", ServerIP: sbIP, PoolStart: "192.168.79.100", PoolEnd: "192.168.79.199", Router: sbIP}},
	}, adminPassword)
	must(t, err)
	// --deep with the host running: its own ports are in use (expected
	// findings); none may be about the signed chain.
	out, err := host.CLI("", "validate", "--deep", "--config", host.Config)
	if err != nil {
		out += err.Error() // the findings are on standard error
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "shim") || strings.Contains(line, "grub") || strings.Contains(line, "files folder") {
			t.Errorf("dls validate --deep: %s", line)
		}
	}
	t.Logf("DLS ready in %.1fs: %s", time.Since(start).Seconds(), host.Config)

	var wg sync.WaitGroup
	boots := map[string]*lab.Boot{}
	errs := map[string]error{}
	var mu sync.Mutex
	began := time.Now()
	for _, m := range []lxMachine{sbSigned, sbUnsigned} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := lab.BootOptions{Timeout: lxTimeout, SecureBoot: true, Memory: 768, PowerOff: true, Ready: "DLS-LINUX-READY", Go: "go\n"}
			if m == sbUnsigned {
				o.StopOn = []string{sbReported}
			}
			b, err := vm[m.name].Boot(context.Background(), o)
			mu.Lock()
			boots[m.name], errs[m.name] = b, err
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("both machines ended in %.1fs", time.Since(began).Seconds())

	// The signed chain: Secure Boot on, root on the clone, confirmed.
	b := boots[sbSigned.name]
	res := parseLinux(b)
	switch {
	case errs[sbSigned.name] != nil || !res.Done || res.Fail != "":
		t.Errorf("%s: QEMU %v, init done %v, failed %q; serial console (%s):\n%s", sbSigned.name, errs[sbSigned.name], res.Done, res.Fail, b.Log, b.Tail(80))
	case !b.Has("Secure boot enabled"):
		t.Errorf("%s: the kernel log does not say \"Secure boot enabled\" (%s)", sbSigned.name, b.Log)
	case res.Root != "/dev/sda" || res.Target != iqnPrefix+":"+sbSigned.name || res.IBFT != "none":
		t.Errorf("%s: root %s on target %s (iBFT %s); want /dev/sda on %s:%s, no iBFT", sbSigned.name, res.Root, res.Target, res.IBFT, iqnPrefix, sbSigned.name)
	case strings.TrimSpace(res.Confirmed) != "ok":
		t.Errorf("%s: POST /boot/done answered %q (failed: %q)", sbSigned.name, res.Confirmed, res.ConfirmFailed)
	default:
		t.Logf("%s: shim → GRUB → signed kernel, Secure Boot enabled, root %s on %s, wrote %s, /boot/done ok; %.1fs power-on to power-off",
			sbSigned.name, res.Root, res.Target, res.Wrote, b.Wall.Seconds())
	}
	if at, ok := lineAt(b, "Secure boot enabled"); ok {
		t.Logf("%s: \"Secure boot enabled\" at %.1fs", sbSigned.name, at.Seconds())
	}

	// The unsigned kernel: refused, reported by GRUB, and no login.
	u := boots[sbUnsigned.name]
	refusal := ""
	for _, r := range sbRefused {
		if refusal == "" && u.Has(r) {
			refusal = r
		}
	}
	switch {
	case errs[sbUnsigned.name] != nil || u.StoppedOn == "":
		t.Errorf("%s: no failure reported (QEMU %v); serial console (%s):\n%s", sbUnsigned.name, errs[sbUnsigned.name], u.Log, u.Tail(60))
	case refusal == "":
		t.Errorf("%s: GRUB reported a failed boot, but the console shows no Secure Boot refusal (%s):\n%s", sbUnsigned.name, u.Log, u.Tail(60))
	default:
		at, _ := lineAt(u, refusal)
		t.Logf("%s: refused at %.1fs (%q), reported to DLS at %.1fs", sbUnsigned.name, at.Seconds(), refusal, u.Wall.Seconds())
	}
	if u.Has("DLS-LINUX") {
		t.Errorf("%s: the unsigned kernel ran (%s)", sbUnsigned.name, u.Log)
	}

	// Sessions: the signed one done at booted through the shim stages;
	// the unsigned one failed at grub, from GRUB's report, long before
	// its stage timeout.
	ctx := context.Background()
	token, err := host.Login(ctx, "admin", adminPassword)
	must(t, err)
	deadline := time.Now().Add(30 * time.Second)
	var signed, refused *lab.Session
	for {
		all, err := host.Sessions(ctx, token, "")
		must(t, err)
		signed, refused = newest(all, sbSigned.name), newest(all, sbUnsigned.name)
		if (refused != nil && refused.State != "active") || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	wantStages := []string{"dhcp", "shim", "grub", "script"}
	switch {
	case signed == nil:
		t.Errorf("no session for %s", sbSigned.name)
	case signed.State != "done" || !hasStages(*signed, append(wantStages, "iscsi_login", "booted")...):
		t.Errorf("session of %s: state %s, stages %s; want done, through %v, iscsi_login, booted", sbSigned.name, signed.State, signed.StageList(", "), wantStages)
	default:
		t.Logf("session of %s: %.1fs (DLS: first DHCP to /boot/done; the test: %.1fs power-on to power-off): %s",
			sbSigned.name, signed.Seconds(), b.Wall.Seconds(), signed.StageList(", "))
	}
	switch {
	case refused == nil:
		t.Errorf("no session for %s", sbUnsigned.name)
	case refused.State != "failed" || refused.FailedStage != "grub" || !hasStages(*refused, wantStages...):
		t.Errorf("session of %s: state %s at %q, stages %s; want failed at grub (GRUB's report) after %v", sbUnsigned.name, refused.State, refused.FailedStage, refused.StageList(", "), wantStages)
	case refused.Seconds() > sbStageTimeout.Seconds():
		t.Errorf("session of %s failed after %.1fs: the stage timeout (%v), not GRUB's report", sbUnsigned.name, refused.Seconds(), sbStageTimeout)
	default:
		t.Logf("session of %s: failed at %s after %.1fs (GRUB's report; the stage timeout is %v): %s", sbUnsigned.name, refused.FailedStage, refused.Seconds(), sbStageTimeout, refused.StageList(", "))
	}
}

// newest is client's newest session in all (newest first), or nil.
func newest(all []lab.Session, client string) *lab.Session {
	for i := range all {
		if all[i].Client == client {
			return &all[i]
		}
	}
	return nil
}

func hasStages(s lab.Session, stages ...string) bool {
	return !slices.ContainsFunc(stages, func(st string) bool { return s.Stages[st].IsZero() })
}

// lineAt is when the console first showed s.
func lineAt(b *lab.Boot, s string) (time.Duration, bool) {
	for _, l := range b.Lines {
		if strings.Contains(l.Text, s) {
			return l.At, true
		}
	}
	return 0, false
}

// unsignPE writes src, a signed PE image (an EFI-stub kernel), to dst
// without its Authenticode signature: the certificate table (data
// directory 4, a file offset and a size, always at the end of the file)
// is cut off and its directory entry zeroed, as sbattach --remove does.
func unsignPE(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if len(b) < 0x40 || string(b[:2]) != "MZ" {
		return fmt.Errorf("%s: not a PE image", src)
	}
	pe := int(binary.LittleEndian.Uint32(b[0x3c:]))
	opt := pe + 4 + 20
	if len(b) < opt+152 || string(b[pe:pe+4]) != "PE\x00\x00" || binary.LittleEndian.Uint16(b[opt:]) != 0x20b {
		return fmt.Errorf("%s: not a PE32+ image", src)
	}
	dir := opt + 112 + 4*8 // PE32+: data directories at 112; the certificate table is the fifth
	off, size := int(binary.LittleEndian.Uint32(b[dir:])), int(binary.LittleEndian.Uint32(b[dir+4:]))
	if off == 0 || size == 0 || off+size > len(b) {
		return fmt.Errorf("%s: no certificate table (offset %d, size %d): not signed", src, off, size)
	}
	out := append([]byte(nil), b[:off]...)
	binary.LittleEndian.PutUint64(out[dir:], 0)
	return os.WriteFile(dst, out, 0o644)
}
