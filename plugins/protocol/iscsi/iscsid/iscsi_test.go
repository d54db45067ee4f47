package iscsid

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/iscsi/initiator"
	"github.com/dls-project/dls/plugins/protocol/iscsi/pdu"
	"github.com/dls-project/dls/plugins/protocol/iscsi/target"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/volume"
)

const prefix = "iqn.2026-11.io.dls"

// client describes one client of the fake host.
type client struct {
	name           string
	mac            string
	extra          []string
	secret, mutual string
	// addrs are the decision's AllowedAddresses; nil: 127.0.0.1, where
	// the tests' initiators come from.
	addrs []string
	size  int64
	path  string // the volume file, made by startTarget
}

func (c *client) target() string    { return prefix + ":" + c.name }
func (c *client) initiator() string { return prefix + ":initiator:" + c.name }

type env struct {
	addr string
	h    *plugintest.Harness
	host *plugintest.FakeHost
	cls  map[string]*client
}

// startTarget runs the plugin through plugintest with a fake host knowing
// clients, each with a raw volume file of its size.
func startTarget(t testing.TB, cfg map[string]any, clients ...*client) *env {
	t.Helper()
	fh := plugintest.NewFakeHost()
	dir := t.TempDir()
	cls := map[string]*client{}
	for _, c := range clients {
		if c.size == 0 {
			c.size = 8 << 20
		}
		c.path = filepath.Join(dir, c.name+".raw")
		if err := os.WriteFile(c.path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(c.path, c.size); err != nil {
			t.Fatal(err)
		}
		cls[c.name] = c
		d := host.Decision{
			Client: c.name, TargetIQN: c.target(), InitiatorIQN: c.initiator(),
			Initiators:       append([]string{c.initiator()}, c.extra...),
			AllowedAddresses: c.addrs,
		}
		if c.addrs == nil {
			d.AllowedAddresses = []string{"127.0.0.1"}
		}
		if c.secret != "" {
			d.CHAPUser, d.CHAPSecret, d.CHAPMutualSecret = c.initiator(), c.secret, c.mutual
		}
		fh.SetClient(c.mac, d)
	}
	fh.SetAttach(func(_ context.Context, name string) (volume.Descriptor, error) {
		c := cls[name]
		if c == nil {
			return volume.Descriptor{}, fmt.Errorf("no client %s", name)
		}
		return volume.Descriptor{Format: volume.FormatRaw, Paths: []string{c.path}, Size: c.size}, nil
	})
	if cfg == nil {
		cfg = map[string]any{}
	}
	if cfg["listen"] == nil {
		cfg["listen"] = "127.0.0.1:0"
	}
	h := plugintest.Start(t, New(), plugintest.WithHost(fh), plugintest.WithConfig(cfg))
	ctx := context.Background()
	if err := h.Protocol().Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := h.Protocol().Status(ctx)
	if err != nil || len(st.Listeners) != 1 {
		t.Fatalf("status: %v %+v", err, st)
	}
	return &env{addr: strings.TrimPrefix(st.Listeners[0], "tcp "), h: h, host: fh, cls: cls}
}

func (e *env) dial(t testing.TB, c *client, mod ...func(*initiator.Config)) (*initiator.Session, error) {
	t.Helper()
	cfg := initiator.Config{Addr: e.addr, InitiatorName: c.initiator(), TargetName: c.target(), Timeout: 5 * time.Second}
	if c.secret != "" {
		cfg.CHAPUser, cfg.CHAPSecret = c.initiator(), c.secret
	}
	for _, m := range mod {
		m(&cfg)
	}
	return initiator.Dial(context.Background(), cfg)
}

func (e *env) mustDial(t testing.TB, c *client, mod ...func(*initiator.Config)) *initiator.Session {
	t.Helper()
	s, err := e.dial(t, c, mod...)
	if err != nil {
		t.Fatalf("login %s: %v", c.name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func fileAt(t testing.TB, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadWriteEventsMetrics(t *testing.T) {
	pc1 := &client{name: "pc-01", mac: "52:54:00:00:00:01"}
	e := startTarget(t, nil, pc1)
	ctx := context.Background()
	s := e.mustDial(t, pc1)

	blocks, bs, err := s.ReadCapacity(ctx)
	if err != nil || bs != 512 || blocks != uint64(pc1.size/512) {
		t.Fatalf("capacity %d x %d, %v", blocks, bs, err)
	}
	e.host.WaitEvent(t, host.EventISCSILogin, 5*time.Second)

	// WRITE(10) and WRITE(16) at several sizes, one with FUA; R2Ts are
	// needed past the first burst.
	for i, size := range []int{512, 4096, 300 << 10, 1 << 20, 3<<20 + 512} {
		data := randomBytes(size)
		lba := uint64(1 + i*2048)
		if i%2 == 0 {
			err = s.Write10(ctx, uint32(lba), data, bs, i == 2)
		} else {
			err = s.Write(ctx, lba, data, bs, false)
		}
		if err != nil {
			t.Fatalf("write %d bytes: %v", size, err)
		}
		got := make([]byte, size)
		if i%2 == 0 {
			err = s.Read10(ctx, uint32(lba), got, bs)
		} else {
			err = s.Read(ctx, lba, got, bs)
		}
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %d bytes: %v (equal %v)", size, err, bytes.Equal(got, data))
		}
		if err := s.SyncCache(ctx); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(fileAt(t, pc1.path, int64(lba)*512, size), data) {
			t.Fatalf("volume file does not hold the %d bytes written", size)
		}
	}
	if len(e.host.Events()) > 0 {
		for _, ev := range e.host.Events() {
			if ev.Type == host.EventISCSIHandoff {
				t.Fatal("handoff before any read of LBA 0")
			}
		}
	}
	// Reading LBA 0 is the firmware booting the disk.
	if err := s.Read(ctx, 0, make([]byte, 512), bs); err != nil {
		t.Fatal(err)
	}
	ev := e.host.WaitEvent(t, host.EventISCSIHandoff, 5*time.Second)
	if ev.Client != "pc-01" || ev.Attrs[host.AttrInitiator] != pc1.initiator() || ev.Attrs[host.AttrTarget] != pc1.target() {
		t.Errorf("handoff event %+v", ev)
	}
	if v := e.h.MetricValue(t, "dls_iscsi_sessions"); v != 1 {
		t.Errorf("sessions gauge %v, want 1", v)
	}
	// The login's steps: the host asked, the volume attached, the target's
	// turns, all within the login's total.
	var took [4]float64
	for i, step := range []string{"authorize", "attach", "target", "total"} {
		if s, ok := e.h.MetricSample(t, "dls_iscsi_login_duration_seconds", step); !ok || s.Count != 1 || s.Sum <= 0 {
			t.Errorf("login step %s: %+v (present %v), want one observation", step, s, ok)
		} else {
			took[i] = s.Sum
		}
	}
	if took[0]+took[1] > took[3] || took[2] > took[3] {
		t.Errorf("login steps authorize %v + attach %v s, or the target's turns %v s, exceed the login's total %v s", took[0], took[1], took[2], took[3])
	}
	if got := e.host.Attached(); len(got) != 1 || got[0] != "pc-01" {
		t.Errorf("attached %v", got)
	}
	if err := s.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	e.host.WaitEvent(t, host.EventISCSILogout, 5*time.Second)
	waitFor(t, func() bool { return len(e.host.Attached()) == 0 }, "volume detached after the last session")
	e.h.WaitMetricValue(t, 0, "dls_iscsi_sessions")
	if v := e.h.MetricValue(t, "dls_iscsi_written_bytes_total"); v < 4<<20 {
		t.Errorf("written bytes %v", v)
	}
	if v := e.h.MetricValue(t, "dls_iscsi_read_bytes_total"); v < 4<<20 {
		t.Errorf("read bytes %v", v)
	}
	if v := e.h.MetricValue(t, "dls_iscsi_connections_total"); v < 1 {
		t.Errorf("connections %v", v)
	}
	if smp, ok := e.h.MetricSample(t, "dls_iscsi_command_duration_seconds", "write"); !ok || smp.Count < 5 {
		t.Errorf("write latency samples %+v", smp)
	}
	e.h.WaitMetricValue(t, 0, "dls_iscsi_buffer_bytes")
	if v := e.h.MetricValue(t, "dls_iscsi_buffer_limit_bytes"); v != target.DefaultMaxBufferBytes {
		t.Errorf("buffer limit gauge %v, want the default %d", v, target.DefaultMaxBufferBytes)
	}
}

// TestBufferPoolSmallerThanReads: with max_buffer_bytes at its minimum,
// sessions reading and writing more than it at once, each command larger
// than the whole pool, all complete with the right data; a
// max_buffer_bytes under the minimum is a config error at its path.
func TestBufferPoolSmallerThanReads(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"max_buffer_bytes": 4096})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || errs[0].Path != "max_buffer_bytes" {
		t.Fatalf("errors %v, want one at max_buffer_bytes", errs)
	}

	var cls []*client
	for i := range 4 {
		cls = append(cls, &client{name: fmt.Sprintf("pc-%02d", i+1), mac: fmt.Sprintf("52:54:00:00:01:%02x", i+1)})
	}
	e := startTarget(t, map[string]any{"max_buffer_bytes": minBufferBytes}, cls...)
	ctx := context.Background()
	const size = 3 << 20
	var wg sync.WaitGroup
	for _, c := range cls {
		s := e.mustDial(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := randomBytes(size)
			if err := s.Write(ctx, 8, data, 512, false); err != nil {
				t.Errorf("%s: write: %v", c.name, err)
				return
			}
			for range 3 {
				got := make([]byte, size)
				if err := s.Read(ctx, 8, got, 512); err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s: read back: %v (equal %v)", c.name, err, bytes.Equal(got, data))
					return
				}
			}
		}()
	}
	wg.Wait()
	e.h.WaitMetricValue(t, 0, "dls_iscsi_buffer_bytes")
	if v := e.h.MetricValue(t, "dls_iscsi_buffer_limit_bytes"); v != minBufferBytes {
		t.Errorf("buffer limit gauge %v, want %d", v, minBufferBytes)
	}
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func loginStatus(err error) uint16 {
	var le *initiator.LoginError
	if errors.As(err, &le) {
		return le.Status
	}
	return 0
}

func TestSecurity(t *testing.T) {
	pc1 := &client{name: "pc-01", mac: "52:54:00:00:00:01", extra: []string{"iqn.1991-05.com.microsoft:pc-01"}}
	pc2 := &client{name: "pc-02", mac: "52:54:00:00:00:02", secret: "pc2-secret-123", mutual: "pc2-mutual-456"}
	e := startTarget(t, nil, pc1, pc2)
	ctx := context.Background()

	errs := func(reason string) float64 {
		smp, _ := e.h.MetricSample(t, "dls_iscsi_errors_total", reason)
		return smp.Value
	}

	// pc-01's extra initiator may log in; pc-02's initiator may not reach
	// pc-01's disk.
	s := e.mustDial(t, pc1, func(c *initiator.Config) { c.InitiatorName = "iqn.1991-05.com.microsoft:pc-01" })
	_ = s.Logout(ctx)
	_, err := e.dial(t, pc1, func(c *initiator.Config) { c.InitiatorName = pc2.initiator() })
	if loginStatus(err) != initiator.LoginAuthzFailure {
		t.Errorf("another client's initiator: %v, want authorization failure", err)
	}
	if errs("authorization") != 1 {
		t.Errorf("authorization errors %v", errs("authorization"))
	}
	_, err = e.dial(t, pc1, func(c *initiator.Config) { c.TargetName = prefix + ":nobody" })
	if loginStatus(err) != initiator.LoginNotFound {
		t.Errorf("unknown target: %v", err)
	}

	// CHAP: wrong secret, no CHAP at all, right secret, mutual.
	_, err = e.dial(t, pc2, func(c *initiator.Config) { c.CHAPSecret = "wrong-secret-123" })
	if loginStatus(err) != initiator.LoginAuthFailure {
		t.Errorf("wrong CHAP secret: %v", err)
	}
	_, err = e.dial(t, pc2, func(c *initiator.Config) { c.CHAPSecret = "" })
	if loginStatus(err) != initiator.LoginAuthFailure {
		t.Errorf("no CHAP for a client with a secret: %v", err)
	}
	if errs("chap_failed") != 1 || errs("chap_required") != 1 {
		t.Errorf("chap_failed errors %v, chap_required %v, want 1 and 1", errs("chap_failed"), errs("chap_required"))
	}
	s = e.mustDial(t, pc2)
	if err := s.TestUnitReady(ctx); err != nil {
		t.Fatal(err)
	}
	_ = s.Logout(ctx)
	s = e.mustDial(t, pc2, func(c *initiator.Config) { c.MutualUser, c.MutualSecret = pc2.target(), pc2.mutual })
	_ = s.Logout(ctx)
	_, err = e.dial(t, pc2, func(c *initiator.Config) { c.MutualUser, c.MutualSecret = pc2.target(), "not-the-mutual" })
	if err == nil || !strings.Contains(err.Error(), "mutual") {
		t.Errorf("wrong mutual secret accepted: %v", err)
	}
	// pc-01 has no mutual secret: an initiator that wants the target to
	// prove itself must not log in.
	_, err = e.dial(t, pc1, func(c *initiator.Config) {
		c.CHAPUser, c.CHAPSecret, c.MutualUser, c.MutualSecret = pc1.initiator(), "any-secret-123", pc1.target(), "not-the-mutual"
	})
	if err == nil {
		t.Error("mutual CHAP with a target that has no secret logged in")
	}

	// Discovery shows an initiator its own client's target only.
	list, err := initiator.Discover(ctx, initiator.Config{Addr: e.addr, InitiatorName: pc1.initiator()})
	if err != nil || len(list) != 1 || list[0].Name != pc1.target() || len(list[0].Addresses) != 1 {
		t.Errorf("discovery by pc-01: %+v %v", list, err)
	}
	list, err = initiator.Discover(ctx, initiator.Config{Addr: e.addr, InitiatorName: pc2.initiator(), CHAPUser: pc2.initiator(), CHAPSecret: pc2.secret})
	if err != nil || len(list) != 1 || list[0].Name != pc2.target() {
		t.Errorf("discovery by pc-02: %+v %v", list, err)
	}
	_, err = initiator.Discover(ctx, initiator.Config{Addr: e.addr, InitiatorName: pc2.initiator()})
	if loginStatus(err) != initiator.LoginAuthFailure {
		t.Errorf("discovery by pc-02 without CHAP: %v", err)
	}
	_, err = initiator.Discover(ctx, initiator.Config{Addr: e.addr, InitiatorName: "iqn.2000-01.com.example:stranger"})
	if loginStatus(err) != initiator.LoginAuthzFailure {
		t.Errorf("discovery by a stranger: %v", err)
	}
	if errs("unknown_initiator") != 1 {
		t.Errorf("unknown_initiator errors %v, want 1", errs("unknown_initiator"))
	}
}

func TestDigestsAndConcurrentSessions(t *testing.T) {
	var cls []*client
	for i := range 6 {
		cls = append(cls, &client{name: fmt.Sprintf("pc-%02d", i), mac: fmt.Sprintf("52:54:00:00:01:%02x", i)})
	}
	e := startTarget(t, nil, cls...)
	ctx := context.Background()
	var wg sync.WaitGroup
	errc := make(chan error, len(cls))
	for i, c := range cls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := e.dial(t, c, func(cfg *initiator.Config) {
				cfg.HeaderDigest, cfg.DataDigest = i%2 == 0, i%2 == 0
				cfg.InitialR2T = i%3 == 0
				cfg.NoImmediateData = i%3 == 1
				cfg.MaxRecvDataSegmentLength = 8192 * (i + 1)
			})
			if err != nil {
				errc <- err
				return
			}
			defer s.Close()
			// Many commands in flight on one session.
			var inner sync.WaitGroup
			for j := range 16 {
				inner.Add(1)
				go func() {
					defer inner.Done()
					data := bytes.Repeat([]byte{byte(i), byte(j)}, 32<<10)
					lba := uint64(j * 256)
					if err := s.Write(ctx, lba, data, 512, false); err != nil {
						errc <- err
						return
					}
					got := make([]byte, len(data))
					if err := s.Read(ctx, lba, got, 512); err != nil || !bytes.Equal(got, data) {
						errc <- fmt.Errorf("session %d command %d: read back: %v", i, j, err)
					}
				}()
			}
			inner.Wait()
			if err := s.Logout(ctx); err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	waitFor(t, func() bool { return len(e.host.Attached()) == 0 }, "every volume detached")
}

// TestBadInput sends malformed PDUs on one connection and checks that a
// second session of the same initiator (multipath: end_stale_sessions
// off) goes on undisturbed.
func TestBadInput(t *testing.T) {
	pc1 := &client{name: "pc-01", mac: "52:54:00:00:00:01"}
	e := startTarget(t, map[string]any{"max_recv_data_segment_length": 8192, "end_stale_sessions": false}, pc1)
	ctx := context.Background()
	good := e.mustDial(t, pc1, func(c *initiator.Config) { c.ISID = [6]byte{0x80, 0, 0, 0, 0, 1} })
	bad := e.mustDial(t, pc1, func(c *initiator.Config) { c.ISID = [6]byte{0x80, 0, 0, 0, 0, 2} })

	// A CDB past the end: CHECK CONDITION, LBA out of range.
	err := bad.Read(ctx, uint64(pc1.size/512), make([]byte, 512), 512)
	var se *initiator.SCSIError
	if !errors.As(err, &se) || se.Key != 5 || se.ASC != 0x21 {
		t.Errorf("read past the end: %v", err)
	}
	// An unknown opcode: CHECK CONDITION, invalid command operation code.
	r, err := bad.Command(ctx, 0, []byte{0xc5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0)
	if err != nil || r.Err() == nil || !errors.As(r.Err(), &se) || se.ASC != 0x20 {
		t.Errorf("unknown opcode: %v %v", r, err)
	}
	// A data segment longer than negotiated: Reject, session goes on.
	conn := bad.Conn()
	p := &pdu.PDU{}
	p.SetOpcode(pdu.OpNOPOut, true)
	p.Header[1] = pdu.FlagFinal
	p.SetU32(16, 0x7777)
	p.SetU32(20, 0xffffffff)
	p.Data = make([]byte, 64<<10)
	if _, err := conn.Write(p.Encode(nil, false, false)); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Ping(ctx, []byte("still there")); err != nil {
		t.Errorf("ping after an oversized PDU: %v", err)
	}
	// Garbage: an unknown opcode is rejected; then the connection is
	// broken with random bytes.
	p = &pdu.PDU{}
	p.SetOpcode(0x1d, true)
	_, _ = conn.Write(p.Encode(nil, false, false))
	_, _ = conn.Write(randomBytes(4096))
	time.Sleep(50 * time.Millisecond)

	// The other session never noticed.
	data := randomBytes(64 << 10)
	if err := good.Write(ctx, 100, data, 512, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	if err := good.Read(ctx, 100, got, 512); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("good session after the bad one: %v", err)
	}
	if smp, _ := e.h.MetricSample(t, "dls_iscsi_errors_total", "protocol"); smp.Value < 2 {
		t.Errorf("protocol errors %v", smp.Value)
	}
}

// TestVanishMidWrite resets the TCP connection of a client with writes in
// flight: every write acknowledged after FUA or SYNCHRONIZE CACHE is in
// the volume file.
func TestVanishMidWrite(t *testing.T) {
	pc1 := &client{name: "pc-01", mac: "52:54:00:00:00:01", size: 32 << 20}
	e := startTarget(t, nil, pc1)
	ctx := context.Background()
	s := e.mustDial(t, pc1)
	acked := map[uint64][]byte{}
	var mu sync.Mutex
	write := func(i int) {
		data := randomBytes(256 << 10)
		lba := uint64(i * 512)
		if err := s.Write(ctx, lba, data, 512, i%2 == 0); err != nil {
			return
		}
		if i%2 == 1 {
			if err := s.SyncCache(ctx); err != nil {
				return
			}
		}
		mu.Lock()
		acked[lba] = data
		mu.Unlock()
	}
	for i := range 8 {
		write(i)
	}
	var wg sync.WaitGroup
	for i := 8; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			write(i)
		}()
	}
	time.Sleep(3 * time.Millisecond)
	tc := s.Conn().(*net.TCPConn)
	_ = tc.SetLinger(0)
	tc.Close() // RST, with writes in flight
	wg.Wait()
	waitFor(t, func() bool { return len(e.host.Attached()) == 0 }, "volume detached after the reset")
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged before the reset")
	}
	for lba, data := range acked {
		if !bytes.Equal(fileAt(t, pc1.path, int64(lba)*512, len(data)), data) {
			t.Errorf("acknowledged write at LBA %d lost", lba)
		}
	}
}

