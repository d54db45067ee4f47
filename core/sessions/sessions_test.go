package sessions_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/sessions"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

const (
	mac1 = "52:54:00:00:00:01" // pc-01: sanboot image, persistent
	mac2 = "52:54:00:00:00:02" // pc-02: kernel image that confirms
	mac3 = "52:54:00:00:00:03" // pc-03: sanboot image, not persistent
	mac9 = "52:54:00:00:00:09" // unknown

	timeout = 2 * time.Minute
)

var t0 = time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	st  *fakeStore
	clk *clock
	reg *prometheus.Registry
	tr  *sessions.Tracker

	mu       sync.Mutex
	resets   []string
	resetErr error
	changes  []store.Session // given to OnChange
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, st: newFakeStore(), clk: &clock{t: t0}}
	ctx := context.Background()
	for _, c := range []store.Client{
		{Name: "pc-01", MAC: mac1, Image: "lab", Persistent: true},
		{Name: "pc-02", MAC: mac2, Image: "linux", Persistent: true},
		{Name: "pc-03", MAC: mac3, Image: "lab", Persistent: false},
	} {
		if err := e.st.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	_ = e.st.PutImage(ctx, store.Image{Name: "lab", Storage: "tank"})
	_ = e.st.PutImage(ctx, store.Image{Name: "linux", Storage: "tank", Boot: &store.BootProfile{
		Kernel: "linux/vmlinuz", Initrd: "linux/initrd.img", Cmdline: "iscsi_auto root=/dev/sda rw", Confirm: true,
	}})
	e.tr = e.newTracker()
	return e
}

// newTracker builds a tracker over the env's store on a fresh registry, as
// a restarted host would.
func (e *env) newTracker() *sessions.Tracker {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	tr, err := sessions.New(context.Background(), sessions.Options{
		Sessions: e.st, Clients: e.st, Images: e.st, StageTimeout: timeout,
		Registerer: e.reg, Logger: hclog.NewNullLogger(), Now: e.clk.Now,
		OnNewSession: func(_ context.Context, client string) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.resets = append(e.resets, client)
			return e.resetErr
		},
		OnChange: func(s store.Session) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.changes = append(e.changes, s)
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return tr
}

// at moves the clock to t0+d and returns it.
func (e *env) at(d time.Duration) time.Time {
	e.clk.mu.Lock()
	e.clk.t = t0.Add(d)
	e.clk.mu.Unlock()
	return t0.Add(d)
}

func (e *env) report(evs ...host.Event) {
	e.t.Helper()
	if err := e.tr.Report(context.Background(), evs); err != nil {
		e.t.Fatal(err)
	}
}

// firmware is the attributes a PXE ROM's DHCP packets carry.
var firmware = map[string]string{sessions.AttrVendorClass: "PXEClient:Arch:00000:UNDI:002001"}

func discover(mac string, at time.Time) host.Event {
	return host.Event{Type: host.EventDHCPDiscover, MAC: mac, Time: at, Attrs: firmware}
}

func ev(typ, mac string, at time.Time) host.Event { return host.Event{Type: typ, MAC: mac, Time: at} }

func clientEv(typ, client string, at time.Time) host.Event {
	return host.Event{Type: typ, Client: client, Time: at}
}

// only returns the one stored session of client.
func (e *env) only(client string) store.Session {
	e.t.Helper()
	var got []store.Session
	for _, s := range e.st.all() {
		if s.Client == client {
			got = append(got, s)
		}
	}
	if len(got) != 1 {
		e.t.Fatalf("%d stored sessions of %s, want 1: %+v", len(got), client, got)
	}
	return got[0]
}

func (e *env) counter(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	e.t.Fatalf("no series %s %v", name, labels)
	return 0
}

func (e *env) histogram() *dto.Histogram {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "dls_boot_time_seconds" {
			return mf.GetMetric()[0].GetHistogram()
		}
	}
	e.t.Fatal("no dls_boot_time_seconds")
	return nil
}

func stagesOf(s store.Session) []string {
	var out []string
	for _, st := range []string{"dhcp", "ipxe", "script", "iscsi_login", "handoff", "booted"} {
		if _, ok := s.Stages[st]; ok {
			out = append(out, st)
		}
	}
	return out
}

