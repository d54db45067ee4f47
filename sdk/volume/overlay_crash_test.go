package volume_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/volume"
)

// The crash test's volume: crashWriters goroutines, each owning a block of
// crashBlock contiguous clusters, write and discard whole 4 KiB pages.
const (
	crashCluster  = 16 << 10
	crashPage     = 4 << 10
	crashWriters  = 4
	crashBlock    = 1024 // clusters per writer
	crashSize     = crashWriters * crashBlock * crashCluster
	crashPages    = crashSize / crashPage
	crashPerBlock = crashBlock * crashCluster / crashPage // pages per writer
	crashPerClus  = crashCluster / crashPage              // pages per cluster
	crashChildEnv = "DLS_VOLUME_CRASH_CHILD"
)

// crashOp is one write or discard of whole pages by one writer.
type crashOp struct {
	id      uint64 // 1, 2, ... per writer and epoch
	first   int    // page
	n       int    // pages
	discard bool
}

// crashOpSource returns the operations writer g does in an epoch, one per
// call; the child and the parent derive the same ones.
func crashOpSource(epoch, g int) func() crashOp {
	r := rand.New(rand.NewPCG(uint64(epoch), uint64(g)))
	lo := g * crashPerBlock
	var id uint64
	return func() crashOp {
		id++
		first := lo + r.IntN(crashPerBlock)
		n := min(1+r.IntN(2*crashPerClus+2), lo+crashPerBlock-first)
		return crashOp{id: id, first: first, n: n, discard: r.IntN(7) == 0}
	}
}

// crashOps returns the first count operations of crashOpSource.
func crashOps(epoch, g, count int) []crashOp {
	next := crashOpSource(epoch, g)
	ops := make([]crashOp, count)
	for i := range ops {
		ops[i] = next()
	}
	return ops
}

// writtenPage is page pg as operation id of writer g in epoch writes it:
// a header naming all four, then bytes derived from them.
func writtenPage(epoch, g int, id uint64, pg int) []byte {
	b := make([]byte, crashPage)
	copy(b, "DLSCRASH")
	binary.LittleEndian.PutUint32(b[8:], uint32(epoch))
	binary.LittleEndian.PutUint32(b[12:], uint32(g))
	binary.LittleEndian.PutUint64(b[16:], id)
	binary.LittleEndian.PutUint64(b[24:], uint64(pg))
	x := uint64(epoch)<<56 ^ uint64(g)<<48 ^ id<<20 ^ uint64(pg)
	for i := 32; i < len(b); i++ {
		b[i] = byte(x>>(i%8*8)) + byte(i)
	}
	return b
}

// basePage is page pg of the base.
func basePage(pg int) []byte {
	b := make([]byte, crashPage)
	copy(b, "DLSBASE!")
	binary.LittleEndian.PutUint64(b[8:], uint64(pg))
	for i := 16; i < len(b); i++ {
		b[i] = byte(pg*31+i) | 1
	}
	return b
}

// TestOverlayCrash kills a writing process at random moments and checks
// what survives: every write and discard that returned before the last
// Flush that returned is there; every page holds its previous content or
// that of one of the operations on it since (no torn pages, no zeros or
// garbage a map bit points at); and a cluster the map newly records holds
// all of the first operation that wrote into it. It runs the epochs on
// the same overlay, so the leftovers of one crash meet the next.
func TestOverlayCrash(t *testing.T) {
	if spec := os.Getenv(crashChildEnv); spec != "" {
		crashChild(spec)
		return
	}
	epochs := 24
	if testing.Short() {
		epochs = 6
	}
	dir := crashDir(t)
	base := filepath.Join(dir, "base.raw")
	baseData := make([]byte, 0, crashSize)
	for pg := range crashPages {
		baseData = append(baseData, basePage(pg)...)
	}
	if err := os.WriteFile(base, baseData, 0o444); err != nil {
		t.Fatal(err)
	}
	baseInfo, _ := os.Stat(base)
	d, err := volume.CreateOverlay(base, filepath.Join(dir, "delta"), filepath.Join(dir, "map"), crashCluster)
	if err != nil {
		t.Fatal(err)
	}
	state := bytes.Clone(baseData) // what the volume read after the last crash
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for epoch := 1; epoch <= epochs; epoch++ {
		if epoch%6 == 0 {
			// Start over now and then, so that epochs keep meeting
			// clusters the map does not have (some holding the data of a
			// copy-on-write that a crash cut off before any flush).
			if err := volume.ResetOverlay(d); err != nil {
				t.Fatal(err)
			}
			state = bytes.Clone(baseData)
		}
		delay := time.Duration(2+r.IntN(120)) * time.Millisecond
		interval := "0"
		if epoch%2 == 0 {
			interval = "3ms"
		}
		rep := runCrashChild(t, d, epoch, interval, delay)
		got := readOverlay(t, d)
		fresh, lost := checkCrash(t, epoch, baseData, state, got, rep)
		state = got
		t.Logf("epoch %d: killed after %v (flush_interval %s): %d operations acknowledged, %d flushes, %d clusters newly allocated, %d pages lost acknowledged but unflushed writes",
			epoch, delay, interval, rep.acked(), rep.flushes, fresh, lost)
	}
	if got, _ := os.ReadFile(base); !bytes.Equal(got, baseData) {
		t.Fatal("the base changed")
	}
	if fi, _ := os.Stat(base); !fi.ModTime().Equal(baseInfo.ModTime()) {
		t.Fatal("the base's modification time changed")
	}
}