// TestStaleSessionsEnd: a rebooted machine logs in under a new ISID; its
// dead session ends and the volume is detached before the new one
// attaches, unless end_stale_sessions is off (multipath initiators).
func TestStaleSessionsEnd(t *testing.T) {
	for _, end := range []bool{true, false} {
		t.Run(fmt.Sprintf("end_stale_sessions=%v", end), func(t *testing.T) {
			pc1 := &client{name: "pc-01", mac: "52:54:00:00:00:01"}
			e := startTarget(t, map[string]any{"end_stale_sessions": end}, pc1)
			ctx := context.Background()
			first := e.mustDial(t, pc1, func(c *initiator.Config) { c.ISID = [6]byte{0x80, 0, 0, 0, 0, 1} })
			if err := first.TestUnitReady(ctx); err != nil {
				t.Fatal(err)
			}
			second := e.mustDial(t, pc1, func(c *initiator.Config) { c.ISID = [6]byte{0x80, 0, 0, 0, 0, 2} })
			if err := second.TestUnitReady(ctx); err != nil {
				t.Fatal(err)
			}
			err := first.TestUnitReady(ctx)
			if end {
				if err == nil {
					t.Error("the stale session still answers")
				}
				e.h.WaitMetricValue(t, 1, "dls_iscsi_sessions")
				// Attached twice: the stale session's volume was
				// detached before the new session attached it.
				if n := e.host.AttachCount("pc-01"); n != 2 {
					t.Errorf("volume attached %d times, want 2 (detached in between)", n)
				}
				return
			}
			if err != nil {
				t.Errorf("with end_stale_sessions off the first session ended: %v", err)
			}
			e.h.WaitMetricValue(t, 2, "dls_iscsi_sessions")
			if n := e.host.AttachCount("pc-01"); n != 1 {
				t.Errorf("volume attached %d times, want 1 (shared by both sessions)", n)
			}
		})
	}
}

