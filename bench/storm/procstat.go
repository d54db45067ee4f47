//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// procSample is one reading of a process from /proc.
type procSample struct {
	Pid           int
	PPid          int
	CPU, ChildCPU float64 // seconds: utime+stime, cutime+cstime (reaped children)
	RSSKiB        int64   // VmRSS
	PeakRSSKiB    int64   // VmHWM
	Threads       int
	FDs           int
}

// readProc reads /proc/<pid>/stat, status and fd.
func readProc(pid int) (procSample, error) {
	s := procSample{Pid: pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces and parentheses: fields start
	// after the last ')'.
	text := string(b)
	i := strings.LastIndexByte(text, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(text[i+1:])
	if len(f) < 15 {
		return s, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// f[0] is field 3 (state): ppid 4, utime 14, stime 15, cutime 16, cstime 17.
	num := func(field int) float64 {
		v, _ := strconv.ParseFloat(f[field-3], 64)
		return v
	}
	s.PPid = int(num(4))
	s.CPU = (num(14) + num(15)) / clockTicks
	s.ChildCPU = (num(16) + num(17)) / clockTicks
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			s.RSSKiB = n
		case "VmHWM":
			s.PeakRSSKiB = n
		case "Threads":
			s.Threads = int(n)
		}
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		s.FDs = len(fds)
	}
	return s, nil
}

// children are the pids whose parent is pid, by the base name of their
// argv[0].
func children(pid int) map[string]int {
	out := map[string]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := readProc(c)
		if err != nil || s.PPid != pid {
			continue
		}
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c))
		argv0, _, _ := strings.Cut(string(cmd), "\x00")
		out[filepath.Base(argv0)] = c
	}
	return out
}

// procUsage is a process's use over a storm.
type procUsage struct {
	Name          string
	Pid           int
	CPU, ChildCPU float64 // seconds during the storm
	PeakRSSKiB    int64   // the process's lifetime peak (VmHWM)
}

// usage is the difference between two readings of the same processes
// (by name); a process that is new at the end (restarted) counts from
// zero.
func usage(before, after map[string]procSample) []procUsage {
	var out []procUsage
	for _, name := range sortedKeys(after) {
		a := after[name]
		u := procUsage{Name: name, Pid: a.Pid, CPU: a.CPU, ChildCPU: a.ChildCPU, PeakRSSKiB: a.PeakRSSKiB}
		if b, ok := before[name]; ok && b.Pid == a.Pid {
			u.CPU -= b.CPU
			u.ChildCPU -= b.ChildCPU
		}
		out = append(out, u)
	}
	return out
}

// treeCPU is the CPU (seconds, reaped children's included) of pid and
// every process below it: a browser and its renderers.
func treeCPU(pid int) float64 {
	parent := map[int]int{}
	samples := map[int]procSample{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if s, err := readProc(p); err == nil {
			parent[p], samples[p] = s.PPid, s
		}
	}
	var cpu float64
	for p, s := range samples {
		for q := p; q > 1; q = parent[q] {
			if q == pid {
				cpu += s.CPU + s.ChildCPU
				break
			}
		}
	}
	return cpu
}