func TestHappyPathToHandoff(t *testing.T) {
	e := newEnv(t)
	e.report(discover(mac1, e.at(0)))
	// iPXE chainloaded from the PXE ROM asks again; the DHCP exchange
	// records the address.
	e.report(
		host.Event{Type: host.EventDHCPAck, MAC: mac1, Address: "192.168.77.21", Time: e.at(time.Second)},
		host.Event{Type: host.EventDHCPDiscover, MAC: mac1, Time: e.at(4 * time.Second), Attrs: map[string]string{sessions.AttrUserClass: "iPXE"}},
	)
	e.report(host.Event{Type: host.EventScriptServed, MAC: mac1, Client: "pc-01", Address: "192.168.77.21", Time: e.at(5 * time.Second)})
	if a := e.tr.Active(); len(a) != 1 || a[0].Client != "pc-01" || a[0].State != store.SessionActive {
		t.Fatalf("Active() = %+v, want pc-01's session", a)
	}
	e.report(clientEv(host.EventISCSILogin, "pc-01", e.at(8*time.Second)))
	e.report(clientEv(host.EventISCSIHandoff, "pc-01", e.at(12*time.Second)))

	s := e.only("pc-01")
	if s.State != store.SessionDone || s.Expect != "handoff" || s.MAC != mac1 || s.Address != "192.168.77.21" {
		t.Errorf("session %+v, want done at handoff with the MAC and address", s)
	}
	if got := stagesOf(s); strings.Join(got, " ") != "dhcp script iscsi_login handoff" {
		t.Errorf("stages %v", got)
	}
	if !s.Stages["dhcp"].Equal(t0) || !s.Started.Equal(t0) || !s.Ended.Equal(t0.Add(12*time.Second)) {
		t.Errorf("times: started %v dhcp %v ended %v", s.Started, s.Stages["dhcp"], s.Ended)
	}
	if s.TokenHash != "" {
		t.Errorf("a client that does not confirm got a token hash %q", s.TokenHash)
	}
	if len(e.tr.Active()) != 0 {
		t.Errorf("Active() after handoff = %+v", e.tr.Active())
	}
	if n := e.counter("dls_boot_sessions_total"); n != 1 {
		t.Errorf("dls_boot_sessions_total = %v, want 1", n)
	}
	h := e.histogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 12 || h.GetBucket()[0].GetCumulativeCount() != 0 || h.GetBucket()[1].GetCumulativeCount() != 1 {
		t.Errorf("boot time histogram %v, want one 12 s boot", h)
	}
	// Active while it settles, for one stage timeout.
	if n := e.counter("dls_active_clients"); n != 1 {
		t.Errorf("dls_active_clients right after the boot = %v, want 1", n)
	}
	e.at(12*time.Second + timeout + time.Second)
	e.tr.Sweep(context.Background())
	if n := e.counter("dls_active_clients"); n != 0 {
		t.Errorf("dls_active_clients a stage timeout later = %v, want 0", n)
	}
	if n := e.counter("dls_boot_failures_total", "stage", "iscsi_login"); n != 0 {
		t.Errorf("failures after a good boot: %v", n)
	}
	if len(e.resets) != 0 {
		t.Errorf("a persistent client's volume was reset: %v", e.resets)
	}
}

func TestConfirmToBooted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The DHCP lookup renders the script (and its token) before the
	// discover event arrives.
	tok, err := e.tr.Token(ctx, "pc-02")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := base64.RawURLEncoding.DecodeString(tok); err != nil || len(b) != 32 {
		t.Fatalf("token %q: %d bytes, %v; want 32 bytes of base64url", tok, len(b), err)
	}
	e.report(discover(mac2, e.at(0)))
	if again, _ := e.tr.Token(ctx, "pc-02"); again != tok {
		t.Fatal("a second render in the same boot got another token")
	}
	e.report(ev(host.EventScriptServed, mac2, e.at(3*time.Second)))
	e.report(clientEv(host.EventISCSILogin, "pc-02", e.at(5*time.Second)), clientEv(host.EventISCSIHandoff, "pc-02", e.at(6*time.Second)))
	s := e.only("pc-02")
	if s.State != store.SessionActive || s.Expect != "booted" || s.TokenHash != sessions.HashToken(tok) || s.TokenUsed {
		t.Fatalf("session before confirmation %+v, want active, expecting booted, with the token's hash", s)
	}
	if strings.Contains(s.TokenHash, tok) || len(s.TokenHash) != 64 {
		t.Errorf("stored token hash %q", s.TokenHash)
	}

	e.at(40 * time.Second)
	if err := e.tr.Confirm(ctx, tok, "192.168.77.22"); err != nil {
		t.Fatalf("Confirm: %v", err)
	}
	s = e.only("pc-02")
	if s.State != store.SessionDone || !s.TokenUsed || !s.Stages["booted"].Equal(t0.Add(40*time.Second)) || s.Address != "192.168.77.22" {
		t.Errorf("session after confirmation %+v", s)
	}
	if h := e.histogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 40 {
		t.Errorf("boot time %v, want one 40 s boot (to booted, not handoff)", h)
	}
	if n := e.counter("dls_boot_confirmations_total", "result", "ok"); n != 1 {
		t.Errorf("ok confirmations = %v", n)
	}
	err = e.tr.Confirm(ctx, tok, "192.168.77.22")
	if !errors.Is(err, sessions.ErrTokenReused) {
		t.Errorf("second Confirm: %v, want ErrTokenReused", err)
	}
	if n := e.counter("dls_boot_confirmations_total", "result", "reused"); n != 1 {
		t.Errorf("reused confirmations = %v", n)
	}

	// The next boot gets a new token.
	e.report(discover(mac2, e.at(10*time.Minute)))
	next, _ := e.tr.Token(ctx, "pc-02")
	if next == tok {
		t.Error("the next boot reuses the token")
	}
}