func TestReinstatementAndTaskManagement(t *testing.T) {
	pc1 := &client{name: "pc-01", mac: "52:54:00:00:00:01"}
	e := startTarget(t, nil, pc1)
	ctx := context.Background()
	isid := [6]byte{0x80, 1, 2, 3, 4, 5}
	first := e.mustDial(t, pc1, func(c *initiator.Config) { c.ISID = isid })
	second := e.mustDial(t, pc1, func(c *initiator.Config) { c.ISID = isid })
	if err := second.TestUnitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.TestUnitReady(ctx); err == nil {
		t.Error("the reinstated session still answers")
	}
	e.h.WaitMetricValue(t, 1, "dls_iscsi_sessions") // the reinstated session has ended
	// Task management.
	if r, err := second.TaskManagement(ctx, 1, 0, 0x12345); err != nil || r != 1 {
		t.Errorf("abort of an unknown task: %d %v", r, err)
	}
	for _, fn := range []byte{2, 5, 6} {
		if r, err := second.TaskManagement(ctx, fn, 0, 0); err != nil || r != 0 {
			t.Errorf("TMF %d: %d %v", fn, r, err)
		}
	}
	// A LUN reset leaves a unit attention for the other sessions only.
	if err := second.TestUnitReady(ctx); err != nil {
		t.Errorf("after the reset: %v", err)
	}
	// NOP-Out answered while long reads are in flight.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = second.Read(ctx, 0, make([]byte, 4<<20), 512)
		}()
	}
	for range 5 {
		if d, err := second.Ping(ctx, []byte("ping")); err != nil || string(d) != "ping" {
			t.Errorf("ping during reads: %q %v", d, err)
		}
	}
	wg.Wait()
	if r, err := second.TaskManagement(ctx, 7, 0, 0); err != nil || r != 0 {
		t.Errorf("cold reset: %d %v", r, err)
	}
	waitFor(t, func() bool { return len(e.host.Attached()) == 0 }, "volume detached after a cold reset")
}

