package sysmetrics

// Parsers for the few /proc files the collector reads. Each returns an
// error naming the file, so the debug log says which file and which line
// made a series go missing. Formats: proc(5) and the kernel's
// Documentation/admin-guide/iostats.rst.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// cpuTimes is the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	total uint64 // every state that accounts wall time
	idle  uint64 // idle + iowait: waiting, not working
}

// readCPUTimes reads the first line of /proc/stat only: the rest (one line
// per CPU, interrupt counts) can be large and is not needed.
func readCPUTimes(path string) (cpuTimes, error) {
	f, err := os.Open(path)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read cpu times: %w", err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return cpuTimes{}, fmt.Errorf("read cpu times: %s: %w", path, err)
	}
	fields := strings.Fields(line)
	// user nice system idle [iowait irq softirq steal [guest guest_nice]]:
	// the last four were added over the 2.6 series, so only four are
	// required.
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("read cpu times: %s: unexpected first line %q", path, strings.TrimSpace(line))
	}
	var t cpuTimes
	// guest and guest_nice (fields 9 and 10) are already included in user
	// and nice; adding them would count guest time twice.
	for i, s := range fields[1:min(len(fields), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("read cpu times: %s: field %d: %w", path, i+1, err)
		}
		t.total += v
		if i == 3 || i == 4 { // idle, iowait
			t.idle += v
		}
	}
	return t, nil
}

// readMeminfo returns MemTotal and MemAvailable in bytes. MemAvailable
// exists since Linux 3.14; without it the memory series are omitted rather
// than guessed from MemFree, which undercounts reclaimable cache.
func readMeminfo(path string) (total, available uint64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read memory info: %w", err)
	}
	var haveTotal, haveAvailable bool
	for line := range strings.Lines(string(data)) {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || (key != "MemTotal" && key != "MemAvailable") {
			continue
		}
		// "MemTotal:       24684092 kB": the unit is always kB (KiB).
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, 0, fmt.Errorf("read memory info: %s: unexpected line %q", path, strings.TrimSpace(line))
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read memory info: %s: %s: %w", path, key, err)
		}
		if key == "MemTotal" {
			total, haveTotal = kb*1024, true
		} else {
			available, haveAvailable = kb*1024, true
		}
	}
	if !haveTotal || !haveAvailable {
		return 0, 0, fmt.Errorf("read memory info: %s: MemTotal or MemAvailable missing", path)
	}
	return total, available, nil
}

// netBytes is one interface's byte counters.
type netBytes struct {
	rx, tx uint64
}

// readNetDev returns the byte counters of every interface in
// /proc/net/dev except loopback, whose traffic never leaves the host.
// Loopback is recognised by its name, "lo", the only name the kernel gives
// it.
func readNetDev(path string) (map[string]netBytes, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read network counters: %w", err)
	}
	ifaces := make(map[string]netBytes)
	n := 0
	for line := range strings.Lines(string(data)) {
		n++
		if n <= 2 { // two header lines
			continue
		}
		// "  eth0: 147113491 7838 0 0 0 0 0 0 589706 5512 ...": an
		// interface name cannot contain ':', and old kernels put no space
		// after it, so split on the colon rather than on spaces.
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("read network counters: %s: line %d: no interface name", path, n)
		}
		name = strings.TrimSpace(name)
		if name == "lo" {
			continue
		}
		// Receive has 8 columns (bytes first), then transmit (bytes first).
		fields := strings.Fields(rest)
		if len(fields) < 9 {
			return nil, fmt.Errorf("read network counters: %s: interface %s: %d columns, want 16", path, name, len(fields))
		}
		rx, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read network counters: %s: interface %s: receive bytes: %w", path, name, err)
		}
		tx, err := strconv.ParseUint(fields[8], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("read network counters: %s: interface %s: transmit bytes: %w", path, name, err)
		}
		ifaces[name] = netBytes{rx: rx, tx: tx}
	}
	return ifaces, nil
}

// readUptime returns the seconds since boot from /proc/uptime.
func readUptime(path string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read uptime: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0, fmt.Errorf("read uptime: %s: empty", path)
	}
	up, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return 0, fmt.Errorf("read uptime: %s: %w", path, err)
	}
	if up <= 0 {
		return 0, fmt.Errorf("read uptime: %s: %v seconds is not a usable divisor", path, up)
	}
	return up, nil
}

// diskSectorSize is the unit of the sector columns of /proc/diskstats:
// always 512 bytes, whatever the device's real sector size.
const diskSectorSize = 512

// layeredDiskPrefixes name block devices whose I/O is also counted on the
// disks beneath them (or that are not disks at all): loop and RAM disks,
// device-mapper (LVM, dm-crypt, multipath), md RAID and ZFS zvols. Skipping
// them counts every byte once, at the physical disk.
var layeredDiskPrefixes = []string{"loop", "ram", "zram", "dm-", "md", "zd"}

// readDiskstats returns bytes read and written, summed over whole disks.
// A line is skipped when its name starts with a layeredDiskPrefixes entry
// or when it is a partition of another listed device (see isPartition).
func readDiskstats(path string) (read, written uint64, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("read disk counters: %w", err)
	}
	// "   8       0 sda 34759 5831 1473770 4670 8460 39379 3024000 ...":
	// major, minor, name, then the counters; the name is all that is needed
	// to tell partitions, so collect every name first.
	var lines [][]string
	names := make(map[string]bool)
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 3 {
			return 0, 0, fmt.Errorf("read disk counters: %s: unexpected line %q", path, strings.TrimSpace(line))
		}
		lines = append(lines, fields)
		names[fields[2]] = true
	}
	for _, fields := range lines {
		name := fields[2]
		if hasAnyPrefix(name, layeredDiskPrefixes) || isPartition(name, names) {
			continue
		}
		// Columns after the name: 1 reads completed, 2 reads merged,
		// 3 sectors read, 4 ms reading, 5 writes completed, 6 writes
		// merged, 7 sectors written; a whole disk has at least 11.
		if len(fields) < 14 {
			return 0, 0, fmt.Errorf("read disk counters: %s: disk %s: %d columns, want at least 14", path, name, len(fields))
		}
		r, err := strconv.ParseUint(fields[5], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read disk counters: %s: disk %s: sectors read: %w", path, name, err)
		}
		w, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("read disk counters: %s: disk %s: sectors written: %w", path, name, err)
		}
		read += r * diskSectorSize
		written += w * diskSectorSize
	}
	return read, written, nil
}

// isPartition reports whether name is a partition of another device in
// names, by the kernel's own naming rule (disk_name in
// block/partitions/core.c): a disk whose name ends in a digit gets
// partitions "<disk>p<N>" (nvme0n1p1, mmcblk0p2), any other disk
// "<disk><N>" (sda1, vdb3). The rule, rather than a list of driver
// prefixes, keeps unknown disk types counted and never mistakes nvme0n10
// for a partition of nvme0n1.
func isPartition(name string, names map[string]bool) bool {
	base := strings.TrimRight(name, "0123456789")
	if base == name || base == "" {
		return false // no partition number
	}
	if names[base] && !endsInDigit(base) {
		return true
	}
	disk, ok := strings.CutSuffix(base, "p")
	return ok && names[disk] && endsInDigit(disk)
}

func endsInDigit(s string) bool {
	return s != "" && s[len(s)-1] >= '0' && s[len(s)-1] <= '9'
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