func TestTimeoutPerStage(t *testing.T) {
	for _, tc := range []struct {
		client, mac string
		reach       []string // event types
		failed      string
	}{
		{"pc-01", mac1, []string{host.EventDHCPDiscover}, "script"},
		{"pc-01", mac1, []string{host.EventDHCPDiscover, host.EventScriptServed}, "iscsi_login"},
		{"pc-01", mac1, []string{host.EventDHCPDiscover, host.EventScriptServed, host.EventISCSILogin}, "handoff"},
		{"pc-02", mac2, []string{host.EventDHCPDiscover, host.EventScriptServed, host.EventISCSILogin, host.EventISCSIHandoff}, "booted"},
		{"pc-01", mac1, []string{host.EventScriptServed}, "iscsi_login"}, // started at script
	} {
		t.Run(tc.failed, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			var last time.Time
			for i, typ := range tc.reach {
				last = e.at(time.Duration(i) * 10 * time.Second)
				ev := host.Event{Type: typ, MAC: tc.mac, Time: last}
				if typ == host.EventDHCPDiscover {
					ev.Attrs = firmware
				}
				e.report(ev)
			}
			// The timeout runs from the latest stage: not yet failed.
			e.clk.mu.Lock()
			e.clk.t = last.Add(timeout)
			e.clk.mu.Unlock()
			e.tr.Sweep(ctx)
			if s := e.only(tc.client); s.State != store.SessionActive {
				t.Fatalf("failed at exactly the timeout: %+v", s)
			}
			e.clk.Advance(time.Second)
			e.tr.Sweep(ctx)
			s := e.only(tc.client)
			if s.State != store.SessionFailed || s.FailedStage != tc.failed || !s.Ended.Equal(last.Add(timeout)) {
				t.Errorf("session %+v, want failed at %s, ended at the deadline", s, tc.failed)
			}
			for _, st := range []string{"script", "iscsi_login", "handoff", "booted"} {
				want := 0.0
				if st == tc.failed {
					want = 1
				}
				if n := e.counter("dls_boot_failures_total", "stage", st); n != want {
					t.Errorf("dls_boot_failures_total{stage=%q} = %v, want %v", st, n, want)
				}
			}
			if n := e.counter("dls_active_clients"); n != 0 {
				t.Errorf("dls_active_clients after a failure = %v", n)
			}
			if h := e.histogram(); h.GetSampleCount() != 0 {
				t.Errorf("a failed boot was timed: %v", h)
			}
			// A later stage arriving after the failure starts nothing.
			e.report(clientEv(host.EventISCSIHandoff, tc.client, e.clk.Now()))
			if len(e.tr.Active()) != 0 {
				t.Errorf("late event revived a session: %+v", e.tr.Active())
			}
		})
	}
}

func TestDuplicatesAndOutOfOrder(t *testing.T) {
	e := newEnv(t)
	// The host's own script_served overtakes the DHCP plugin's batch.
	e.report(host.Event{Type: host.EventScriptServed, MAC: mac1, Client: "pc-01", Time: e.at(5 * time.Second)})
	e.report(
		host.Event{Type: host.EventDHCPDiscover, MAC: mac1, Time: t0, Attrs: firmware},
		host.Event{Type: host.EventDHCPDiscover, MAC: mac1, Time: t0.Add(2 * time.Second), Attrs: map[string]string{sessions.AttrArch: "7"}},
	)
	s := e.only("pc-01")
	if !s.Started.Equal(t0) || !s.Stages["dhcp"].Equal(t0) || !s.Stages["script"].Equal(t0.Add(5*time.Second)) {
		t.Fatalf("late discover: %+v, want the gap filled and the start moved back to t0", s)
	}
	// Duplicates keep the first time; earlier stages never move the
	// session back.
	e.report(ev(host.EventScriptServed, mac1, e.at(7*time.Second)))
	e.report(clientEv(host.EventISCSILogin, "pc-01", e.at(9*time.Second)))
	e.report(clientEv(host.EventISCSILogin, "pc-01", e.at(10*time.Second)), ev(host.EventScriptServed, mac1, e.at(10*time.Second)))
	s = e.only("pc-01")
	if !s.Stages["script"].Equal(t0.Add(5*time.Second)) || !s.Stages["iscsi_login"].Equal(t0.Add(9*time.Second)) || s.State != store.SessionActive {
		t.Fatalf("after duplicates: %+v", s)
	}
	// A batch out of order is taken in time order: handoff ends it.
	e.at(20 * time.Second)
	e.report(clientEv(host.EventISCSIHandoff, "pc-01", t0.Add(20*time.Second)), host.Event{Type: host.EventISCSILogout, Client: "pc-01", Time: t0.Add(15 * time.Second)})
	s = e.only("pc-01")
	if s.State != store.SessionDone || !s.Ended.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("after handoff: %+v", s)
	}
	if h := e.histogram(); h.GetSampleSum() != 20 {
		t.Errorf("boot time %v, want 20 s from the (late) discover", h.GetSampleSum())
	}
	if n := e.counter("dls_boot_sessions_total"); n != 1 {
		t.Errorf("dls_boot_sessions_total = %v, want 1", n)
	}
}