// crashDir returns a directory on tmpfs if there is one: a SIGKILL
// leaves the page cache intact, so the filesystem does not change what
// survives, and tmpfs's free fsync lets the child flush far more often.
func crashDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "dls-volume-crash-"); err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// crashReport is what the parent heard from a child before it died.
type crashReport struct {
	lastAck [crashWriters]uint64 // per writer, the last operation that returned
	flushed [crashWriters]uint64 // per writer, the last one before a Flush that returned
	flushes int
}

func (r crashReport) acked() (n uint64) {
	for _, a := range r.lastAck {
		n += a
	}
	return n
}

// runCrashChild runs one epoch's writer and SIGKILLs it delay after it
// opened the overlay.
func runCrashChild(t *testing.T, d volume.Descriptor, epoch int, interval string, delay time.Duration) crashReport {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestOverlayCrash$", "-test.count=1")
	spec := strings.Join([]string{d.Paths[0], d.Paths[1], d.Paths[2], strconv.Itoa(epoch), interval}, "|")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+spec)
	cmd.ExtraFiles = []*os.File{pw}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()

	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(pr)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	var rep crashReport
	handle := func(line string) {
		f := strings.Fields(line)
		switch {
		case len(f) == 3 && f[0] == "A":
			g, _ := strconv.Atoi(f[1])
			id, _ := strconv.ParseUint(f[2], 10, 64)
			rep.lastAck[g] = max(rep.lastAck[g], id)
		case len(f) == 1+crashWriters && f[0] == "F":
			for g := range crashWriters {
				id, _ := strconv.ParseUint(f[1+g], 10, 64)
				rep.flushed[g] = max(rep.flushed[g], id)
			}
			rep.flushes++
		case line == "R":
		default:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("epoch %d: child says %q\n%s", epoch, line, out.String())
		}
	}
	select {
	case line, ok := <-lines:
		if !ok || line != "R" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("epoch %d: child did not start: %q\n%s", epoch, line, out.String())
		}
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("epoch %d: child did not start in a minute\n%s", epoch, out.String())
	}
	time.Sleep(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	for line := range lines {
		handle(line)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("epoch %d: child ended with %v, not by SIGKILL\n%s", epoch, err, out.String())
	}
	return rep
}

// readOverlay reads the whole overlay, opened read-only.
func readOverlay(t *testing.T, d volume.Descriptor) []byte {
	t.Helper()
	ro := d
	ro.ReadOnly = true
	v, err := volume.Open(ro)
	if err != nil {
		t.Fatalf("reopen after the crash: %v", err)
	}
	defer v.Close()
	return readAll(t, v)
}

