package hostservices_test

import (
	"context"
	"testing"
	"time"

	"github.com/dls-project/dls/core/clientfeed"
	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
)

// TestShimLoaderDecisions: a client whose image boots through shim gets
// Loader "shim" from Lookup (and shimx64.efi as the boot file of EFI x64
// only) and from the pushed table; when the image's loader changes, its
// clients are pushed again with the new loader though their rows did not
// change.
func TestShimLoaderDecisions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw := bootStore(t)
	feed := clientfeed.New(raw)
	st := clientfeed.Notify(raw, feed)
	signed := store.Image{Name: "signed", Storage: "tank", Boot: &store.BootProfile{Kernel: "signed/vmlinuz", Confirm: true, Loader: store.LoaderShim}}
	if err := st.PutImage(ctx, signed); err != nil {
		t.Fatal(err)
	}
	if err := st.PutClient(ctx, store.Client{Name: "sb-01", MAC: "52:54:00:5b:00:01", Image: "signed", Persistent: true}); err != nil {
		t.Fatal(err)
	}
	s := hostservices.New(boot, st, resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithFeed(feed))

	for _, tc := range []struct {
		mac      string
		arch     uint16
		loader   string
		bootFile string
		whatFor  string
	}{
		{"52:54:00:5b:00:01", 7, host.LoaderShim, host.ShimBootFile, "shim client, EFI x64"},
		{"52:54:00:5b:00:01", 16, host.LoaderShim, host.ShimBootFile, "shim client, EFI x64 HTTP boot"},
		{"52:54:00:5b:00:01", 0, host.LoaderShim, "undionly.kpxe", "shim client, BIOS: iPXE"},
		{"52:54:00:5b:00:01", 11, host.LoaderShim, "snp.efi", "shim client, ARM64: iPXE"},
		{"52:54:00:aa:00:02", 7, "", "ipxe.efi", "kernel image without loader"},
		{"52:54:00:aa:00:01", 7, "", "ipxe.efi", "sanboot image"},
	} {
		d, err := s.Lookup(ctx, host.Query{MAC: tc.mac, Arch: tc.arch, VendorClass: "PXEClient"})
		if err != nil {
			t.Fatal(err)
		}
		if d.Loader != tc.loader || d.BootFile != tc.bootFile {
			t.Errorf("%s: loader %q, boot file %q; want %q, %q", tc.whatFor, d.Loader, d.BootFile, tc.loader, tc.bootFile)
		}
	}
	// An iSCSI query carries no loader: it is about DHCP.
	if d, err := s.Lookup(ctx, host.Query{Target: prefix + ":sb-01"}); err != nil || d.Loader != "" {
		t.Errorf("iSCSI lookup: loader %q, %v; want none", d.Loader, err)
	}

	updates := make(chan host.ClientUpdate, 16)
	go func() { _ = s.Watch(ctx, func(u host.ClientUpdate) error { updates <- u; return nil }) }()
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
	loaders := func(u host.ClientUpdate) map[string]string {
		m := map[string]string{}
		for _, e := range u.Set {
			m[e.Decision.Client] = e.Decision.Loader
		}
		return m
	}
	snap := next()
	if got := loaders(snap); got["sb-01"] != host.LoaderShim || got["pc-02"] != "" || got["pc-01"] != "" {
		t.Errorf("snapshot loaders %v, want sb-01 shim, the others none", got)
	}
	// The image goes back to iPXE: its client is pushed again.
	signed.Boot.Loader = store.LoaderIPXE
	if err := st.PutImage(ctx, signed); err != nil {
		t.Fatal(err)
	}
	u := next()
	if u.Version != snap.Version+1 || len(u.Set) != 1 || u.Set[0].Decision.Client != "sb-01" || u.Set[0].Decision.Loader != "" {
		t.Fatalf("after the image change: %+v, want sb-01 pushed with no loader", u)
	}
	// An image nobody boots pushes nothing (no empty version).
	if err := st.PutImage(ctx, store.Image{Name: "unused", Storage: "tank", Boot: &store.BootProfile{Kernel: "k", Loader: store.LoaderShim}}); err != nil {
		t.Fatal(err)
	}
	signed.Boot.Loader = store.LoaderShim
	if err := st.PutImage(ctx, signed); err != nil {
		t.Fatal(err)
	}
	if u := next(); u.Version != snap.Version+2 || len(u.Set) != 1 || u.Set[0].Decision.Loader != host.LoaderShim {
		t.Fatalf("after the image change back: %+v, want version %d with sb-01 on shim", u, snap.Version+2)
	}
}

// TestLoaderEventsNamedByBinding: a boot loader's file_served names only
// the requester's address; the host names the machine whose boot that
// address is bound to before the session tracker sees it. An unbound
// address, and other events, pass unchanged.
func TestLoaderEventsNamedByBinding(t *testing.T) {
	fs := &fakeSessions{}
	s := hostservices.New(boot, bootStore(t), resolver{err: errNoStorage}, hclog.NewNullLogger(), hostservices.WithSessions(fs))
	addr := leaseOf(t, s, "52:54:00:aa:00:02")
	at := time.Now()
	shim := func(from string) host.Event {
		return host.Event{Type: host.EventFileServed, Address: from, Time: at, Attrs: map[string]string{host.AttrLoader: "shim", host.AttrFile: "shimx64.efi"}}
	}
	plain := host.Event{Type: host.EventFileServed, Address: addr, Time: at, Attrs: map[string]string{host.AttrFile: "undionly.kpxe"}}
	if err := s.Report(context.Background(), []host.Event{shim(addr), shim("10.9.9.9"), plain}); err != nil {
		t.Fatal(err)
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.events) != 3 {
		t.Fatalf("sessions got %d events, want 3", len(fs.events))
	}
	if got := fs.events[0].MAC; got != "52:54:00:aa:00:02" {
		t.Errorf("shim from the bound address: MAC %q, want 52:54:00:aa:00:02", got)
	}
	if fs.events[1].MAC != "" || fs.events[2].MAC != "" {
		t.Errorf("unbound address or no loader: MACs %q %q, want none", fs.events[1].MAC, fs.events[2].MAC)
	}
}
