package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Dnsmasq starts dnsmasq in ns on iface as a DHCP server for
// first..last (a /24), with no PXE options: the site's DHCP server beside
// DLS in proxy mode. router, when set, is option 3.
func (l *Lab) Dnsmasq(name string, ns *NS, iface, first, last, router string, extra ...string) (*Proc, error) {
	dir := filepath.Join(l.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"dnsmasq", "--no-daemon", "--user=root", "--port=0", "--interface=" + iface, "--bind-interfaces",
		"--dhcp-range=" + first + "," + last + ",255.255.255.0,1h", "--dhcp-leasefile=" + filepath.Join(dir, "leases"),
		"--pid-file=" + filepath.Join(dir, "pid"), "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--log-dhcp"}
	if router != "" {
		args = append(args, "--dhcp-option=3,"+router)
	}
	args = append(args, extra...)
	return l.Start(name, ns.Command(args...))
}

// Reference is the reference stack: dnsmasq (DHCP, and TFTP serving one
// iPXE script) and tgt (iSCSI) on one bridge of their own, serving a copy
// of the same image to a machine with the same MAC.
type Reference struct {
	NS      *NS
	Bridge  string
	Dnsmasq *Proc
	Tgtd    *Proc
	IQN     string

	lab  *Lab
	ip   string
	tftp string
}

// ReferenceStack starts the reference stack in ns on bridge (address
// ip/24, pool .100-.150) serving image (copied) to initiatorIQN.
func (l *Lab) ReferenceStack(ns *NS, bridge, ip, image, initiatorIQN string) (*Reference, error) {
	dir := filepath.Join(l.Dir, "reference")
	tftp := filepath.Join(dir, "tftp")
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		return nil, err
	}
	disk := filepath.Join(dir, "disk.img")
	if err := copyFile(image, disk); err != nil {
		return nil, err
	}
	r := &Reference{NS: ns, Bridge: bridge, IQN: "iqn.2026-11.io.dls:reference", lab: l, ip: ip, tftp: tftp}
	script := fmt.Sprintf("#!ipxe\nset initiator-iqn %s\nsanboot iscsi:%s:::1:%s\n", initiatorIQN, ip, r.IQN)
	if err := os.WriteFile(filepath.Join(tftp, "boot.ipxe"), []byte(script), 0o644); err != nil {
		return nil, err
	}

	// tgtd: its LUN 0 is its controller, the disk is LUN 1. The control
	// port names its management socket; pick one no other tgtd uses.
	control := 2000 + rand.IntN(5000)
	tgtd, err := l.Start("tgtd", ns.Command("tgtd", "-f", "-C", strconv.Itoa(control), "--iscsi", "portal="+ip+":3260"))
	if err != nil {
		return nil, err
	}
	r.Tgtd = tgtd
	if err := waitTCP(ns, ip+":3260", 20*time.Second); err != nil {
		return nil, fmt.Errorf("tgtd: %w; log:\n%s", err, tgtd.LogTail(20))
	}
	adm := func(args ...string) error {
		a := append([]string{"tgtadm", "-C", strconv.Itoa(control), "--lld", "iscsi"}, args...)
		var err error
		for try := 0; try < 50; try++ {
			if err = run(a...); err == nil {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return err
	}
	for _, a := range [][]string{
		{"--op", "new", "--mode", "target", "--tid", "1", "-T", r.IQN},
		{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", disk},
		{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"},
	} {
		if err := adm(a...); err != nil {
			return nil, err
		}
	}

	if err := r.StartDnsmasq(); err != nil {
		return nil, err
	}
	return r, nil
}

// StartDnsmasq (re)starts the reference's dnsmasq: DHCP with boot file
// boot.ipxe and next-server itself, TFTP, and extra options.
func (r *Reference) StartDnsmasq(extra ...string) error {
	if r.Dnsmasq != nil {
		r.Dnsmasq.Stop(5 * time.Second)
	}
	args := append([]string{"--enable-tftp", "--tftp-root=" + r.tftp, "--dhcp-boot=boot.ipxe"}, extra...)
	// One name: the same lease file (a new address costs dnsmasq's 3 s
	// ping) and one log, appended.
	dm, err := r.lab.Dnsmasq("reference-dnsmasq", r.NS, r.Bridge, prefix24(r.ip)+".100", prefix24(r.ip)+".150", "", args...)
	if err != nil {
		return err
	}
	r.Dnsmasq = dm
	return nil
}

func prefix24(ip string) string {
	v4 := net.ParseIP(ip).To4()
	return fmt.Sprintf("%d.%d.%d", v4[0], v4[1], v4[2])
}

func waitTCP(ns *NS, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := ns.Dial(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// Need reports the first of the commands missing from PATH.
func Need(cmds ...string) error {
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not found", c)
		}
	}
	return nil
}