// In a boot storm a plugin's event RPC may give up while its events wait
// for the tracker: the events still count.
func TestEventsOfAReporterThatGaveUp(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.tr.Report(ctx, []host.Event{discover(mac1, e.at(0))}); err != nil {
		t.Fatal(err)
	}
	if s := e.only("pc-01"); s.Stages["dhcp"].IsZero() {
		t.Errorf("session without its dhcp stage: %+v", s)
	}
}

// batchStore is the fake store with store.SessionBatcher, counting its
// batches.
type batchStore struct {
	*fakeStore
	batches, written int
}

func (b *batchStore) WriteSessions(ctx context.Context, ss []store.Session) ([]store.Session, error) {
	b.batches++
	b.written += len(ss)
	out := make([]store.Session, len(ss))
	for i, s := range ss {
		if s.ID == 0 {
			got, err := b.CreateSession(ctx, s)
			if err != nil {
				return nil, err
			}
			out[i] = got
			continue
		}
		if err := b.UpdateSession(ctx, s); err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// The changes of one Report are written together, each session once in
// its latest state, and later writes update the sessions created so.
func TestBatchedWrites(t *testing.T) {
	e := newEnv(t)
	bs := &batchStore{fakeStore: e.st}
	tr, err := sessions.New(context.Background(), sessions.Options{
		Sessions: bs, Clients: e.st, Images: e.st, StageTimeout: timeout, Logger: hclog.NewNullLogger(), Now: e.clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Report(context.Background(), []host.Event{
		discover(mac1, e.at(0)), discover(mac2, e.at(0)), ev(host.EventScriptServed, mac1, e.at(time.Second)),
	}); err != nil {
		t.Fatal(err)
	}
	if bs.batches != 1 || bs.written != 2 {
		t.Errorf("%d batches, %d sessions written; want 1 batch of 2", bs.batches, bs.written)
	}
	if s := e.only("pc-01"); s.Stages["script"].IsZero() || s.ID == 0 {
		t.Errorf("pc-01 stored %+v", s)
	}
	if err := tr.Report(context.Background(), []host.Event{clientEv(host.EventISCSILogin, "pc-01", e.at(2*time.Second))}); err != nil {
		t.Fatal(err)
	}
	if s := e.only("pc-01"); s.Stages["iscsi_login"].IsZero() {
		t.Errorf("pc-01 not updated: %+v", s)
	}
	e.only("pc-02")
}

func TestSkippedStages(t *testing.T) {
	e := newEnv(t)
	// Script served by TFTP without an event: login follows dhcp.
	e.report(discover(mac1, e.at(0)))
	e.report(clientEv(host.EventISCSIHandoff, "pc-01", e.at(9*time.Second)))
	s := e.only("pc-01")
	if s.State != store.SessionDone || strings.Join(stagesOf(s), " ") != "dhcp handoff" {
		t.Errorf("session %+v, want done with dhcp and handoff only", s)
	}
}

func TestWhatStartsASession(t *testing.T) {
	e := newEnv(t)
	e.report(
		// An OS's own DHCP client: no firmware attributes.
		host.Event{Type: host.EventDHCPDiscover, MAC: mac1, Time: e.at(0)},
		host.Event{Type: host.EventDHCPDiscover, MAC: mac1, Time: e.at(0), Attrs: map[string]string{sessions.AttrVendorClass: "MSFT 5.0"}},
		// Later stages of a running machine.
		clientEv(host.EventISCSILogin, "pc-01", e.at(0)),
		clientEv(host.EventISCSIHandoff, "pc-01", e.at(0)),
		// Not a stage.
		ev(host.EventFileServed, mac1, e.at(0)),
		ev(host.EventDHCPRelease, mac1, e.at(0)),
		// Unknown machines.
		discover(mac9, e.at(0)),
		ev(host.EventScriptServed, mac9, e.at(0)),
		host.Event{Type: host.EventScriptServed, Client: "nobody", Time: e.at(0)},
		discover("not-a-mac", e.at(0)),
		// Stale: older than a stage timeout.
		discover(mac3, e.at(0).Add(-timeout-time.Second)),
	)
	if len(e.st.all()) != 0 || len(e.tr.Active()) != 0 {
		t.Fatalf("sessions %+v, want none", e.st.all())
	}
	if n := e.counter("dls_boot_sessions_total"); n != 0 {
		t.Errorf("dls_boot_sessions_total = %v", n)
	}
	// Firmware, in each of its spellings.
	e.report(
		host.Event{Type: host.EventDHCPDiscover, MAC: mac1, Time: e.at(0), Attrs: map[string]string{sessions.AttrUserClass: "iPXE"}},
		host.Event{Type: host.EventDHCPDiscover, MAC: "52-54-00-00-00-02", Time: e.at(0), Attrs: map[string]string{sessions.AttrVendorClass: "HTTPClient:Arch:00016"}},
		host.Event{Type: host.EventScriptServed, Client: "pc-03", Time: e.at(0)},
	)
	if n := e.counter("dls_boot_sessions_total"); n != 3 {
		t.Errorf("dls_boot_sessions_total = %v, want 3", n)
	}
	if n := e.counter("dls_active_clients"); n != 3 {
		t.Errorf("dls_active_clients = %v, want 3", n)
	}
	if s := e.only("pc-02"); s.MAC != mac2 {
		t.Errorf("MAC stored as %q", s.MAC)
	}
	if s := e.only("pc-03"); s.MAC != mac3 || strings.Join(stagesOf(s), " ") != "script" {
		t.Errorf("session started at script: %+v", s)
	}
}

func TestRebootRestartsSession(t *testing.T) {
	e := newEnv(t)
	e.report(discover(mac3, e.at(0)))
	// The chainloaded iPXE's discover, much later, while still at dhcp.
	e.report(discover(mac3, e.at(30*time.Second)))
	e.report(ev(host.EventScriptServed, mac3, e.at(31*time.Second)))
	// A script that runs dhcp again: within the grace.
	e.report(discover(mac3, e.at(35*time.Second)))
	e.report(clientEv(host.EventISCSILogin, "pc-03", e.at(36*time.Second)))
	if n := e.counter("dls_boot_sessions_total"); n != 1 {
		t.Fatalf("dls_boot_sessions_total = %v, want 1 before the reboot", n)
	}
	if len(e.resets) != 1 || e.resets[0] != "pc-03" {
		t.Fatalf("resets %v, want pc-03 once", e.resets)
	}
	// sanboot failed, the machine starts over.
	e.report(discover(mac3, e.at(60*time.Second)))
	all := e.st.all()
	if len(all) != 2 {
		t.Fatalf("stored %+v, want the old and the new session", all)
	}
	if all[0].State != store.SessionFailed || all[0].FailedStage != "handoff" || !all[0].Ended.Equal(t0.Add(60*time.Second)) {
		t.Errorf("old session %+v, want failed at handoff when the machine booted again", all[0])
	}
	if all[1].State != store.SessionActive || !all[1].Started.Equal(t0.Add(60*time.Second)) {
		t.Errorf("new session %+v", all[1])
	}
	if n := e.counter("dls_boot_failures_total", "stage", "handoff"); n != 1 {
		t.Errorf("dls_boot_failures_total{stage=handoff} = %v, want 1", n)
	}
	if n := e.counter("dls_boot_sessions_total"); n != 2 {
		t.Errorf("dls_boot_sessions_total = %v, want 2", n)
	}
	if len(e.resets) != 2 {
		t.Errorf("resets %v, want one per boot of the non-persistent client", e.resets)
	}
	if n := e.counter("dls_active_clients"); n != 1 {
		t.Errorf("dls_active_clients = %v, want 1", n)
	}
}

func TestResetErrorIsNotFatal(t *testing.T) {
	e := newEnv(t)
	e.resetErr = errors.New("storage tank is not running")
	e.report(discover(mac3, e.at(0)))
	e.report(ev(host.EventScriptServed, mac3, e.at(time.Second)))
	if s := e.only("pc-03"); s.State != store.SessionActive || len(s.Stages) != 2 {
		t.Errorf("session after a failed reset: %+v", s)
	}
}

func TestTokenRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	results := func() map[string]float64 {
		out := map[string]float64{}
		for _, r := range []string{"ok", "missing", "unknown", "reused", "expired", "error"} {
			out[r] = e.counter("dls_boot_confirmations_total", "result", r)
		}
		return out
	}
	if r := results(); r["ok"]+r["missing"]+r["unknown"]+r["reused"]+r["expired"]+r["error"] != 0 {
		t.Fatalf("counts before any confirmation: %v", r)
	}

	if err := e.tr.Confirm(ctx, "", "10.0.0.9"); !errors.Is(err, sessions.ErrTokenMissing) {
		t.Errorf("empty token: %v", err)
	}
	if err := e.tr.Confirm(ctx, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "10.0.0.9"); !errors.Is(err, sessions.ErrTokenUnknown) {
		t.Errorf("wrong token: %v", err)
	}

	// A token issued but never part of a session is unknown too.
	pendingTok, _ := e.tr.Token(ctx, "pc-01")
	if err := e.tr.Confirm(ctx, pendingTok, "10.0.0.9"); !errors.Is(err, sessions.ErrTokenUnknown) {
		t.Errorf("token without a session: %v", err)
	}

	// Expired while active: the OS took longer than the stage timeout
	// after handoff (the sweeper has not run yet).
	tok, _ := e.tr.Token(ctx, "pc-02")
	e.report(discover(mac2, e.at(0)), ev(host.EventScriptServed, mac2, e.at(time.Second)),
		clientEv(host.EventISCSILogin, "pc-02", e.at(2*time.Second)), clientEv(host.EventISCSIHandoff, "pc-02", e.at(3*time.Second)))
	e.at(3*time.Second + timeout + time.Millisecond)
	if err := e.tr.Confirm(ctx, tok, "10.0.0.9"); !errors.Is(err, sessions.ErrTokenExpired) {
		t.Errorf("late token: %v", err)
	}
	// And once the sweeper failed the session.
	e.tr.Sweep(ctx)
	if s := e.only("pc-02"); s.State != store.SessionFailed || s.FailedStage != "booted" || s.TokenUsed {
		t.Fatalf("session %+v, want failed at booted", s)
	}
	if err := e.tr.Confirm(ctx, tok, "10.0.0.9"); !errors.Is(err, sessions.ErrTokenExpired) {
		t.Errorf("token of a failed session: %v", err)
	}

	// Reused.
	e.at(10 * time.Minute)
	tok2, _ := e.tr.Token(ctx, "pc-02")
	e.report(discover(mac2, e.at(10*time.Minute)), clientEv(host.EventISCSIHandoff, "pc-02", e.at(10*time.Minute+time.Second)))
	if err := e.tr.Confirm(ctx, tok2, "10.0.0.9"); err != nil {
		t.Fatalf("good token: %v", err)
	}
	if err := e.tr.Confirm(ctx, tok2, "10.0.0.9"); !errors.Is(err, sessions.ErrTokenReused) {
		t.Errorf("reused token: %v", err)
	}
	// The first boot's token stays expired, not reusable.
	if err := e.tr.Confirm(ctx, tok, "10.0.0.9"); !errors.Is(err, sessions.ErrTokenExpired) {
		t.Errorf("old token: %v", err)
	}

	want := map[string]float64{"ok": 1, "missing": 1, "unknown": 2, "reused": 1, "expired": 3, "error": 0}
	if got := results(); !equalCounts(got, want) {
		t.Errorf("dls_boot_confirmations_total %v, want %v", got, want)
	}
}

// TestRefusedTokensChangeNothing: missing and wrong tokens (a near miss
// of the real one included) leave the waiting session as it was, so that
// its own token still confirms it; and a used token stays refused after a
// host restart, when only the store remembers it.
func TestRefusedTokensChangeNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, err := e.tr.Token(ctx, "pc-02")
	if err != nil {
		t.Fatal(err)
	}
	e.report(discover(mac2, e.at(0)), ev(host.EventScriptServed, mac2, e.at(time.Second)),
		clientEv(host.EventISCSILogin, "pc-02", e.at(2*time.Second)), clientEv(host.EventISCSIHandoff, "pc-02", e.at(3*time.Second)))
	e.at(10 * time.Second)
	for _, bad := range []string{"", tok[:len(tok)-1], tok + "A", strings.ToLower(tok) + "!"} {
		if err := e.tr.Confirm(ctx, bad, "10.0.0.9"); err == nil {
			t.Errorf("token %q confirmed pc-02's boot (the real one is %q)", bad, tok)
		}
	}
	if s := e.only("pc-02"); s.State != store.SessionActive || s.TokenUsed || !s.Stages["booted"].IsZero() {
		t.Fatalf("pc-02 after refused tokens: %+v, want still active, waiting for booted", s)
	}
	if got := [2]float64{e.counter("dls_boot_confirmations_total", "result", "missing"), e.counter("dls_boot_confirmations_total", "result", "unknown")}; got != [2]float64{1, 3} {
		t.Errorf("missing, unknown counted %v, want 1, 3", got)
	}
	if err := e.tr.Confirm(ctx, tok, "10.0.0.9"); err != nil {
		t.Fatalf("the real token after the refusals: %v", err)
	}

	e.tr = e.newTracker() // the host restarts
	if err := e.tr.Confirm(ctx, tok, "10.0.0.9"); !errors.Is(err, sessions.ErrTokenReused) {
		t.Errorf("used token after a restart: %v, want ErrTokenReused", err)
	}
	if n := e.counter("dls_boot_confirmations_total", "result", "reused"); n != 1 {
		t.Errorf("reuse after the restart counted %v times, want 1", n)
	}
	if s := e.only("pc-02"); s.State != store.SessionDone || !s.TokenUsed {
		t.Errorf("pc-02: %+v", s)
	}
}

func equalCounts(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRestartReload(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tok, _ := e.tr.Token(ctx, "pc-02")
	e.report(discover(mac2, e.at(0)), ev(host.EventScriptServed, mac2, e.at(2*time.Second)))
	e.report(discover(mac1, e.at(0)))
	e.report(discover(mac3, e.at(0)), ev(host.EventScriptServed, mac3, e.at(time.Second)), clientEv(host.EventISCSIHandoff, "pc-03", e.at(4*time.Second)))

	// The host restarts.
	e.tr = e.newTracker()
	act := e.tr.Active()
	if len(act) != 2 || act[0].Client == "pc-03" || act[1].Client == "pc-03" {
		t.Fatalf("reloaded %+v, want pc-01's and pc-02's sessions", act)
	}
	if n := e.counter("dls_active_clients"); n != 3 {
		t.Errorf("dls_active_clients after the restart = %v, want 3 (two active, one just done)", n)
	}
	// pc-02 carries on; the token its OS got before the restart confirms.
	e.report(clientEv(host.EventISCSILogin, "pc-02", e.at(5*time.Second)), clientEv(host.EventISCSIHandoff, "pc-02", e.at(6*time.Second)))
	e.at(30 * time.Second)
	if err := e.tr.Confirm(ctx, tok, "192.168.77.22"); err != nil {
		t.Fatalf("Confirm after the restart: %v", err)
	}
	s := e.only("pc-02")
	if s.State != store.SessionDone || !s.Started.Equal(t0) {
		t.Errorf("pc-02 after the restart: %+v", s)
	}
	if h := e.histogram(); h.GetSampleCount() != 1 || h.GetSampleSum() != 30 {
		t.Errorf("boot time %v, want 30 s from the start before the restart", h)
	}
	// Events by MAC still find the reloaded session.
	e.report(ev(host.EventScriptServed, mac1, e.at(31*time.Second)))
	if s := e.only("pc-01"); len(s.Stages) != 2 {
		t.Errorf("pc-01 after the restart: %+v", s)
	}
	// pc-01 times out from its latest stage.
	e.at(31*time.Second + timeout + time.Second)
	e.tr.Sweep(ctx)
	if s := e.only("pc-01"); s.State != store.SessionFailed || s.FailedStage != "iscsi_login" {
		t.Errorf("pc-01: %+v, want failed at iscsi_login", s)
	}
	if n := e.counter("dls_boot_sessions_total"); n != 0 {
		t.Errorf("reloaded sessions counted as started: %v", n)
	}
}

// TestReloadMoreThanOneRead: a host restarted while more machines were
// booting than one store read answers reloads every active session (one
// left out would stay active in the store for good).
func TestReloadMoreThanOneRead(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	const n = store.MaxSessionLimit + 200
	for i := range n {
		started := t0.Add(time.Duration(i/100) * time.Millisecond) // bursts of 100 in one millisecond
		if _, err := e.st.CreateSession(ctx, store.Session{Client: fmt.Sprintf("pc-%04d", i), Expect: "handoff",
			Stages: map[string]time.Time{"dhcp": started}, Started: started}); err != nil {
			t.Fatal(err)
		}
	}
	e.tr = e.newTracker()
	if got := len(e.tr.Active()); got != n {
		t.Errorf("reloaded %d active sessions, want %d", got, n)
	}
}

func TestReloadTwoActiveForOneClient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, at := range []time.Duration{0, time.Minute} {
		if _, err := e.st.CreateSession(ctx, store.Session{Client: "pc-01", MAC: mac1, Expect: "handoff",
			Stages: map[string]time.Time{"dhcp": t0.Add(at)}, Started: t0.Add(at)}); err != nil {
			t.Fatal(err)
		}
	}
	e.at(time.Minute)
	e.tr = e.newTracker()
	all := e.st.all()
	if act := e.tr.Active(); len(act) != 1 || act[0].ID != 2 {
		t.Errorf("active %+v, want the newer session", act)
	}
	if all[0].State != store.SessionFailed || all[0].FailedStage != "script" {
		t.Errorf("older session %+v, want failed", all[0])
	}
}

func TestStoreFailureKeepsGoing(t *testing.T) {
	e := newEnv(t)
	e.st.failNext = errors.New("database is locked")
	e.report(discover(mac1, e.at(0)))
	if len(e.st.all()) != 0 {
		t.Fatal("failed create stored something")
	}
	e.report(ev(host.EventScriptServed, mac1, e.at(time.Second)))
	s := e.only("pc-01")
	if len(s.Stages) != 2 || s.State != store.SessionActive {
		t.Errorf("session written on the next change: %+v", s)
	}
}

func TestStageTimeoutChange(t *testing.T) {
	e := newEnv(t)
	e.report(discover(mac1, e.at(0)))
	e.tr.SetStageTimeout(10 * time.Second)
	e.at(11 * time.Second)
	e.tr.Sweep(context.Background())
	if s := e.only("pc-01"); s.State != store.SessionFailed {
		t.Errorf("session %+v, want failed after the shorter timeout", s)
	}
}

func TestMetricsLint(t *testing.T) {
	e := newEnv(t)
	e.report(discover(mac1, e.at(0)), clientEv(host.EventISCSIHandoff, "pc-01", e.at(20*time.Second)))
	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	n, err := testutil.GatherAndCount(e.reg, "dls_boot_sessions_total", "dls_boot_failures_total", "dls_boot_time_seconds",
		"dls_active_clients", "dls_boot_confirmations_total")
	if err != nil || n != 1+6+1+1+6 {
		t.Errorf("%d series (%v), want 15 (failures: one per stage after dhcp)", n, err)
	}
	// The host's registry refuses a second tracker's families.
	_, err = sessions.New(context.Background(), sessions.Options{Sessions: e.st, Clients: e.st, Registerer: e.reg})
	if err == nil {
		t.Error("second registration on one registry succeeded")
	}
}

func TestConcurrentUse(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				at := t0.Add(time.Duration(j) * time.Second)
				switch i % 4 {
				case 0:
					_ = e.tr.Report(ctx, []host.Event{discover(mac1, at), ev(host.EventScriptServed, mac2, at)})
				case 1:
					tok, _ := e.tr.Token(ctx, "pc-02")
					_ = e.tr.Confirm(ctx, tok, "10.0.0.2")
				case 2:
					e.tr.Sweep(ctx)
					_ = e.tr.Active()
				case 3:
					_, _ = e.reg.Gather()
				}
			}
		}()
	}
	wg.Wait()
}

