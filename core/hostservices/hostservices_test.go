package hostservices_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

const prefix = "iqn.2026-11.io.dls"

var boot = hostservices.Boot{URL: "http://10.0.0.1:9180/", IQNPrefix: prefix, ServerAddress: "10.0.0.1"}

// resolver is a StorageResolver that knows no storage.
type resolver struct{ err error }

func (r resolver) StorageForImage(_ context.Context, image string) (*storagerpc.Client, error) {
	return nil, fmt.Errorf("image %s: %w", image, r.err)
}

var errNoStorage = errors.New("storage plugin lab-store is not running")

// newServices returns host services over a fresh SQLite store holding
// pc-01 (reserved address, an extra initiator) and pc-02 (neither).
func newServices(t *testing.T) (*hostservices.Services, store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "dls.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	for _, c := range []store.Client{
		{Name: "pc-01", MAC: "52:54:00:AA:00:01", Image: "lab", Address: netip.MustParseAddr("10.0.0.51"),
			Initiators: []string{"iqn.1991-05.com.microsoft:PC-01.lab"}},
		{Name: "pc-02", MAC: "52-54-00-aa-00-02", Image: "lab"},
	} {
		if err := st.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return hostservices.New(boot, st, resolver{err: errNoStorage}, hclog.NewNullLogger()), st
}

func TestLookupByMAC(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	for _, tc := range []struct {
		arch uint16
		file string
	}{{0, "undionly.kpxe"}, {6, "ipxe.efi"}, {7, "ipxe.efi"}, {9, "ipxe.efi"}, {11, "snp.efi"}, {2, "undionly.kpxe"},
		// UEFI HTTP boot (15-19) takes its PXE sibling's file.
		{15, "ipxe.efi"}, {16, "ipxe.efi"}, {17, "ipxe.efi"}, {10, "snp.efi"}, {18, "snp.efi"}, {19, "snp.efi"}} {
		// Any MAC spelling finds the client.
		d, err := s.Lookup(ctx, host.Query{MAC: "52:54:00:aa:00:01", Arch: tc.arch})
		if err != nil {
			t.Fatal(err)
		}
		if d.BootFile != tc.file {
			t.Errorf("arch %d: boot file %q, want %q", tc.arch, d.BootFile, tc.file)
		}
	}

	d, err := s.Lookup(ctx, host.Query{MAC: "52-54-00-AA-00-01", Arch: 7})
	if err != nil {
		t.Fatal(err)
	}
	want := host.Decision{
		Known: true, Client: "pc-01", BootFile: "ipxe.efi", NextServer: "10.0.0.1",
		ScriptURL:       "http://10.0.0.1:9180/boot/52-54-00-aa-00-01.ipxe",
		TargetIQN:       prefix + ":pc-01",
		InitiatorIQN:    prefix + ":initiator:pc-01",
		Initiators:      []string{prefix + ":initiator:pc-01", "iqn.1991-05.com.microsoft:pc-01.lab"},
		ReservedAddress: "10.0.0.51",
	}
	if fmt.Sprintf("%+v", d) != fmt.Sprintf("%+v", want) {
		t.Errorf("decision\n%+v\nwant\n%+v", d, want)
	}
	sc, err := s.Script(ctx, host.ScriptQuery{MAC: "52-54-00-AA-00-01", Peer: leaseOf(t, s, "52:54:00:aa:00:01")})
	if err != nil || !sc.Found || sc.Client != "pc-01" {
		t.Fatalf("Script = %+v, %v", sc, err)
	}
	for _, part := range []string{"#!ipxe", "set initiator-iqn " + want.InitiatorIQN, "sanboot iscsi:10.0.0.1:::0:" + want.TargetIQN} {
		if !strings.Contains(sc.Body, part) {
			t.Errorf("script %q lacks %q", sc.Body, part)
		}
	}

	d, err = s.Lookup(ctx, host.Query{MAC: "52:54:00:aa:00:02"})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Known || d.Client != "pc-02" || d.ReservedAddress != "" || !slices.Equal(d.Initiators, []string{prefix + ":initiator:pc-02"}) {
		t.Errorf("pc-02: %+v, want known, no reserved address, only the derived initiator", d)
	}
}

