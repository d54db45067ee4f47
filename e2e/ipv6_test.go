//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/e2e/lab"
)

// TestIPv6: a machine on an IPv6-only segment (no IPv4 address on it at
// all) sanboots its clone over iSCSI on IPv6 from DLS alone. The segment
// is fd00:77::/64; the lab's router advertiser sends the Managed flag and
// the prefix (on-link, no autoconfiguration), as radvd would; DLS runs
// protocol "dhcp6" in full mode with a pool, and its HTTP, TFTP and iSCSI
// listeners on fd00:77::1. The NIC's iPXE ROM (BIOS) asks DHCPv6 (user
// class iPXE), gets its script URL (option 59,
// http://[fd00:77::1]:9180/boot/<mac>.ipxe), and the script sanboots
// iscsi:[fd00:77::1]::3260:0:<target>: the boot sector (e2e/testdata)
// reads and writes its clone. Checked: the DHCPv6 lease in the store, the
// session dhcp6 → script → iscsi_login → handoff (no dhcp), the iSCSI
// connection from the leased address, the boot sector's lines on the
// console.
//
// At the same time: a UEFI machine (OVMF, iPXE's EFI ROM) on the same
// segment goes the same way and sanboots its own clone, an image whose EFI
// system partition holds a small EFI application
// (e2e/testdata/efi-payload.asm, at \EFI\BOOT\BOOTX64.EFI), which prints
// its line and exits QEMU. And the BIOS machine's twin boots from the
// reference on an IPv6-only segment of its own: dnsmasq (DHCPv6, option
// 59 naming the script), busybox httpd (the script) and tgt (iSCSI), for
// the reference time. See README.md.

const (
	v6Prefix    = "fd00:77::/64"
	v6IP        = "fd00:77::1" // DLS on br6, the segment's only server
	v6RefPrefix = "fd00:88::/64"
	v6RefIP     = "fd00:88::1" // the reference, on br6r in <prefix>-v6ref
)

var (
	v6Machine = machine{name: "v6-1", mac: "52:54:00:e2:06:01"} // BIOS
	v6UEFI    = machine{name: "v6-u", mac: "52:54:00:e2:06:02"} // UEFI
)

// v6Boot is one boot of TestIPv6 and what was seen during it.
type v6Boot struct {
	label string
	b     *lab.Boot
	err   error
	conns string // DLS's (or tgt's) established iSCSI connections at DLS-READY
}

