package dhcpd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/host/clienttable"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pushHost is a FakeHost that also pushes a client table: each Watch gets
// the current snapshot, then what push sends, until the test breaks it.
type pushHost struct {
	*plugintest.FakeHost
	mu      sync.Mutex
	version uint64
	policy  string
	table   map[string]host.Decision
	subs    []chan host.ClientUpdate
	watches int
}

func newPushHost(policy string) *pushHost {
	return &pushHost{FakeHost: plugintest.NewFakeHost(), policy: policy, table: map[string]host.Decision{}}
}

// set changes a client (d nil: removes it) in the host's table and pushes
// the change, as the host does after a committed write; Lookup answers
// the same.
func (p *pushHost) set(mac string, d *host.Decision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.version++
	u := host.ClientUpdate{Version: p.version, UnknownClients: p.policy}
	if d == nil {
		delete(p.table, mac)
		p.FakeHost.SetClient(mac, host.Decision{})
		u.Removed = []string{mac}
	} else {
		p.table[mac] = *d
		p.FakeHost.SetClient(mac, *d)
		u.Set = []host.ClientDecision{{MAC: mac, Decision: *d}}
	}
	for _, c := range p.subs {
		c <- u
	}
}

// breakStreams ends every watch, as a broken connection does.
func (p *pushHost) breakStreams() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.subs {
		close(c)
	}
	p.subs = nil
}

func (p *pushHost) Watch(ctx context.Context, fn func(host.ClientUpdate) error) error {
	p.mu.Lock()
	p.watches++
	snap := host.ClientUpdate{Version: p.version, Full: true, UnknownClients: p.policy}
	for m, d := range p.table {
		snap.Set = append(snap.Set, host.ClientDecision{MAC: m, Decision: d})
	}
	ch := make(chan host.ClientUpdate, 64)
	p.subs = append(p.subs, ch)
	p.mu.Unlock()
	if err := fn(snap); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-ch:
			if !ok {
				return errors.New("stream broken")
			}
			if err := fn(u); err != nil {
				return err
			}
		}
	}
}

func decisionOf(name, reserved string) *host.Decision {
	return &host.Decision{Known: true, Client: name, NextServer: "10.0.0.2",
		ScriptURL: "http://10.0.0.1:9180/boot/" + name + ".ipxe", ReservedAddress: reserved}
}

// newPushEnv is newEnv whose host pushes its table, followed until the
// test ends; it returns once the first snapshot is applied.
func newPushEnv(t *testing.T, ph *pushHost) *env {
	t.Helper()
	e := newEnvWith(t, baseConfig(), ph.FakeHost, nil)
	e.srv.clients = ph
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.srv.follow(ctx, ph) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-e.srv.known.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot applied")
	}
	return e
}

func waitVersion(t *testing.T, k *clienttable.Table, v uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _, live := k.State()
		if live && got == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("table at version %d (live %v), want %d", got, live, v)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPushedTableAnswersWithoutLookup: a known client and an unknown one
// are answered from the pushed table, no Lookup; a change pushed by the
// host is what the next DISCOVER sees.
func TestPushedTableAnswersWithoutLookup(t *testing.T) {
	ph := newPushHost("ignore")
	ph.set("52:54:00:00:00:01", decisionOf("pc1", "10.0.0.105"))
	e := newPushEnv(t, ph)
	offer := e.dora("52:54:00:00:00:01", pxe(iana.EFI_X86_64))
	if offer.YourIPAddr.String() != "10.0.0.105" || offer.BootFileName == "" {
		t.Fatalf("known client: %s", offer.Summary())
	}
	e.in(discover("52:54:00:00:00:99", pxe(iana.EFI_X86_64)))
	r, _ := e.reply()
	if r.BootFileName != "" {
		t.Fatalf("unknown firmware got a boot file: %s", r.Summary())
	}
	if n := len(ph.Lookups()); n != 0 {
		t.Fatalf("%d Lookups with a live table, want 0", n)
	}
	shim := decisionOf("pc1", "10.0.0.107")
	shim.Loader = host.LoaderShim
	ph.set("52:54:00:00:00:01", shim)
	waitVersion(t, e.srv.known, 2)
	e.in(discover("52:54:00:00:00:01", pxe(iana.EFI_X86_64)))
	r, _ = e.reply()
	if r.YourIPAddr.String() != "10.0.0.107" || r.BootFileName != host.ShimBootFile {
		t.Fatalf("after the change: %s, want 10.0.0.107 booting %s (its pushed loader)", r.Summary(), host.ShimBootFile)
	}
	ph.set("52:54:00:00:00:01", nil)
	waitVersion(t, e.srv.known, 3)
	e.in(discover("52:54:00:00:00:01", pxe(iana.EFI_X86_64)))
	if r, _ = e.reply(); r.BootFileName != "" {
		t.Fatalf("deleted client still boots: %s", r.Summary())
	}
	if n := len(ph.Lookups()); n != 0 {
		t.Fatalf("%d Lookups with a live table, want 0", n)
	}
}

// TestBrokenStreamFallsBackToLookup: while the stream is down, packets are
// decided by Lookup (never by the table that may have missed a change);
// the plugin watches again and answers from the new snapshot.
func TestBrokenStreamFallsBackToLookup(t *testing.T) {
	ph := newPushHost("ignore")
	ph.set("52:54:00:00:00:01", decisionOf("pc1", "10.0.0.105"))
	e := newPushEnv(t, ph)
	// Break the stream and change the client while it is down: the host
	// answers Lookup with the change.
	ph.breakStreams()
	ph.mu.Lock()
	ph.table["52:54:00:00:00:01"] = *decisionOf("pc1", "10.0.0.106")
	ph.FakeHost.SetClient("52:54:00:00:00:01", *decisionOf("pc1", "10.0.0.106"))
	ph.version += 5
	ph.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, live := e.srv.known.State(); !live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("table still live after its stream broke")
		}
		time.Sleep(time.Millisecond)
	}
	// The plugin watches again clienttable.RetryMin after the break: this
	// packet comes before.
	e.in(discover("52:54:00:00:00:01", pxe(iana.EFI_X86_64)))
	r, _ := e.reply()
	if r.YourIPAddr.String() != "10.0.0.106" || len(ph.Lookups()) != 1 {
		t.Fatalf("stream down: %s after %d lookups, want 10.0.0.106 by one Lookup", r.Summary(), len(ph.Lookups()))
	}
	waitVersion(t, e.srv.known, 6)
	e.in(discover("52:54:00:00:00:01", pxe(iana.EFI_X86_64)))
	if r, _ = e.reply(); r.YourIPAddr.String() != "10.0.0.106" {
		t.Fatalf("after the resync: %s", r.Summary())
	}
}

