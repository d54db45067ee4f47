package sysmetrics

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeProc is a /proc the test can switch between the snapshots under
// testdata: ProcPath is a symlink, so the collector keeps one path while
// the files behind it change, as they do on a real host.
type fakeProc struct {
	t    *testing.T
	link string
}

func newFakeProc(t *testing.T, snapshot string) *fakeProc {
	t.Helper()
	p := &fakeProc{t: t, link: filepath.Join(t.TempDir(), "proc")}
	p.use(snapshot)
	return p
}

func (p *fakeProc) use(snapshot string) {
	p.t.Helper()
	target, err := filepath.Abs(filepath.Join("testdata", snapshot))
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.Remove(p.link); err != nil && !os.IsNotExist(err) {
		p.t.Fatal(err)
	}
	if err := os.Symlink(target, p.link); err != nil {
		p.t.Fatal(err)
	}
}

// fakeClock is a settable Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// The loggers the host may hand in must fit Options.Logger as they are.
var (
	_ Logger = hclog.NewNullLogger()
	_ Logger = slog.Default()
)

// recordLogger keeps what the collector logs, to check that an omitted
// series is explained.
type recordLogger struct {
	mu   sync.Mutex
	msgs []string
}

func (l *recordLogger) Debug(msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, fmt.Sprint(append([]any{msg}, args...)...))
}

const header = `
# HELP dls_cpu_usage_percent Share of time all CPUs were busy since the previous scrape (the first scrape: since boot), 0-100.
# TYPE dls_cpu_usage_percent gauge
# HELP dls_memory_usage_bytes Memory in use on the host: MemTotal minus MemAvailable from /proc/meminfo.
# TYPE dls_memory_usage_bytes gauge
# HELP dls_memory_available_bytes Memory available for new work without swapping: MemAvailable from /proc/meminfo.
# TYPE dls_memory_available_bytes gauge
# HELP dls_network_throughput_bytes Bytes per second over all non-loopback interfaces since the previous scrape (the first scrape: since boot).
# TYPE dls_network_throughput_bytes gauge
# HELP dls_disk_io_bytes_total Bytes read from and written to whole physical disks (partitions and layered devices such as loop, dm, md and zvols excluded).
# TYPE dls_disk_io_bytes_total counter
# HELP dls_uptime_seconds Seconds since the DLS host process started.
# TYPE dls_uptime_seconds gauge
`

// TestCollectDeltas walks two /proc snapshots taken 10 s apart. The
// expected numbers are worked out in the comments from testdata.
func TestCollectDeltas(t *testing.T) {
	proc := newFakeProc(t, "proc1")
	clock := &fakeClock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	c := New(Options{ProcPath: proc.link, Now: clock.Now})

	// First scrape, 5 s after New, averages since boot:
	//   cpu: busy 1000+500 of 10000 ticks (guest not added again) = 15%
	//   memory: 16000000-12000000 kB used, 12000000 kB available
	//   network: eth0+eth1+tap0 = 2000000 rx, 1000000 tx over 100 s of
	//     uptime; lo is left out
	//   disk: sda 2000+nvme0n1 1000+nvme0n10 100+mmcblk0 900 sectors read,
	//     4000+3000+100+900 written, times 512; partitions, loop, ram,
	//     zram, dm, md and zd devices are left out
	clock.Advance(5 * time.Second)
	first := header + `
dls_cpu_usage_percent 15
dls_memory_usage_bytes 4096000000
dls_memory_available_bytes 12288000000
dls_network_throughput_bytes{direction="rx"} 20000
dls_network_throughput_bytes{direction="tx"} 10000
dls_disk_io_bytes_total{direction="read"} 2048000
dls_disk_io_bytes_total{direction="write"} 4096000
dls_uptime_seconds 5
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(first)); err != nil {
		t.Fatalf("first scrape: %v", err)
	}

	// Second scrape, 10 s later:
	//   cpu: 1500 ticks passed, 600 of them idle+iowait = 60% busy
	//   network: eth0 +500000 rx +100000 tx; eth1 was re-created (counters
	//     dropped) so all of its 50000/30000 is new; tap0 vanished; veth0
	//     appeared and only sets a baseline: 550000/10 rx, 130000/10 tx
	//   disk: sda read 1000 and wrote 2000 more sectors
	proc.use("proc2")
	clock.Advance(10 * time.Second)
	second := header + `
dls_cpu_usage_percent 60
dls_memory_usage_bytes 6144000000
dls_memory_available_bytes 10240000000
dls_network_throughput_bytes{direction="rx"} 55000
dls_network_throughput_bytes{direction="tx"} 13000
dls_disk_io_bytes_total{direction="read"} 2560000
dls_disk_io_bytes_total{direction="write"} 5120000
dls_uptime_seconds 15
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(second)); err != nil {
		t.Fatalf("second scrape: %v", err)
	}

	// A third scrape at the same instant over the same files has no
	// interval to measure: the rates repeat instead of becoming 0/0.
	if err := testutil.CollectAndCompare(c, strings.NewReader(second)); err != nil {
		t.Fatalf("repeated scrape: %v", err)
	}
}

