//go:build linux

// Package lab builds the test network the end-to-end tests and the demo
// boot real machines in: network namespaces with bridges and taps, the DLS
// host (bin/dls serve and its plugins) on a generated config, QEMU machines
// whose NIC ROM is iPXE, a reference stack (dnsmasq + tgt), a Prometheus
// server, and an IPv6 router advertiser standing in for the site's router.
//
// Everything it creates is undone by Lab.Close: processes are killed by
// pid, namespaces deleted by name (all named <prefix>-<role>). It needs
// root (network namespaces, taps, ports below 1024).
package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// NS is a network namespace the lab created.
type NS struct {
	Name string
}

// run runs a command and returns its error with its output.
func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Exec returns the arguments that run args inside the namespace.
func (n *NS) Exec(args ...string) []string {
	return append([]string{"ip", "netns", "exec", n.Name}, args...)
}

// Run runs args inside the namespace.
func (n *NS) Run(args ...string) error { return run(n.Exec(args...)...) }

// Command is exec.Command of args inside the namespace.
func (n *NS) Command(args ...string) *exec.Cmd {
	a := n.Exec(args...)
	return exec.Command(a[0], a[1:]...)
}

// Do runs fn on an OS thread moved into the namespace. Sockets fn opens
// stay in the namespace for their life, whichever goroutine uses them.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it ends with the goroutine rather
		// than go back to the scheduler in another namespace.
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + n.Name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.Name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// Dial opens a TCP connection from inside the namespace.
func (n *NS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient is an HTTP client whose connections start inside the
// namespace (its 127.0.0.1 is the namespace's loopback).
func (n *NS) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{DialContext: n.Dial, DisableKeepAlives: true},
	}
}

// Bridge creates bridge name with address cidr (may be empty), up.
func (n *NS) Bridge(name, cidr string) error {
	if err := n.Run("ip", "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	// No STP, no forwarding delay: a tap joins and forwards at once.
	if err := n.Run("ip", "link", "set", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"); err != nil {
		return err
	}
	if cidr != "" {
		if err := n.Run("ip", "addr", "add", cidr, "dev", name); err != nil {
			return err
		}
	}
	return n.Run("ip", "link", "set", name, "up")
}

// Tap creates tap name on bridge, up (a QEMU machine opens it by name).
func (n *NS) Tap(name, bridge string) error {
	if err := n.Run("ip", "tuntap", "add", name, "mode", "tap"); err != nil {
		return err
	}
	if err := n.Run("ip", "link", "set", name, "master", bridge); err != nil {
		return err
	}
	return n.Run("ip", "link", "set", name, "up")
}

// Lab owns namespaces and processes, and undoes them in Close.
type Lab struct {
	// Prefix starts every namespace name (<prefix>-<role>); run.sh's trap
	// deletes what a killed run left by it.
	Prefix string
	// Dir holds configs, state and logs.
	Dir string

	mu      sync.Mutex
	ns      []*NS
	procs   []*Proc
	closers []func()
	closed  bool
	linkSeq int
	logf    func(format string, args ...any)
}

// New is a lab whose names start with prefix and whose files go to dir.
// logf receives progress lines (nil: none).
func New(prefix, dir string, logf func(format string, args ...any)) *Lab {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Lab{Prefix: prefix, Dir: dir, logf: logf}
}

// Logf prints a progress line.
func (l *Lab) Logf(format string, args ...any) { l.logf(format, args...) }

// NS creates the namespace <prefix>-<role> with loopback up.
func (l *Lab) NS(role string) (*NS, error) {
	n := &NS{Name: l.Prefix + "-" + role}
	_ = run("ip", "netns", "del", n.Name) // a leftover of a killed run
	if err := run("ip", "netns", "add", n.Name); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.ns = append(l.ns, n)
	l.mu.Unlock()
	return n, n.Run("ip", "link", "set", "lo", "up")
}

// Veth links namespace a (interface ia) and b (ib), both up.
func (l *Lab) Veth(a *NS, ia string, b *NS, ib string) error {
	l.mu.Lock()
	l.linkSeq++
	tmpA, tmpB := fmt.Sprintf("dle%da%d", os.Getpid()%10000, l.linkSeq), fmt.Sprintf("dle%db%d", os.Getpid()%10000, l.linkSeq)
	l.mu.Unlock()
	if err := run("ip", "link", "add", tmpA, "type", "veth", "peer", "name", tmpB); err != nil {
		return err
	}
	for _, s := range []struct {
		tmp, ns, name string
	}{{tmpA, a.Name, ia}, {tmpB, b.Name, ib}} {
		if err := run("ip", "link", "set", s.tmp, "netns", s.ns, "name", s.name); err != nil {
			_ = run("ip", "link", "del", tmpA)
			return err
		}
	}
	if err := a.Run("ip", "link", "set", ia, "up"); err != nil {
		return err
	}
	return b.Run("ip", "link", "set", ib, "up")
}

// OnClose runs fn in Close, before processes are killed (last added, first
// run).
func (l *Lab) OnClose(fn func()) {
	l.mu.Lock()
	l.closers = append(l.closers, fn)
	l.mu.Unlock()
}

// Close stops every process the lab started (SIGTERM, then SIGKILL after
// a grace period) and deletes its namespaces. It may be called again.
func (l *Lab) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	closers, procs, nss := l.closers, l.procs, l.ns
	l.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	var wg sync.WaitGroup
	for i := len(procs) - 1; i >= 0; i-- {
		wg.Add(1)
		go func(p *Proc) { defer wg.Done(); p.Stop(10 * time.Second) }(procs[i])
	}
	wg.Wait()
	var errs []error
	for _, n := range nss {
		if err := run("ip", "netns", "del", n.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		l.logf("lab cleanup: %v", errors.Join(errs...))
	}
}