// TestUnknownPolicies: discover answers nothing to unknown firmware and
// tells the host in an event; register asks the host (Lookup), which
// creates the client; an OS's DHCP client is neither.
func TestUnknownPolicies(t *testing.T) {
	ph := newPushHost("discover")
	e := newPushEnv(t, ph)
	e.in(discover("52:54:00:00:00:77", pxe(iana.EFI_X86_64), relayed("10.0.0.1")))
	r, _ := e.reply() // full mode: an address, nothing to boot
	if r.BootFileName != "" {
		t.Fatalf("discover: unknown firmware got %s", r.Summary())
	}
	ev := ph.WaitEvent(t, host.EventDHCPUnknown, 5*time.Second)
	if ev.MAC != "52:54:00:00:00:77" || ev.Address != "10.0.0.1" || ev.Attrs[host.AttrArch] != "7" {
		t.Fatalf("dhcp_unknown event %+v", ev)
	}
	if n := len(ph.Lookups()); n != 0 {
		t.Fatalf("discover: %d Lookups, want 0", n)
	}

	ph2 := newPushHost("register")
	e2 := newPushEnv(t, ph2)
	e2.in(discover("52:54:00:00:00:88", dhcpv4.WithOption(dhcpv4.OptClassIdentifier("MSFT 5.0"))))
	e2.reply()
	if n := len(ph2.Lookups()); n != 0 {
		t.Fatalf("register: an OS client caused %d Lookups", n)
	}
	ph2.FakeHost.SetClient("52:54:00:00:00:88", *decisionOf("reg-88", ""))
	e2.in(discover("52:54:00:00:00:88", pxe(iana.EFI_X86_64)))
	r, _ = e2.reply()
	if r.BootFileName == "" || len(ph2.Lookups()) != 1 {
		t.Fatalf("register: %s after %d Lookups, want a boot file after 1", r.Summary(), len(ph2.Lookups()))
	}
}

// TestHostWithoutWatchSettlesAtOnce: against a host that cannot push,
// Start does not wait and every packet is decided by Lookup.
func TestHostWithoutWatchSettlesAtOnce(t *testing.T) {
	e := newEnv(t, nil)
	w := unimplementedWatcher{}
	start := time.Now()
	e.srv.follow(context.Background(), w) // returns: nothing to follow
	select {
	case <-e.srv.known.Ready():
	default:
		t.Fatal("not settled")
	}
	if time.Since(start) > time.Second {
		t.Fatalf("follow took %v", time.Since(start))
	}
	if _, _, live := e.srv.known.State(); live {
		t.Fatal("live without a table")
	}
}

type unimplementedWatcher struct{}

func (unimplementedWatcher) Watch(context.Context, func(host.ClientUpdate) error) error {
	return fmt.Errorf("host clients watch: %w", status.Error(codes.Unimplemented, "no"))
}
