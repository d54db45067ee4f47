//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/e2e/lab"
)

// refStack is the reference the storm is compared with: dnsmasq (DHCP
// and TFTP), busybox httpd (the iPXE scripts) and tgtd (iSCSI), in the
// same namespace, on the same address and ports as DLS.
//
// tgt has no copy-on-write clones, so each machine's target has two
// LUNs: LUN 1 the shared image, read-only, and LUN 2 a 1 MiB file of its
// own that its write goes to. That is what a tgt admin can do short of a
// full copy per machine (1000 × the image).
type refStack struct {
	lab     *lab.Lab
	ns      *lab.NS
	dir     string
	control int
	procs   map[string]*lab.Proc
}

func startRef(ctx context.Context, l *lab.Lab, ns *lab.NS, dir, iface, serverIP, image, bootFile string, machines []machine) (*refStack, error) {
	r := &refStack{lab: l, ns: ns, dir: dir, control: 2000 + rand.IntN(5000), procs: map[string]*lab.Proc{}}
	tftp, web, disks := filepath.Join(dir, "tftp"), filepath.Join(dir, "www"), filepath.Join(dir, "disks")
	for _, d := range []string{tftp, filepath.Join(web, "boot"), disks} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	b, err := os.ReadFile(bootFile)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tftp, filepath.Base(bootFile)), b, 0o644); err != nil {
		return nil, err
	}
	for _, m := range machines {
		sc := fmt.Sprintf("#!ipxe\nset initiator-iqn %s:initiator:%s\nsanboot iscsi:%s:::1:%s:%s\n", iqnPrefix, m.Name, serverIP, iqnPrefix, m.Name)
		if err := os.WriteFile(filepath.Join(web, "boot", strings.ReplaceAll(m.MAC.String(), ":", "-")+".ipxe"), []byte(sc), 0o644); err != nil {
			return nil, err
		}
		f, err := os.Create(filepath.Join(disks, m.Name+".img"))
		if err != nil {
			return nil, err
		}
		err = f.Truncate(1 << 20)
		f.Close()
		if err != nil {
			return nil, err
		}
	}

	// tgtd first: setting up a thousand targets takes a while and must be
	// over before the storm. Two I/O threads per LUN, not tgtd's 16: with
	// 2,000 LUNs its default is 32,000 threads, the whole machine's PID
	// space (kernel.pid_max 32768), and every other process fails to fork.
	p, err := l.Start("tgtd", ns.Command("tgtd", "-f", "-C", strconv.Itoa(r.control), "--nr_iothreads", "2", "--iscsi", "portal="+serverIP+":3260"))
	if err != nil {
		return nil, err
	}
	r.procs["tgtd"] = p
	if err := r.waitTCP(ctx, serverIP+":3260"); err != nil {
		return nil, fmt.Errorf("tgtd: %w; log:\n%s", err, p.LogTail(20))
	}
	if err := r.targets(ctx, image, disks, machines); err != nil {
		return nil, err
	}

	p, err = l.Start("dnsmasq", ns.Command("dnsmasq", "--no-daemon", "--user=root", "--port=0",
		"--interface="+iface, "--bind-interfaces", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--dhcp-range=10.99.1.1,10.99.31.254,255.255.0.0,1h", "--dhcp-option=3,"+serverIP,
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "dnsmasq.pid"),
		// Like DLS: no ping before an offer (DLS's probe_timeout is 0 by
		// default), room for every machine, no per-packet log.
		"--no-ping", "--dhcp-authoritative", "--dhcp-lease-max=100000", "--quiet-dhcp", "--quiet-tftp",
		"--enable-tftp", "--tftp-root="+tftp, "--tftp-max=4000",
		"--dhcp-boot="+filepath.Base(bootFile)+",storm,"+serverIP))
	if err != nil {
		return nil, err
	}
	r.procs["dnsmasq"] = p
	p, err = l.Start("httpd", ns.Command("busybox", "httpd", "-f", "-p", serverIP+":9180", "-h", web))
	if err != nil {
		return nil, err
	}
	r.procs["httpd"] = p
	if err := r.waitTCP(ctx, serverIP+":9180"); err != nil {
		return nil, fmt.Errorf("httpd: %w", err)
	}
	// dnsmasq has no readiness signal: wait until it holds port 67.
	time.Sleep(500 * time.Millisecond)
	if p := r.procs["dnsmasq"]; p.Exited() {
		return nil, fmt.Errorf("dnsmasq exited; log:\n%s", p.LogTail(20))
	}
	return r, nil
}

// targets creates each machine's target with tgtadm, a few at a time.
func (r *refStack) targets(ctx context.Context, image, disks string, machines []machine) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 8)
	)
	for i, m := range machines {
		tid := strconv.Itoa(i + 1)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, a := range [][]string{
				{"--op", "new", "--mode", "target", "--tid", tid, "-T", iqnPrefix + ":" + m.Name},
				{"--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", "1", "-b", image},
				{"--op", "update", "--mode", "logicalunit", "--tid", tid, "--lun", "1", "--params", "readonly=1"},
				{"--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", "2", "-b", filepath.Join(disks, m.Name+".img")},
				{"--op", "bind", "--mode", "target", "--tid", tid, "--initiator-name", iqnPrefix + ":initiator:" + m.Name},
			} {
				if err := lab.Tgtadm(ctx, r.control, a...); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func (r *refStack) waitTCP(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return fmt.Errorf("nothing listens on %s: %w", addr, err)
		}
	}
}

// procsNow reads the reference's processes. httpd forks a child per
// request: their CPU shows in its children's time once reaped.
func (r *refStack) procsNow() map[string]procSample {
	out := map[string]procSample{}
	for name, p := range r.procs {
		if s, err := readProc(p.Pid()); err == nil {
			out[name] = s
		}
	}
	return out
}

func (r *refStack) stop() {
	for _, name := range []string{"dnsmasq", "httpd", "tgtd"} {
		if p := r.procs[name]; p != nil {
			p.Stop(5 * time.Second)
		}
	}
}
