package clienttable

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func decision(name, reserved string) host.Decision {
	return host.Decision{Known: true, Client: name, ReservedAddress: reserved}
}

func TestVersionsAndReservations(t *testing.T) {
	k := New()
	mac1, mac2 := "52:54:00:00:00:01", "52:54:00:00:00:02"
	raw1, _ := RawMAC(mac1)
	raw2, _ := RawMAC(mac2)
	if _, err := k.Apply(host.ClientUpdate{Version: 1, Set: []host.ClientDecision{{MAC: mac1}}}); !errors.Is(err, ErrVersionGap) {
		t.Fatalf("a change before any snapshot: %v, want ErrVersionGap", err)
	}
	res, err := k.Apply(host.ClientUpdate{Version: 5, Full: true, UnknownClients: "discover",
		Set: []host.ClientDecision{{MAC: mac1, Decision: decision("pc1", "10.0.0.50")}, {MAC: mac2, Decision: decision("pc2", "")}, {MAC: "not-a-mac"}}})
	if err != nil || len(res) != 1 || res[0] != (Reservation{MAC: raw1, Address: "10.0.0.50"}) {
		t.Fatalf("snapshot: %v %+v", err, res)
	}
	if d, policy, live := k.Get(raw1); !live || !d.Known || d.Client != "pc1" || policy != "discover" {
		t.Fatalf("get pc1: %+v %q %v", d, policy, live)
	}
	select {
	case <-k.Ready():
	default:
		t.Fatal("not ready after a snapshot")
	}
	// The next version: pc1 loses its reservation, pc2 is removed.
	res, err = k.Apply(host.ClientUpdate{Version: 6, Set: []host.ClientDecision{{MAC: mac1, Decision: decision("pc1", "")}}, Removed: []string{mac2, "junk"}})
	if err != nil || len(res) != 1 || res[0] != (Reservation{MAC: raw1}) {
		t.Fatalf("change: %v %+v", err, res)
	}
	if d, _, _ := k.Get(raw2); d.Known {
		t.Fatal("removed MAC still known")
	}
	// A skipped version makes the table unusable until a snapshot.
	if _, err := k.Apply(host.ClientUpdate{Version: 8}); !errors.Is(err, ErrVersionGap) {
		t.Fatalf("gap: %v", err)
	}
	if _, _, live := k.Get(raw1); live {
		t.Fatal("table used after a gap")
	}
	if _, err := k.Apply(host.ClientUpdate{Version: 7}); !errors.Is(err, ErrVersionGap) {
		t.Fatalf("the next version after a gap, without a snapshot: %v", err)
	}
	// A snapshot (a host restart starts versions over) clears everything
	// it does not list, reservations too.
	if _, err := k.Apply(host.ClientUpdate{Version: 1, Full: true, Set: []host.ClientDecision{{MAC: mac1, Decision: decision("pc1", "10.0.0.9")}}}); err != nil {
		t.Fatal(err)
	}
	res, err = k.Apply(host.ClientUpdate{Version: 1, Full: true, Set: []host.ClientDecision{{MAC: mac2, Decision: decision("pc2", "10.0.0.60")}}})
	if err != nil {
		t.Fatal(err)
	}
	if d, _, live := k.Get(raw1); !live || d.Known {
		t.Fatalf("pc1 after a snapshot without it: %+v", d)
	}
	if v, n, live := k.State(); v != 1 || n != 1 || !live {
		t.Fatalf("state %d %d %v", v, n, live)
	}
	want := map[Reservation]bool{{MAC: raw1}: true, {MAC: raw2, Address: "10.0.0.60"}: true}
	if len(res) != 2 || !want[res[0]] || !want[res[1]] {
		t.Fatalf("reservations after the snapshot: %+v", res)
	}
}

// watcher serves scripted streams: each Watch sends the next script's
// updates, then ends with its error (nil: waits for ctx).
type watcher struct {
	mu      sync.Mutex
	scripts []script
	calls   int
}

type script struct {
	updates []host.ClientUpdate
	end     error
}