func TestLookupUnknownIsNotAnError(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	for _, q := range []host.Query{
		{MAC: "52:54:00:ff:ff:ff"},
		{Target: prefix + ":pc-99"},
		{Target: "iqn.2000-01.com.other:pc-01"},
		{Initiator: prefix + ":initiator:pc-99"},
		{Initiator: "iqn.2000-01.com.other:nobody"},
		{},
	} {
		d, err := s.Lookup(ctx, q)
		if err != nil {
			t.Errorf("Lookup(%+v): %v, want no error", q, err)
		}
		if d.Known || d.Client != "" {
			t.Errorf("Lookup(%+v) = %+v, want unknown", q, d)
		}
	}
}

func TestLookupByIQN(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	for _, q := range []host.Query{
		{Target: prefix + ":pc-01"},
		{Target: strings.ToUpper(prefix) + ":pc-01"}, // iSCSI names are case-insensitive
		{Target: prefix + ":pc-01", Initiator: prefix + ":initiator:pc-01"},
		{Initiator: prefix + ":initiator:pc-01"},
		{Initiator: "iqn.1991-05.com.microsoft:pc-01.lab"},
		{Initiator: "IQN.1991-05.COM.MICROSOFT:PC-01.LAB"},
	} {
		d, err := s.Lookup(ctx, q)
		if err != nil {
			t.Errorf("Lookup(%+v): %v", q, err)
			continue
		}
		if !d.Known || d.Client != "pc-01" || d.TargetIQN != prefix+":pc-01" {
			t.Errorf("Lookup(%+v) = %+v, want pc-01", q, d)
		}
	}
}

func TestLookupStoreFailure(t *testing.T) {
	s, st := newServices(t)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Lookup(context.Background(), host.Query{MAC: "52:54:00:aa:00:01"})
	if err == nil || !strings.Contains(err.Error(), `mac "52:54:00:aa:00:01"`) {
		t.Errorf("Lookup on a closed store: %v, want an error naming the MAC", err)
	}
}

