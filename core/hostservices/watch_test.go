package hostservices_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dls-project/dls/core/clientfeed"
	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// TestWatchPushesWhatLookupAnswers: the pushed decisions are Lookup's for
// a DHCP query, minus the boot file (the plugin's by architecture); a
// client registered by Lookup is pushed as the next version.
func TestWatchPushesWhatLookupAnswers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw := bootStore(t)
	feed := clientfeed.New(raw)
	b := boot
	b.UnknownClients, b.DefaultImage = hostservices.UnknownRegister, "lab"
	s := hostservices.New(b, clientfeed.Notify(raw, feed), resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithFeed(feed))
	updates := make(chan host.ClientUpdate, 16)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(u host.ClientUpdate) error { updates <- u; return nil })
	}()
	next := func() host.ClientUpdate {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("nothing pushed")
		}
		return host.ClientUpdate{}
	}
	snap := next()
	if !snap.Full || snap.UnknownClients != hostservices.UnknownRegister || len(snap.Set) == 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	for _, e := range snap.Set {
		want, err := s.Lookup(ctx, host.Query{MAC: e.MAC})
		if err != nil {
			t.Fatal(err)
		}
		want.BootFile = ""
		if e.Decision.Client != want.Client || e.Decision.ScriptURL != want.ScriptURL || e.Decision.ReservedAddress != want.ReservedAddress ||
			e.Decision.TargetIQN != want.TargetIQN || e.Decision.BootFile != "" || !e.Decision.Known {
			t.Errorf("pushed %+v, Lookup says %+v", e.Decision, want)
		}
	}
	// Registration through Lookup is a committed write: pushed next.
	d, err := s.Lookup(ctx, host.Query{MAC: "52:54:00:cc:00:01", VendorClass: "PXEClient:Arch:00007"})
	if err != nil || !d.Known {
		t.Fatalf("register: %+v %v", d, err)
	}
	u := next()
	if u.Full || u.Version != snap.Version+1 || len(u.Set) != 1 || u.Set[0].MAC != "52:54:00:cc:00:01" || u.Set[0].Decision.Client != d.Client {
		t.Fatalf("after registration: %+v", u)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Watch ended with %v", err)
	}
	// Services without a feed refuse to watch: the plugin keeps Lookup.
	plain := hostservices.New(boot, raw, resolver{err: errNoStorage}, hclog.NewNullLogger())
	if err := plain.Watch(context.Background(), func(host.ClientUpdate) error { return nil }); err == nil {
		t.Error("Watch without a feed succeeded")
	}
}

// TestUnknownEventFeedsDiscovery: dhcp_unknown from boot firmware is
// recorded like a Lookup's sighting (at the next flush); one from an OS's
// client is not.
func TestUnknownEventFeedsDiscovery(t *testing.T) {
	s, st, _ := discoverServices(t, 0)
	ctx := context.Background()
	err := s.Report(ctx, []host.Event{
		{Type: host.EventDHCPUnknown, MAC: "52:54:00:dd:00:01", Address: "10.9.0.1", Time: time.Now(),
			Attrs: map[string]string{host.AttrVendorClass: "PXEClient:Arch:00007", host.AttrArch: "7"}},
		{Type: host.EventDHCPUnknown, MAC: "52:54:00:dd:00:02", Time: time.Now(), Attrs: map[string]string{host.AttrVendorClass: "MSFT 5.0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FlushDiscovered(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := st.ListDiscovered(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].MAC != "52:54:00:dd:00:01" || ms[0].Arch != 7 || ms[0].Address.String() != "10.9.0.1" {
		t.Fatalf("discovered %+v, want the firmware machine only", ms)
	}
}

// TestFeedReadsOnlyWhenAsked: with WithFeedReads the host answers from the
// feed's table, which learns a write that bypassed this host (another host
// on a shared database) at the next Resync; without it (PostgreSQL) the
// host reads the store and sees such a write, a CHAP rotation included, at
// once.
func TestFeedReadsOnlyWhenAsked(t *testing.T) {
	ctx := context.Background()
	raw := bootStore(t)
	feed := clientfeed.New(raw)
	if err := feed.Load(ctx); err != nil {
		t.Fatal(err)
	}
	st := clientfeed.Notify(raw, feed)
	table := hostservices.New(boot, st, resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithFeed(feed), hostservices.WithFeedReads())
	shared := hostservices.New(boot, st, resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithFeed(feed))
	target := boot.IQNPrefix + ":pc-03"
	secret := func(s *hostservices.Services) string {
		t.Helper()
		d, err := s.Lookup(ctx, host.Query{Target: target})
		if err != nil || !d.Known {
			t.Fatalf("lookup %s: %+v %v", target, d, err)
		}
		return d.CHAPSecret
	}
	if a, b := secret(table), secret(shared); a != "pc03-secret-1" || b != a {
		t.Fatalf("secrets %q and %q, want pc03-secret-1", a, b)
	}
	// Another host rotates pc-03's secret in the shared database.
	c, err := raw.GetClient(ctx, "pc-03")
	if err != nil {
		t.Fatal(err)
	}
	c.CHAPSecret = "pc03-secret-2"
	if err := raw.PutClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got := secret(shared); got != "pc03-secret-2" {
		t.Errorf("reading the store: secret %q right after the rotation, want pc03-secret-2", got)
	}
	if got := secret(table); got != "pc03-secret-1" {
		t.Errorf("reading the table: secret %q before the resync, want the old one (the table does not watch the store)", got)
	}
	if err := feed.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := secret(table); got != "pc03-secret-2" {
		t.Errorf("reading the table: secret %q after the resync, want pc03-secret-2", got)
	}
}