func (w *watcher) Watch(ctx context.Context, fn func(host.ClientUpdate) error) error {
	w.mu.Lock()
	i := w.calls
	w.calls++
	w.mu.Unlock()
	if i >= len(w.scripts) {
		<-ctx.Done()
		return ctx.Err()
	}
	for _, u := range w.scripts[i].updates {
		if err := fn(u); err != nil {
			return err
		}
	}
	if w.scripts[i].end == nil {
		<-ctx.Done()
		return ctx.Err()
	}
	return w.scripts[i].end
}

func (w *watcher) watches() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls
}

func until(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFollowWatchesAgain: a gap and a broken stream each end a watch; the
// table is not live in between, and the next snapshot makes it live.
func TestFollowWatchesAgain(t *testing.T) {
	snap := func(v uint64, mac string) host.ClientUpdate {
		return host.ClientUpdate{Version: v, Full: true, Set: []host.ClientDecision{{MAC: mac, Decision: decision(mac, "10.0.0."+fmt.Sprint(v))}}}
	}
	w := &watcher{scripts: []script{
		{updates: []host.ClientUpdate{snap(1, "52:54:00:00:00:01"), {Version: 3}}},           // gap
		{updates: []host.ClientUpdate{snap(4, "52:54:00:00:00:02")}, end: errors.New("EOF")}, // broken
		{updates: []host.ClientUpdate{snap(9, "52:54:00:00:00:03")}},                         // stays up
	}}
	k := New()
	var mu sync.Mutex
	var reserved []Reservation
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.Follow(ctx, w, hclog.NewNullLogger(), func(r Reservation) {
			mu.Lock()
			reserved = append(reserved, r)
			mu.Unlock()
		})
	}()
	k.Wait(t.Context(), hclog.NewNullLogger())
	until(t, "version 9", func() bool { v, n, live := k.State(); return v == 9 && n == 1 && live })
	if n := w.watches(); n != 3 {
		t.Errorf("%d watches, want 3", n)
	}
	cancel()
	<-done
	if _, _, live := k.State(); live {
		t.Error("live after Follow ended")
	}
	mu.Lock()
	defer mu.Unlock()
	// 01 reserved, then cleared by snapshot 4 which reserves 02, then 02
	// cleared by snapshot 9 which reserves 03.
	if len(reserved) != 5 || reserved[0].Address != "10.0.0.1" || reserved[len(reserved)-1].Address != "10.0.0.9" {
		t.Errorf("reservations %+v", reserved)
	}
}

// TestHostThatCannotPush: Unimplemented or PermissionDenied end Follow at
// once, the table settled (Wait returns) and not live.
func TestHostThatCannotPush(t *testing.T) {
	for _, code := range []codes.Code{codes.Unimplemented, codes.PermissionDenied} {
		k := New()
		w := &watcher{scripts: []script{{end: fmt.Errorf("host clients watch: %w", status.Error(code, "no"))}}}
		start := time.Now()
		k.Follow(t.Context(), w, hclog.NewNullLogger(), nil)
		k.Wait(t.Context(), hclog.NewNullLogger())
		if d := time.Since(start); d > time.Second {
			t.Errorf("%v: took %v", code, d)
		}
		if _, _, live := k.State(); live {
			t.Errorf("%v: live without a table", code)
		}
	}
}

func TestWaitEndsWithCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	New().Wait(ctx, hclog.NewNullLogger())
	if time.Since(start) > time.Second {
		t.Error("Wait outlived its context")
	}
}

func TestMetricsReport(t *testing.T) {
	reg := metrics.NewRegistry()
	m := NewMetrics(reg, "dls_test")
	k := New()
	if _, err := k.Apply(host.ClientUpdate{Version: 3, Full: true, Set: []host.ClientDecision{{MAC: "52:54:00:00:00:01"}}}); err != nil {
		t.Fatal(err)
	}
	m.Lookups.Inc()
	m.Report(k)
	got := collect(t, reg)
	for _, want := range []string{"dls_test_client_table_version 3", "dls_test_client_table_clients 1", "dls_test_client_table_live 1", "dls_test_host_lookups_total 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in\n%s", want, got)
		}
	}
	m.Report(nil)
	if got := collect(t, reg); strings.Contains(got, "client_table") {
		t.Errorf("series left when not serving:\n%s", got)
	}
}

func collect(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	fams, err := reg.Collect()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, f := range fams {
		for _, s := range f.Samples {
			fmt.Fprintf(&b, "%s %g\n", f.Name, s.Value)
		}
	}
	return b.String()
}