// checkCrash checks what an epoch left (got) against what there was
// before it (prev) and what the child reported. It returns how many
// clusters the epoch newly allocated, and how many pages lost the last
// write acknowledged on them (allowed when no Flush followed it).
func checkCrash(t *testing.T, epoch int, base, prev, got []byte, rep crashReport) (fresh, lost int) {
	t.Helper()
	// on[pg] lists the operations on page pg, in order; operations past
	// the last acknowledged one cannot have started, except the one in
	// flight.
	on := make([][]crashOp, crashPages)
	for g := range crashWriters {
		for _, op := range crashOps(epoch, g, int(rep.lastAck[g])+1) {
			for pg := op.first; pg < op.first+op.n; pg++ {
				on[pg] = append(on[pg], op)
			}
		}
	}
	page := func(b []byte, pg int) []byte { return b[pg*crashPage : (pg+1)*crashPage] }
	isBase := func(b []byte, pg int) bool { return bytes.Equal(page(b, pg), page(base, pg)) }
	zero := make([]byte, crashPage)
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 10 {
			t.Errorf("epoch %d: "+format, append([]any{epoch}, args...)...)
		}
	}
	content := func(g int, op crashOp, pg int) []byte {
		if op.discard {
			return zero
		}
		return writtenPage(epoch, g, op.id, pg)
	}

	for pg := range crashPages {
		g := pg / crashPerBlock
		// The last operation on the page that a completed Flush covers.
		var durable uint64
		for _, op := range on[pg] {
			if op.id <= rep.flushed[g] {
				durable = op.id
			}
		}
		have := page(got, pg)
		seen := int64(-1) // the operation whose content the page holds; 0: as before
		if durable == 0 && bytes.Equal(have, page(prev, pg)) {
			seen = 0
		}
		for i := len(on[pg]) - 1; i >= 0 && seen < 0; i-- {
			if op := on[pg][i]; op.id >= durable && bytes.Equal(have, content(g, op, pg)) {
				seen = int64(op.id)
			}
		}
		if seen < 0 {
			fail("page %d (cluster %d) holds %q..., which is neither its content before the epoch nor that of an operation since the last flushed one (%d)",
				pg, pg/crashPerClus, have[:32], durable)
		}
		for i := len(on[pg]) - 1; i >= 0; i-- {
			if op := on[pg][i]; op.id <= rep.lastAck[g] {
				if seen >= 0 && seen < int64(op.id) {
					lost++
				}
				break
			}
		}
	}

	// A cluster the map records since this epoch holds all of the first
	// operation into it: the copy-on-write is never torn.
	for c := range crashSize / crashCluster {
		first := c * crashPerClus
		before, now := false, false
		for pg := first; pg < first+crashPerClus; pg++ {
			before = before || !isBase(prev, pg)
			now = now || !isBase(got, pg)
		}
		if before || !now {
			continue
		}
		fresh++
		var op0 *crashOp
		for pg := first; pg < first+crashPerClus; pg++ {
			if len(on[pg]) > 0 && (op0 == nil || on[pg][0].id < op0.id) {
				op0 = &on[pg][0]
			}
		}
		for pg := max(first, op0.first); pg < min(first+crashPerClus, op0.first+op0.n); pg++ {
			if isBase(got, pg) {
				fail("cluster %d is newly allocated, but page %d of its first operation (%d) reads the base", c, pg, op0.id)
			}
		}
	}
	return fresh, lost
}

// crashChild is the writer the parent kills: it never returns.
func crashChild(spec string) {
	f := strings.Split(spec, "|")
	epoch, _ := strconv.Atoi(f[3])
	report := os.NewFile(3, "report")
	say := func(format string, args ...any) {
		// One write per line: lines from several goroutines never mix.
		report.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	die := func(err error) {
		say("E %v", err)
		os.Exit(3)
	}
	time.AfterFunc(2*time.Minute, func() { die(fmt.Errorf("not killed in 2 minutes")) })
	v, err := volume.Open(volume.Descriptor{
		Format: volume.FormatOverlay, Paths: f[:3], Size: crashSize,
		Options: map[string]string{volume.OptionFlushInterval: f[4]},
	})
	if err != nil {
		die(err)
	}
	say("R")
	var acked [crashWriters]atomic.Uint64
	for g := range crashWriters {
		go func() {
			next := crashOpSource(epoch, g)
			for {
				op := next()
				off := int64(op.first) * crashPage
				var err error
				if op.discard {
					err = v.Discard(off, int64(op.n)*crashPage)
				} else {
					buf := make([]byte, 0, op.n*crashPage)
					for pg := op.first; pg < op.first+op.n; pg++ {
						buf = append(buf, writtenPage(epoch, g, op.id, pg)...)
					}
					_, err = v.WriteAt(buf, off)
				}
				if err != nil {
					die(err)
				}
				acked[g].Store(op.id)
				say("A %d %d", g, op.id)
				time.Sleep(time.Duration(rand.IntN(400)) * time.Microsecond)
			}
		}()
	}
	go func() {
		r := rand.New(rand.NewPCG(uint64(epoch), 99))
		for {
			time.Sleep(time.Duration(r.IntN(3000)) * time.Microsecond)
			var snap [crashWriters]string
			for g := range snap {
				snap[g] = strconv.FormatUint(acked[g].Load(), 10)
			}
			if err := v.Flush(); err != nil {
				die(err)
			}
			say("F %s", strings.Join(snap[:], " "))
		}
	}()
	select {}
}