func TestReport(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	err := s.Report(ctx, []host.Event{
		{Type: host.EventDHCPDiscover, MAC: "52:54:00:aa:00:01", Time: at},
		{Type: "made_up", MAC: "52:54:00:aa:00:01", Time: at},
		{Type: host.EventOSBooted, Client: "pc-01", Address: "10.0.0.51", Time: at, Attrs: map[string]string{"k": "v"}},
	})
	if err != nil {
		t.Fatalf("Report with an unknown type: %v, want the rest kept and no error", err)
	}
	got := s.Recent()
	if len(got) != 2 || got[0].Type != host.EventDHCPDiscover || got[1].Type != host.EventOSBooted || got[1].Attrs["k"] != "v" {
		t.Fatalf("Recent() = %+v, want the discover and os_booted events", got)
	}
	got[0].Type = "changed"
	if s.Recent()[0].Type != host.EventDHCPDiscover {
		t.Error("Recent() returns the services' own slice")
	}

	// Every known type is kept.
	for _, typ := range host.EventTypes {
		if err := s.Report(ctx, []host.Event{{Type: typ}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.Recent()); n != 2+len(host.EventTypes) {
		t.Errorf("%d events after reporting every type once, want %d", n, 2+len(host.EventTypes))
	}
}

func TestReportKeepsNewest1024(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	batch := func(from, to int) []host.Event {
		var out []host.Event
		for i := from; i < to; i++ {
			out = append(out, host.Event{Type: host.EventFileServed, Attrs: map[string]string{"i": fmt.Sprint(i)}})
		}
		return out
	}
	for _, b := range [][]host.Event{batch(0, 1000), batch(1000, 1100), batch(1100, 3200)} {
		if err := s.Report(ctx, b); err != nil {
			t.Fatal(err)
		}
		got := s.Recent()
		last := b[len(b)-1].Attrs["i"]
		if len(got) > 1024 || got[len(got)-1].Attrs["i"] != last {
			t.Fatalf("after the batch ending at %s: %d events, last %s", last, len(got), got[len(got)-1].Attrs["i"])
		}
	}
	got := s.Recent()
	if len(got) != 1024 || got[0].Attrs["i"] != "2176" || got[1023].Attrs["i"] != "3199" {
		t.Errorf("kept %d events from %s to %s, want 1024 from 2176 to 3199", len(got), got[0].Attrs["i"], got[len(got)-1].Attrs["i"])
	}
}

func TestLeasesCommitLoad(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	in := []host.Lease{
		{Pool: "lan", Address: "10.0.0.100", MAC: "52:54:00:AA:00:01", Expires: exp, State: host.LeaseBound, Hostname: "pc-01"},
		{Pool: "lan", Address: "10.0.0.101", MAC: "52:54:00:aa:00:02", Expires: exp, State: host.LeaseDeclined},
		{Pool: "lab", Address: "10.1.0.100", MAC: "52:54:00:aa:00:03", Expires: exp, State: host.LeaseReleased},
	}
	rs, err := s.Commit(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 || !rs[0].OK || !rs[1].OK || !rs[2].OK {
		t.Fatalf("Commit = %+v, want three OK", rs)
	}

	got, err := s.Load(ctx, "lan")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Load(lan) = %+v, want 2 leases", got)
	}
	want := in[:2]
	want[0].MAC = "52:54:00:aa:00:01" // the store keeps MACs canonical
	for i := range want {
		g, w := got[i], want[i]
		if !g.Expires.Equal(w.Expires) {
			t.Errorf("lease %d: Expires %v, want %v", i, g.Expires, w.Expires)
		}
		g.Expires, w.Expires = time.Time{}, time.Time{}
		if g != w {
			t.Errorf("lease %d: %+v, want %+v", i, g, w)
		}
	}
	if all, err := s.Load(ctx, ""); err != nil || len(all) != 3 {
		t.Errorf("Load(\"\") = %d leases, %v, want 3", len(all), err)
	}

	// Another MAC asking for a held address is told who holds it; the
	// holder renewing is fine; the released address is free for anyone.
	rs, err = s.Commit(ctx, []host.Lease{
		{Pool: "lan", Address: "10.0.0.100", MAC: "52:54:00:aa:00:09", Expires: exp, State: host.LeaseBound},
		{Pool: "lan", Address: "10.0.0.100", MAC: "52:54:00:aa:00:01", Expires: exp.Add(time.Hour), State: host.LeaseBound},
		{Pool: "lab", Address: "10.1.0.100", MAC: "52:54:00:aa:00:09", Expires: exp, State: host.LeaseBound},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantRs := []host.CommitResult{{OK: false, Holder: "52:54:00:aa:00:01"}, {OK: true}, {OK: true}}
	if !slices.Equal(rs, wantRs) {
		t.Errorf("Commit = %+v, want %+v", rs, wantRs)
	}
}

func TestLeasesCommitInvalid(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	_, err := s.Commit(ctx, []host.Lease{
		{Pool: "lan", Address: "10.0.0.100", MAC: "52:54:00:aa:00:01", Expires: exp, State: host.LeaseBound},
		{Pool: "lan", Address: "10.0.0.300", MAC: "52:54:00:aa:00:02", Expires: exp, State: host.LeaseBound},
	})
	if err == nil || !strings.Contains(err.Error(), `lease 1: address "10.0.0.300"`) {
		t.Errorf("Commit with a bad address: %v, want an error naming lease 1", err)
	}
	_, err = s.Commit(ctx, []host.Lease{{Pool: "lan", Address: "10.0.0.100", MAC: "52:54:00:aa:00:01", Expires: exp, State: "lost"}})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Commit with an unknown state: %v, want ErrInvalid", err)
	}
	if ls, _ := s.Load(ctx, ""); len(ls) != 0 {
		t.Errorf("refused batches stored %+v", ls)
	}
}

func TestAttachErrors(t *testing.T) {
	s, _ := newServices(t)
	ctx := context.Background()
	_, err := s.Attach(ctx, "pc-01")
	if !errors.Is(err, errNoStorage) || !strings.Contains(err.Error(), "attach volume of client pc-01") || !strings.Contains(err.Error(), "image lab") {
		t.Errorf("Attach with the storage down: %v, want the resolver's error wrapped, naming client pc-01", err)
	}
	_, err = s.Attach(ctx, "pc-99")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "client pc-99") {
		t.Errorf("Attach of an unknown client: %v, want ErrNotFound naming pc-99", err)
	}
	err = s.Detach(ctx, "pc-01")
	if !errors.Is(err, errNoStorage) || !strings.Contains(err.Error(), "detach volume of client pc-01") {
		t.Errorf("Detach with the storage down: %v", err)
	}
	err = s.Detach(ctx, "pc-99")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "client pc-99") {
		t.Errorf("Detach of an unknown client: %v", err)
	}
}

func TestFor(t *testing.T) {
	s, _ := newServices(t)
	svc := s.For()
	if svc.Clients == nil || svc.Events == nil || svc.Volumes == nil || svc.Leases == nil {
		t.Errorf("For() = %+v, want every service set", svc)
	}
}
