// Package sysmetrics reports the host machine's own health — CPU, memory,
// network, disk and process uptime — as the dls_* system series
// (dls_cpu_usage_percent, dls_memory_*, dls_network_throughput_bytes,
// dls_disk_io_bytes_total, dls_uptime_seconds).
//
// It is a node_exporter-style prometheus.Collector that reads /proc on
// every scrape. A file that cannot be read or parsed never fails the
// scrape: its series are left out of that scrape and the reason is logged
// at debug level, so a partial /proc (containers, old kernels) still gives
// every series it can.
//
// Families (all unlabelled except where shown):
//
//	dls_cpu_usage_percent                  gauge    busy share of all CPUs, 0-100
//	dls_memory_usage_bytes                 gauge    MemTotal - MemAvailable
//	dls_memory_available_bytes             gauge    MemAvailable
//	dls_network_throughput_bytes{direction=rx|tx}   gauge    bytes/s, all interfaces but lo
//	dls_disk_io_bytes_total{direction=read|write}   counter  bytes, whole disks
//	dls_uptime_seconds                     gauge    since New, i.e. since the host process started
//
// The CPU and network gauges cover the interval since the previous scrape;
// the first scrape, having none, reports the average since boot.
//
// Disk I/O counts whole disks only: partitions (named by the kernel's
// "sda1" / "nvme0n1p1" rule) repeat their disk's I/O, and loop, ram, zram,
// dm-*, md* and zd* (ZFS zvol) devices sit on top of other disks or are not
// disks at all, so counting them would count the same bytes twice.
//
// Network throughput is summed over interfaces on purpose: a per-interface
// label would make the series set follow veth and tap churn on a boot
// server, and the catalogue asks for one number per direction.
package sysmetrics

import (
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Logger is the one method the collector needs to say why a series was
// left out of a scrape. hclog.Logger and *slog.Logger both satisfy it, so
// the host can pass whichever it already has.
type Logger interface {
	Debug(msg string, args ...any)
}

// Options configures a Collector. The zero value reads the real /proc and
// the wall clock and logs nothing.
type Options struct {
	// ProcPath is the root of the proc filesystem; "" means "/proc". Tests
	// point it at a fake tree.
	ProcPath string

	// Now returns the current time; nil means time.Now. Rates and uptime
	// are computed from it, so tests can control elapsed time.
	Now func() time.Time

	// Logger receives, at debug level, the error behind each omitted
	// series; nil discards them.
	Logger Logger
}

// Collector is a prometheus.Collector for the host's system series. Build
// it with New; it is safe for concurrent scrapes.
type Collector struct {
	procPath string
	now      func() time.Time
	log      Logger
	start    time.Time

	cpuUsage      *prometheus.Desc
	memUsage      *prometheus.Desc
	memAvailable  *prometheus.Desc
	netThroughput *prometheus.Desc
	diskIO        *prometheus.Desc
	uptime        *prometheus.Desc

	// mu guards the baselines the CPU and network gauges are computed
	// against. It is held across reading the file and moving the baseline,
	// so two concurrent scrapes can never move it backwards.
	mu      sync.Mutex
	cpuPrev cpuTimes // zero until the first scrape, which makes it "since boot"
	cpuLast float64  // repeated when no clock tick passed since cpuPrev
	netPrev map[string]netBytes
	netAt   time.Time
	netLast [2]float64 // rx, tx; repeated when no time passed since netAt
}

var _ prometheus.Collector = (*Collector)(nil)

// New builds a Collector. Its uptime counts from this call, which the host
// makes once at start.
func New(opts Options) *Collector {
	c := &Collector{
		procPath: opts.ProcPath,
		now:      opts.Now,
		log:      opts.Logger,

		cpuUsage: prometheus.NewDesc("dls_cpu_usage_percent",
			"Share of time all CPUs were busy since the previous scrape (the first scrape: since boot), 0-100.",
			nil, nil),
		memUsage: prometheus.NewDesc("dls_memory_usage_bytes",
			"Memory in use on the host: MemTotal minus MemAvailable from /proc/meminfo.",
			nil, nil),
		memAvailable: prometheus.NewDesc("dls_memory_available_bytes",
			"Memory available for new work without swapping: MemAvailable from /proc/meminfo.",
			nil, nil),
		netThroughput: prometheus.NewDesc("dls_network_throughput_bytes",
			"Bytes per second over all non-loopback interfaces since the previous scrape (the first scrape: since boot).",
			[]string{"direction"}, nil),
		diskIO: prometheus.NewDesc("dls_disk_io_bytes_total",
			"Bytes read from and written to whole physical disks (partitions and layered devices such as loop, dm, md and zvols excluded).",
			[]string{"direction"}, nil),
		uptime: prometheus.NewDesc("dls_uptime_seconds",
			"Seconds since the DLS host process started.",
			nil, nil),
	}
	if c.procPath == "" {
		c.procPath = "/proc"
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = discard{}
	}
	c.start = c.now()
	return c
}

// Describe sends every descriptor, including those whose series a given
// scrape may omit.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.cpuUsage
	ch <- c.memUsage
	ch <- c.memAvailable
	ch <- c.netThroughput
	ch <- c.diskIO
	ch <- c.uptime
}