// libiscsi's default initiator names (iscsi-test-cu --help): both must be
// the client's initiators.
var libiscsiInitiators = []string{
	"iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
	"iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2",
}

// TestLibiscsiConformance runs libiscsi's iscsi-test-cu (package
// libiscsi-bin) against the plugin on a 64 MiB volume: a subset of its
// suites, or all of them with DLS_ISCSI_CONFORMANCE=ALL. Skipped when
// iscsi-test-cu is not installed, except under CI. The client has a CHAP
// secret, as every client has by default, which both of libiscsi's
// initiators answer as the client's initiator IQN; bind_to_lease is off
// (a protocol test, not a boot).
func TestLibiscsiConformance(t *testing.T) {
	bin, err := exec.LookPath("iscsi-test-cu")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("iscsi-test-cu not installed (package libiscsi-bin); CI must install it")
		}
		t.Skip("iscsi-test-cu not installed (package libiscsi-bin)")
	}
	pc := &client{name: "conformance", mac: "52:54:00:00:0c:01", size: 64 << 20, extra: libiscsiInitiators,
		secret: "Conformance12345", addrs: []string{}}
	e := startTarget(t, map[string]any{"bind_to_lease": false}, pc)
	suites := []string{
		"iSCSI", "SCSI.Inquiry", "SCSI.ReadCapacity16", "SCSI.Read10", "SCSI.Write16", "SCSI.Verify16",
		"SCSI.Unmap", "SCSI.WriteSame16", "SCSI.CompareAndWrite", "SCSI.ProutReserve", "SCSI.PrinReadKeys",
		"SCSI.ReportSupportedOpcodes", "SCSI.ModeSense6", "SCSI.PreventAllow", "SCSI.TestUnitReady",
	}
	if s := os.Getenv("DLS_ISCSI_CONFORMANCE"); s != "" {
		suites = strings.Split(s, ",")
	}
	url := fmt.Sprintf("iscsi://%s%%%s@%s/%s/0", pc.initiator(), pc.secret, e.addr, pc.target())
	for _, suite := range suites {
		t.Run(suite, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			out, _ := exec.CommandContext(ctx, bin, "-d", "--test="+suite, url).CombinedOutput()
			var total, ran, passed, failed int
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				if len(f) >= 5 && f[0] == "tests" {
					fmt.Sscan(strings.Join(f[1:5], " "), &total, &ran, &passed, &failed)
				}
			}
			t.Logf("%s: %d of %d passed", suite, passed, total)
			if n := e.errs(t, "chap_required") + e.errs(t, "chap_failed"); n != 0 {
				t.Errorf("%v CHAP refusals: iscsi-test-cu did not log in with CHAP", n)
			}
			if total == 0 || passed != total {
				t.Errorf("%s: %d of %d passed:\n%s", suite, passed, total, failedLines(string(out)))
			}
		})
	}
}

// failedLines keeps the lines of an iscsi-test-cu report around failures.
func failedLines(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "FAILED") || strings.HasPrefix(l, "Suite:") || strings.Contains(l, "CU_ASSERT") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