func TestIPv6(t *testing.T) {
	needRoot(t)
	for _, f := range []string{lab.OVMFCode, lab.OVMFVars} {
		if _, err := os.Stat(f); err != nil {
			skip(t, "%v: make e2e installs ovmf", err)
		}
	}
	l := newLab(t, "dls-e2e-ipv6-")
	root, err := lab.RepoRoot()
	must(t, err)
	start := time.Now()
	bin := filepath.Join(l.Dir, "bin")
	must(t, lab.Build(root, bin))
	image := filepath.Join(l.Dir, "disk.img")
	must(t, lab.Image(root, image))
	efiImage := filepath.Join(l.Dir, "efi.img")
	must(t, lab.EFIImage(root, efiImage))

	// DLS's segment: a bridge with a ULA and no IPv4 address.
	ns := v6Segment(t, l, "v6dls", "br6", v6IP, v6Prefix)
	vm, err := l.Machine(ns, "br6", "t-v6", v6Machine.name, v6Machine.mac)
	must(t, err)
	vmU, err := l.Machine(ns, "br6", "t-v6u", v6UEFI.name, v6UEFI.mac)
	must(t, err)
	hostDir := filepath.Join(l.Dir, "dls")
	must(t, os.MkdirAll(hostDir, 0o755))
	cfg, err := lab.WriteHostConfig(hostDir, bin, lab.HostConfig{
		BootIP:    v6IP,
		Image:     image,
		RawImages: map[string]string{"efi": efiImage},
		Clients:   []lab.HostClient{{Name: v6Machine.name, MAC: v6Machine.mac}, {Name: v6UEFI.name, MAC: v6UEFI.mac, Image: "efi"}},
		DHCP6:     []lab.HostDHCP6{{Name: "lan6", Interface: "br6", ServerIP: v6IP, PoolStart: "fd00:77::1:100", PoolEnd: "fd00:77::1:1ff"}},
	})
	must(t, err)
	// dls validate --deep takes the IPv6-only config: listeners on
	// [fd00:77::1] (TFTP's checked as UDP over IPv6), no IPv4 anywhere.
	out, err := ns.Command(filepath.Join(bin, "dls"), "validate", "--deep", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "deep checks passed") || strings.Contains(string(out), "cannot bind") {
		t.Errorf("dls validate --deep of the IPv6-only config: %v\n%s", err, out)
	}
	host := l.OpenHost(ns, bin, hostDir, cfg)
	must(t, host.UserAdd("admin", adminPassword))
	must(t, host.Start())

	// The reference's segment: dnsmasq, busybox httpd and tgt on
	// fd00:88::1.
	refNS := v6Segment(t, l, "v6ref", "br6r", v6RefIP, v6RefPrefix)
	refs, err := l.ReferenceServers(refNS, "br6r", v6RefIP)
	must(t, err)
	refDisk := filepath.Join(l.Dir, "reference-v6.img")
	must(t, lab.CopySparse(image, refDisk))
	refIQN := iqnPrefix + ":reference-" + v6Machine.name
	must(t, refs.AddTarget(1, refIQN, refDisk))
	web := filepath.Join(l.Dir, "reference-http")
	must(t, os.MkdirAll(web, 0o755))
	script := fmt.Sprintf("#!ipxe\nset initiator-iqn %s:initiator:ref6\nsanboot iscsi:[%s]::3260:1:%s\n", iqnPrefix, v6RefIP, refIQN)
	must(t, os.WriteFile(filepath.Join(web, "boot.ipxe"), []byte(script), 0o644))
	must(t, refs.StartHTTP(web, 8080))
	_, err = l.Dnsmasq6("reference-dnsmasq6", refNS, "br6r", "fd00:88::1:100", "fd00:88::1:1ff",
		"--dhcp-option=option6:bootfile-url,http://["+v6RefIP+"]:8080/boot.ipxe")
	must(t, err)
	refVM, err := l.Machine(refNS, "br6r", "r-v6", v6Machine.name+"@dnsmasq", v6Machine.mac)
	must(t, err)
	t.Logf("setup done in %.1fs: %s", time.Since(start).Seconds(), host.Config)

	// The three boots at once. While a boot sector waits at DLS-READY its
	// iSCSI session is up: the connection's peer is the machine's address.
	boots := []*v6Boot{{label: "DLS, BIOS"}, {label: "DLS, UEFI"}, {label: "reference, BIOS"}}
	var wg sync.WaitGroup
	for i, run := range []struct {
		vm   *lab.Machine
		ns   *lab.NS
		opts lab.BootOptions
	}{
		{vm, ns, lab.BootOptions{Timeout: 4 * time.Minute}},
		// Its clone's EFI system partition holds the payload, which
		// UEFI iPXE's sanboot loads (\EFI\BOOT\BOOTX64.EFI).
		{vmU, ns, lab.BootOptions{Timeout: 4 * time.Minute, UEFI: true}},
		{refVM, refNS, lab.BootOptions{Timeout: 4 * time.Minute}},
	} {
		r := boots[i]
		run.opts.OnReady = func() {
			out, _ := run.ns.Command("ss", "-Htn", "state", "established", "( sport = :3260 )").CombinedOutput()
			r.conns = string(out)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.b, r.err = run.vm.Boot(context.Background(), run.opts)
		}()
	}
	wg.Wait()
	for _, r := range boots {
		if r.err != nil {
			t.Errorf("%s: %v", r.label, r.err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	bios, uefi, ref := boots[0].b, boots[1].b, boots[2].b
	for _, r := range []*v6Boot{boots[0], boots[2]} {
		if !r.b.Ran || !r.b.Payload || !r.b.Wrote {
			t.Errorf("%s: the boot sector did not run to the end (ran %v, payload %v, wrote %v):\n%s", r.label, r.b.Ran, r.b.Payload, r.b.Wrote, r.b.Tail(30))
		}
	}
	for _, b := range []*lab.Boot{bios, uefi} {
		if !b.Has("http://[" + v6IP + "]:9180/boot/") {
			t.Errorf("%s: the console shows no script fetched from http://[%s]:9180:\n%s", b.Machine, v6IP, b.Tail(40))
		}
	}
	if !uefi.Has("DLS-EFI-PAYLOAD ran from its SAN disk") {
		t.Errorf("UEFI: the EFI payload did not run from the clone:\n%s", uefi.Tail(30))
	}

	// The DHCPv6 leases, in the store.
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(host.Dir, "var", "dls.db"), nil)
	must(t, err)
	leases, err := st.LoadLeases(ctx, "")
	st.Close()
	must(t, err)
	lease := map[string]netip.Addr{}
	for _, ls := range leases {
		if ls.Address.Is6() && netip.MustParsePrefix(v6Prefix).Contains(ls.Address) {
			lease[ls.MAC] = ls.Address
		}
	}
	for _, m := range []machine{v6Machine, v6UEFI} {
		if !lease[m.mac].IsValid() {
			t.Fatalf("no DHCPv6 lease of %s in the store: %+v", m.mac, leases)
		}
	}
	if a := lease[v6Machine.mac]; !strings.Contains(boots[0].conns, "["+a.String()+"]:") {
		t.Errorf("iSCSI connections at DLS-READY: %q; want one from [%s]", boots[0].conns, a)
	} else {
		t.Logf("iSCSI connection at DLS-READY: %s", strings.Join(strings.Fields(boots[0].conns), " "))
	}

	// The sessions: dhcp6 → script → iscsi_login → handoff, no dhcp.
	token, err := host.Login(ctx, "admin", adminPassword)
	must(t, err)
	sessions := map[string]lab.Session{}
	for _, m := range []machine{v6Machine, v6UEFI} {
		var s lab.Session
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(500 * time.Millisecond) {
			ss, err := host.Sessions(ctx, token, m.name)
			must(t, err)
			if len(ss) > 0 {
				s = ss[0]
			}
			if s.State == "done" || time.Now().After(deadline) {
				break
			}
		}
		sessions[m.name] = s
		for _, stage := range []string{"dhcp6", "script", "iscsi_login", "handoff"} {
			if _, ok := s.Stages[stage]; !ok {
				t.Errorf("%s: session has no stage %s: %s", m.name, stage, s.StageList(", "))
			}
		}
		if _, ok := s.Stages["dhcp"]; ok {
			t.Errorf("%s: session has a DHCPv4 stage on an IPv6-only segment: %s", m.name, s.StageList(", "))
		}
		if s.State != "done" || s.Address != lease[m.mac].String() {
			t.Errorf("%s: session %s, address %q; want done, %s", m.name, s.State, s.Address, lease[m.mac])
		}
	}

	// What the test and DLS measured.
	s := sessions[v6Machine.name]
	t.Logf("IPv6-only boots (three at once, TCG):")
	// iPXE's first DHCPv6 Solicit (the session's start) comes seconds
	// after power-on, its script fetch only when "Configuring" ends: the
	// time in between is iPXE waiting for DHCPv4 to give up.
	t.Logf("  DLS, BIOS: DHCPv6 Solicit at %.2fs after power-on, script fetched %.2fs after it",
		s.Started.Sub(bios.Start).Seconds(), s.Stages["script"].Sub(s.Started).Seconds())
	t.Logf("  %-16s power-on to the boot sector's exit %6.2fs, script fetched at %6.2fs; DLS session %.2fs: %s",
		"DLS, BIOS", bios.Wall.Seconds(), fetchedAt(bios), s.Seconds(), s.StageList(", "))
	t.Logf("  %-16s power-on to the boot sector's exit %6.2fs, script fetched at %6.2fs",
		"reference, BIOS", ref.Wall.Seconds(), fetchedAt(ref))
	u := sessions[v6UEFI.name]
	t.Logf("  %-16s power-on to the EFI payload's exit %6.2fs, script fetched at %6.2fs; DLS session %.2fs: %s",
		"DLS, UEFI", uefi.Wall.Seconds(), fetchedAt(uefi), u.Seconds(), u.StageList(", "))
	t.Logf("  DLS/reference (BIOS, power-on to exit): %.2f", bios.Wall.Seconds()/ref.Wall.Seconds())
}

// v6Segment makes namespace <prefix>-role with bridge br holding ip/64
// and no IPv4 address, and a router advertiser there sending the Managed
// flag and prefix. No duplicate address detection: the address is usable
// at once.
func v6Segment(t *testing.T, l *lab.Lab, role, br, ip, prefix string) *lab.NS {
	t.Helper()
	ns, err := l.NS(role)
	must(t, err)
	for _, k := range []string{"all", "default"} { // procps's sysctl may be missing
		must(t, ns.Run("sh", "-c", "echo 0 > /proc/sys/net/ipv6/conf/"+k+"/accept_dad"))
	}
	must(t, ns.Bridge(br, ""))
	must(t, ns.Run("ip", "-6", "addr", "add", ip+"/64", "dev", br, "nodad"))
	_, err = l.ManagedRouter(ns, br, netip.MustParsePrefix(prefix))
	must(t, err)
	if out, err := ns.Command("ip", "-4", "-o", "addr", "show", "dev", br).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("%s has IPv4 addresses (%v): %s", br, err, out)
	}
	return ns
}

// fetchedAt is when the boot's console showed iPXE's script fetched
// ("... ok"), in seconds from power-on; -1 if it did not.
func fetchedAt(b *lab.Boot) float64 {
	for _, l := range b.Lines {
		if strings.Contains(l.Text, ".ipxe... ok") {
			return l.At.Seconds()
		}
	}
	return -1
}