func TestConfirmStoreError(t *testing.T) {
	e := newEnv(t)
	e.st.failRead = errors.New("database is locked")
	err := e.tr.Confirm(context.Background(), "some-token", "10.0.0.9")
	if err == nil || errors.Is(err, sessions.ErrTokenUnknown) || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("Confirm with the store down: %v", err)
	}
	if n := e.counter("dls_boot_confirmations_total", "result", "error"); n != 1 {
		t.Errorf("error confirmations = %v", n)
	}
}

func TestRunSweeps(t *testing.T) {
	st := newFakeStore()
	ctx := context.Background()
	_ = st.PutClient(ctx, store.Client{Name: "pc-01", MAC: mac1, Image: "lab", Persistent: true})
	tr, err := sessions.New(ctx, sessions.Options{Sessions: st, Clients: st, StageTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = tr.Report(ctx, []host.Event{discover(mac1, time.Now())})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		tr.Run(rctx)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(tr.Active()) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if ss := st.all(); len(ss) != 1 || ss[0].State != store.SessionFailed || ss[0].FailedStage != "script" {
		t.Errorf("after Run: %+v, want the session failed at script", ss)
	}
}

// TestOnChangeDoesNotWaitForTheDisk: a stored session's change reaches
// the live stream while its write is still held by the store, and the
// state written later is not told again.
func TestOnChangeDoesNotWaitForTheDisk(t *testing.T) {
	e := newEnv(t)
	e.report(discover(mac1, e.at(0)))
	stall := make(chan struct{})
	e.st.mu.Lock()
	e.st.stall = stall
	e.st.mu.Unlock()
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		e.report(host.Event{Type: host.EventScriptServed, MAC: mac1, Client: "pc-01", Time: e.at(5 * time.Second)})
	}()
	told := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		n := 0
		for _, s := range e.changes {
			if !s.Stages["script"].IsZero() {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for told() == 0 {
		if time.Now().After(deadline) {
			close(stall)
			t.Fatal("the script stage was not told while its write was held")
		}
		time.Sleep(time.Millisecond)
	}
	close(stall)
	<-reported
	if n := told(); n != 1 {
		t.Errorf("the script state was told %d times, want once", n)
	}
	if s := e.only("pc-01"); s.Stages["script"].IsZero() {
		t.Errorf("stored %+v, want the script stage written", s)
	}
}

// TestOnChangeTellsEveryStoredState: the console's live stream gets each
// state as it is stored, with its ID, ending with the done state.
func TestOnChangeTellsEveryStoredState(t *testing.T) {
	e := newEnv(t)
	e.report(discover(mac1, e.at(0)))
	e.report(host.Event{Type: host.EventScriptServed, MAC: mac1, Client: "pc-01", Time: e.at(5 * time.Second)})
	e.report(clientEv(host.EventISCSILogin, "pc-01", e.at(8*time.Second)))
	e.report(clientEv(host.EventISCSIHandoff, "pc-01", e.at(12*time.Second)))
	e.mu.Lock()
	defer e.mu.Unlock()
	var got []string
	for _, s := range e.changes {
		if s.Client != "pc-01" || s.ID == 0 {
			t.Errorf("change %+v: want pc-01's with its store ID", s)
		}
		got = append(got, strings.Join(stagesOf(s), ",")+"/"+s.State)
	}
	want := "dhcp/active script,dhcp/active dhcp,script,iscsi_login/active dhcp,script,iscsi_login,handoff/done"
	want = strings.ReplaceAll(want, "script,dhcp", "dhcp,script")
	if strings.Join(got, " ") != want {
		t.Errorf("changes %v, want %s", got, want)
	}
}
