//go:build linux

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
	"strings"
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

// Dnsmasq6 starts dnsmasq in ns on iface as a DHCPv6 server (stateful:
// addresses first..last of a /64, no DNS, no router advertisements: the
// lab's router sends those), with extra options, e.g. the boot-file URL
// (--dhcp-option=option6:bootfile-url,<url>).
func (l *Lab) Dnsmasq6(name string, ns *NS, iface, first, last string, extra ...string) (*Proc, error) {
	dir := filepath.Join(l.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"dnsmasq", "--no-daemon", "--user=root", "--port=0", "--interface=" + iface, "--bind-interfaces",
		"--dhcp-range=" + first + "," + last + ",64,1h", "--dhcp-leasefile=" + filepath.Join(dir, "leases"),
		"--pid-file=" + filepath.Join(dir, "pid"), "--no-resolv", "--no-hosts", "--conf-file=/dev/null", "--log-dhcp"}
	return l.Start(name, ns.Command(append(args, extra...)...))
}

// Reference is the reference stack: dnsmasq (DHCP, and TFTP serving iPXE
// scripts) and tgt (iSCSI), and for Linux machines a static HTTP server
// (busybox httpd) for kernels and initrds, on one bridge of their own.
type Reference struct {
	NS      *NS
	Bridge  string
	Dnsmasq *Proc
	Tgtd    *Proc
	HTTPD   *Proc
	IQN     string
	// TFTP is dnsmasq's TFTP root: boot.ipxe is every machine's boot file.
	TFTP string

	lab     *Lab
	ip      string
	dir     string
	control int // tgtd's management port
}

// ReferenceStack starts the reference stack in ns on bridge (address
// ip/24, pool .100-.150) serving image (copied) to initiatorIQN: boot.ipxe
// sanboots LUN 1 of target IQN.
func (l *Lab) ReferenceStack(ns *NS, bridge, ip, image, initiatorIQN string) (*Reference, error) {
	r, err := l.ReferenceServers(ns, bridge, ip)
	if err != nil {
		return nil, err
	}
	r.IQN = "iqn.2026-11.io.dls:reference"
	disk := filepath.Join(r.dir, "disk.img")
	if err := copyFile(image, disk); err != nil {
		return nil, err
	}
	if err := r.AddTarget(1, r.IQN, disk); err != nil {
		return nil, err
	}
	script := fmt.Sprintf("#!ipxe\nset initiator-iqn %s\nsanboot iscsi:%s:::1:%s\n", initiatorIQN, ip, r.IQN)
	if err := os.WriteFile(filepath.Join(r.TFTP, "boot.ipxe"), []byte(script), 0o644); err != nil {
		return nil, err
	}
	if err := r.StartDnsmasq(); err != nil {
		return nil, err
	}
	return r, nil
}

// ReferenceServers starts tgtd (no targets yet) in ns on bridge (address
// ip/24) and makes the TFTP root; StartDnsmasq starts DHCP and TFTP once
// boot.ipxe is written.
func (l *Lab) ReferenceServers(ns *NS, bridge, ip string) (*Reference, error) {
	dir := filepath.Join(l.Dir, "reference")
	tftp := filepath.Join(dir, "tftp")
	if err := os.MkdirAll(tftp, 0o755); err != nil {
		return nil, err
	}
	// The control port names tgtd's management socket; pick one no other
	// tgtd uses.
	r := &Reference{NS: ns, Bridge: bridge, TFTP: tftp, lab: l, ip: ip, dir: dir, control: 2000 + rand.IntN(5000)}
	portal := net.JoinHostPort(ip, "3260") // an IPv6 address in brackets
	tgtd, err := l.Start("tgtd", ns.Command("tgtd", "-f", "-C", strconv.Itoa(r.control), "--iscsi", "portal="+portal))
	if err != nil {
		return nil, err
	}
	r.Tgtd = tgtd
	if err := waitTCP(ns, portal, 20*time.Second); err != nil {
		return nil, fmt.Errorf("tgtd: %w; log:\n%s", err, tgtd.LogTail(20))
	}
	return r, nil
}

// AddTarget makes target tid named iqn with disk as LUN 1 (tgt's LUN 0 is
// its controller), open to every initiator.
func (r *Reference) AddTarget(tid int, iqn, disk string) error {
	adm := func(args ...string) error { return Tgtadm(context.Background(), r.control, args...) }
	t := strconv.Itoa(tid)
	for _, a := range [][]string{
		{"--op", "new", "--mode", "target", "--tid", t, "-T", iqn},
		{"--op", "new", "--mode", "logicalunit", "--tid", t, "--lun", "1", "-b", disk},
		{"--op", "bind", "--mode", "target", "--tid", t, "-I", "ALL"},
	} {
		if err := adm(a...); err != nil {
			return err
		}
	}
	return nil
}

// StartHTTP serves dir over HTTP at ip:port with busybox httpd.
func (r *Reference) StartHTTP(dir string, port int) error {
	addr := net.JoinHostPort(r.ip, strconv.Itoa(port))
	p, err := r.lab.Start("reference-httpd", r.NS.Command("busybox", "httpd", "-f", "-p", addr, "-h", dir))
	if err != nil {
		return err
	}
	r.HTTPD = p
	return waitTCP(r.NS, addr, 20*time.Second)
}

// StartDnsmasq (re)starts the reference's dnsmasq: DHCP with boot file
// boot.ipxe and next-server itself, TFTP, and extra options.
func (r *Reference) StartDnsmasq(extra ...string) error {
	if r.Dnsmasq != nil {
		r.Dnsmasq.Stop(5 * time.Second)
	}
	args := append([]string{"--enable-tftp", "--tftp-root=" + r.TFTP, "--dhcp-boot=boot.ipxe"}, extra...)
	// One name: the same lease file (a new address costs dnsmasq's 3 s
	// ping) and one log, appended.
	dm, err := r.lab.Dnsmasq("reference-dnsmasq", r.NS, r.Bridge, prefix24(r.ip)+".100", prefix24(r.ip)+".150", "", args...)
	if err != nil {
		return err
	}
	r.Dnsmasq = dm
	return nil
}

// Tgtadm runs tgtadm against the tgtd listening on control port control.
// It retries for up to 5 s, because tgtd answers on its control socket
// only a moment after it starts.
func Tgtadm(ctx context.Context, control int, args ...string) error {
	a := append([]string{"tgtadm", "-C", strconv.Itoa(control), "--lld", "iscsi"}, args...)
	var err error
	for try := 0; try < 50; try++ {
		out, rerr := exec.CommandContext(ctx, a[0], a[1:]...).CombinedOutput()
		if rerr == nil {
			return nil
		}
		err = fmt.Errorf("%s: %v: %s", strings.Join(a, " "), rerr, strings.TrimSpace(string(out)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
	return err
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