// TestCollectOmitsUnreadable checks that missing /proc files drop only
// their own series, never the scrape, and that each drop is logged.
func TestCollectOmitsUnreadable(t *testing.T) {
	log := &recordLogger{}
	clock := &fakeClock{t: time.Unix(1000, 0)}
	c := New(Options{ProcPath: t.TempDir(), Now: clock.Now, Logger: log})
	clock.Advance(3 * time.Second)

	want := `
# HELP dls_uptime_seconds Seconds since the DLS host process started.
# TYPE dls_uptime_seconds gauge
dls_uptime_seconds 3
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.msgs) != 4 {
		t.Fatalf("logged %d messages, want one per unreadable file (4): %q", len(log.msgs), log.msgs)
	}
	for _, m := range log.msgs {
		if !strings.Contains(m, "no such file") {
			t.Errorf("log message does not give the cause: %q", m)
		}
	}
}

func TestNetworkKeepsBaselineWithoutUptime(t *testing.T) {
	// The first scrape needs /proc/uptime for its since-boot average; if it
	// is missing, the network series is omitted once, but the second scrape
	// must still produce a rate.
	dir := t.TempDir()
	write := func(content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, "net"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "net", "dev"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const head = "Inter-|   Receive\n face |bytes\n"
	write(head + "eth0: 100 0 0 0 0 0 0 0 200 0 0 0 0 0 0 0\n")
	clock := &fakeClock{t: time.Unix(1000, 0)}
	c := New(Options{ProcPath: dir, Now: clock.Now})
	if n := testutil.CollectAndCount(c, "dls_network_throughput_bytes"); n != 0 {
		t.Fatalf("first scrape without uptime: %d network series, want 0", n)
	}
	write(head + "eth0: 300 0 0 0 0 0 0 0 600 0 0 0 0 0 0 0\n")
	clock.Advance(2 * time.Second)
	want := `
# HELP dls_network_throughput_bytes Bytes per second over all non-loopback interfaces since the previous scrape (the first scrape: since boot).
# TYPE dls_network_throughput_bytes gauge
dls_network_throughput_bytes{direction="rx"} 100
dls_network_throughput_bytes{direction="tx"} 200
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "dls_network_throughput_bytes"); err != nil {
		t.Fatal(err)
	}
}

func TestIsPartition(t *testing.T) {
	names := map[string]bool{}
	for _, n := range []string{"sda", "sda1", "sda15", "sdaa", "vdb", "vdb3",
		"nvme0n1", "nvme0n1p1", "nvme0n10", "nvme0n10p2", "mmcblk0", "mmcblk0p1",
		"mmcblk0boot0", "sr0", "xvda", "xvda1"} {
		names[n] = true
	}
	for name, want := range map[string]bool{
		"sda": false, "sda1": true, "sda15": true, "sdaa": false,
		"vdb": false, "vdb3": true,
		"nvme0n1": false, "nvme0n1p1": true, "nvme0n10": false, "nvme0n10p2": true,
		"mmcblk0": false, "mmcblk0p1": true, "mmcblk0boot0": false,
		"sr0": false, "xvda": false, "xvda1": true,
	} {
		if got := isPartition(name, names); got != want {
			t.Errorf("isPartition(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestLint runs the same checks as `promtool check metrics` over a real
// scrape of the fake tree.
func TestLint(t *testing.T) {
	proc := newFakeProc(t, "proc1")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(Options{ProcPath: proc.link}))
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestConcurrentCollect scrapes from many goroutines at once; run with
// -race, it checks that the delta state is guarded.
func TestConcurrentCollect(t *testing.T) {
	proc := newFakeProc(t, "proc1")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(Options{ProcPath: proc.link}))

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				mfs, err := reg.Gather()
				if err != nil {
					t.Error(err)
					return
				}
				if len(mfs) != 6 {
					t.Errorf("gathered %d families, want 6", len(mfs))
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRealProc scrapes this machine's /proc and checks the series are
// there and plausible.
func TestRealProc(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc on this system")
	}
	log := &recordLogger{}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(New(Options{Logger: log}))
	// Two scrapes: the second exercises the since-previous-scrape path.
	for scrape := 1; scrape <= 2; scrape++ {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
				got[mf.GetName()] = append(got[mf.GetName()], v)
			}
		}
		log.mu.Lock()
		msgs := log.msgs
		log.mu.Unlock()
		for name, n := range map[string]int{
			"dls_cpu_usage_percent": 1, "dls_memory_usage_bytes": 1,
			"dls_memory_available_bytes": 1, "dls_network_throughput_bytes": 2,
			"dls_disk_io_bytes_total": 2, "dls_uptime_seconds": 1,
		} {
			if len(got[name]) != n {
				t.Errorf("scrape %d: %s has %d series, want %d (log: %q)", scrape, name, len(got[name]), n, msgs)
			}
			for _, v := range got[name] {
				if v < 0 {
					t.Errorf("scrape %d: %s = %v, want >= 0", scrape, name, v)
				}
			}
		}
		if v := got["dls_cpu_usage_percent"]; len(v) == 1 && v[0] > 100 {
			t.Errorf("scrape %d: cpu usage %v%%, want <= 100", scrape, v[0])
		}
		if v := got["dls_memory_available_bytes"]; len(v) == 1 && v[0] <= 0 {
			t.Errorf("scrape %d: memory available %v, want > 0", scrape, v[0])
		}
	}
}