// Collect reads /proc and sends the series it could compute; see the
// package comment for what each one means and when it is omitted.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if pct, err := c.cpuPercent(); err != nil {
		c.omitted("dls_cpu_usage_percent", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.cpuUsage, prometheus.GaugeValue, pct)
	}

	if total, avail, err := readMeminfo(c.path("meminfo")); err != nil {
		c.omitted("dls_memory_usage_bytes, dls_memory_available_bytes", err)
	} else {
		// MemAvailable is an estimate and can briefly exceed MemTotal on
		// some kernels; usage must not go negative.
		used := 0.0
		if total > avail {
			used = float64(total - avail)
		}
		ch <- prometheus.MustNewConstMetric(c.memUsage, prometheus.GaugeValue, used)
		ch <- prometheus.MustNewConstMetric(c.memAvailable, prometheus.GaugeValue, float64(avail))
	}

	if rx, tx, err := c.netRates(); err != nil {
		c.omitted("dls_network_throughput_bytes", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.netThroughput, prometheus.GaugeValue, rx, "rx")
		ch <- prometheus.MustNewConstMetric(c.netThroughput, prometheus.GaugeValue, tx, "tx")
	}

	if read, written, err := readDiskstats(c.path("diskstats")); err != nil {
		c.omitted("dls_disk_io_bytes_total", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.diskIO, prometheus.CounterValue, float64(read), "read")
		ch <- prometheus.MustNewConstMetric(c.diskIO, prometheus.CounterValue, float64(written), "write")
	}

	ch <- prometheus.MustNewConstMetric(c.uptime, prometheus.GaugeValue, c.now().Sub(c.start).Seconds())
}

// cpuPercent returns the busy share of all CPUs since the previous scrape
// and makes the current reading the next scrape's baseline.
func (c *Collector) cpuPercent() (float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	cur, err := readCPUTimes(c.path("stat"))
	if err != nil {
		return 0, err
	}
	prev := c.cpuPrev
	switch {
	case cur.total < prev.total:
		// The counters went backwards (a different /proc, or a kernel
		// quirk): the old baseline means nothing, fall back to since boot.
		prev = cpuTimes{}
	case cur.total == prev.total:
		// No tick since the last scrape (scrapes closer than 1/USER_HZ):
		// there is no new interval to measure, so repeat the last value and
		// keep the baseline.
		return c.cpuLast, nil
	}
	total := cur.total - prev.total
	// iowait is known to go backwards on some kernels; clamp so a glitch
	// reads as fully busy for that interval rather than as garbage.
	idle := uint64(0)
	if cur.idle > prev.idle {
		idle = min(cur.idle-prev.idle, total)
	}
	pct := 100 * float64(total-idle) / float64(total)

	c.cpuPrev, c.cpuLast = cur, pct
	return pct, nil
}

// netRates returns received and transmitted bytes per second over all
// non-loopback interfaces since the previous scrape, and makes the current
// reading the next scrape's baseline.
func (c *Collector) netRates() (rx, tx float64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()

	cur, err := readNetDev(c.path("net/dev"))
	if err != nil {
		return 0, 0, err
	}
	now := c.now()

	if c.netPrev == nil {
		// First scrape: no previous reading, so average since boot, like
		// the CPU gauge. The baseline is kept even if uptime is unreadable,
		// so the next scrape still gets a proper rate.
		c.netPrev, c.netAt = cur, now
		up, err := readUptime(c.path("uptime"))
		if err != nil {
			return 0, 0, err
		}
		var sum netBytes
		for _, b := range cur {
			sum.rx += b.rx
			sum.tx += b.tx
		}
		rx, tx = float64(sum.rx)/up, float64(sum.tx)/up
		c.netLast = [2]float64{rx, tx}
		return rx, tx, nil
	}

	elapsed := now.Sub(c.netAt).Seconds()
	if elapsed <= 0 {
		// Same instant as the baseline: no interval to divide by.
		return c.netLast[0], c.netLast[1], nil
	}
	// Per-interface deltas, not a delta of sums: interfaces come and go
	// (veth, tap), and a vanished one would otherwise make the sum drop.
	var sum netBytes
	for name, b := range cur {
		p, seen := c.netPrev[name]
		if !seen {
			// Appeared since the last scrape; its counters started at some
			// unknown point, so it only sets a baseline this time.
			continue
		}
		sum.rx += counterDelta(p.rx, b.rx)
		sum.tx += counterDelta(p.tx, b.tx)
	}
	rx, tx = float64(sum.rx)/elapsed, float64(sum.tx)/elapsed
	c.netPrev, c.netAt, c.netLast = cur, now, [2]float64{rx, tx}
	return rx, tx, nil
}

// counterDelta is how much a counter grew from prev to cur. A smaller cur
// means the counter restarted from zero (interface re-created, driver
// reset), so everything it counted since is new.
func counterDelta(prev, cur uint64) uint64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

func (c *Collector) path(name string) string {
	return filepath.Join(c.procPath, name)
}

func (c *Collector) omitted(families string, err error) {
	c.log.Debug("system series omitted from scrape", "families", families, "error", err)
}

type discard struct{}

func (discard) Debug(string, ...any) {}
