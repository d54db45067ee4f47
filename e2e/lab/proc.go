//go:build linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Proc is a long-running process the lab started (the host, dnsmasq,
// tgtd, Prometheus), logging to a file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string // the log file
	done chan struct{}
	err  error
}

// Start runs cmd in the background, its output to <dir>/<name>.log, and
// stops it in Close.
func (l *Lab) Start(name string, cmd *exec.Cmd) (*Proc, error) {
	logPath := filepath.Join(l.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := spawn(cmd); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// spawner is a goroutine locked to an OS thread that never exits: every
// process the lab starts is forked from it with a parent-death signal, so
// that all of them die with the test when it is killed outright (a test
// timeout, kill -9). The signal follows the thread that forked, not the
// process, and the Go runtime ends the threads of goroutines that exit
// while locked (Do's), which may be any earlier thread: hence one thread
// kept for forking. ip netns exec execs its command, so the signal
// reaches dls, QEMU and the rest themselves.
var spawner = func() chan func() {
	c := make(chan func())
	go func() {
		runtime.LockOSThread()
		for fn := range c {
			fn()
		}
	}()
	return c
}()

// spawn starts cmd on the spawner thread with a parent-death signal.
func spawn(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	errc := make(chan error, 1)
	spawner <- func() { errc <- cmd.Start() }
	return <-errc
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to grace, then SIGKILL.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// LogText is the process's log so far.
func (p *Proc) LogText() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// LogTail is the last n lines of the log.
func (p *Proc) LogTail(n int) string {
	lines := strings.Split(strings.TrimRight(p.LogText(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
