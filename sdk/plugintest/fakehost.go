package plugintest

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/volume"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FakeHost is an in-memory DLS host for plugin tests. It implements every
// host service (host.Clients, host.Events, host.Volumes, host.Leases); the
// test fills it with SetClient, SetScript, SetAttach and PutLease, and looks at what the
// plugin did with Events, WaitEvent, Lookups, Attached and Leases. All
// methods are safe for concurrent use.
//
// Like the real host, it refuses event batches with unknown event types and
// answers lease commits with the one-MAC-per-address rule.
type FakeHost struct {
	mu       sync.Mutex
	clients  map[string]host.Decision // by canonical MAC
	scripts  map[string]fakeScript    // by canonical MAC
	lookups  []host.Query
	scriptQs []host.ScriptQuery
	events   []host.Event
	newEvent chan struct{} // closed and replaced on every Report
	attach   func(ctx context.Context, client string) (volume.Descriptor, error)
	attached map[string]int
	attaches map[string]int
	leases   map[leaseKey]host.Lease
	now      func() time.Time
}

type leaseKey struct{ pool, address string }

// fakeScript is a script set with SetScript and the peers it is bound to.
type fakeScript struct {
	client, body string
	peers        []string
}

var (
	_ host.Clients = (*FakeHost)(nil)
	_ host.Events  = (*FakeHost)(nil)
	_ host.Volumes = (*FakeHost)(nil)
	_ host.Leases  = (*FakeHost)(nil)
)

// NewFakeHost returns an empty fake host: no known clients, no events, no
// leases, and an attach that fails until SetAttach.
func NewFakeHost() *FakeHost {
	return &FakeHost{
		clients:  map[string]host.Decision{},
		scripts:  map[string]fakeScript{},
		newEvent: make(chan struct{}),
		attached: map[string]int{}, attaches: map[string]int{},
		leases: map[leaseKey]host.Lease{},
		now:    time.Now,
	}
}

// Services returns the fake as the host services given to a plugin.
func (h *FakeHost) Services() host.Services {
	return host.Services{Clients: h, Events: h, Volumes: h, Leases: h}
}

// SetClient makes Lookup answer d for the machine with this MAC (any
// notation net.ParseMAC reads), and for iSCSI queries whose target is
// d.TargetIQN and whose initiator is d.InitiatorIQN or one of d.Initiators.
// d.Known is set to true.
func (h *FakeHost) SetClient(mac string, d host.Decision) {
	d.Known = true
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients[canonicalMAC(mac)] = d
}

// Lookup implements host.Clients. A machine not set with SetClient is
// unknown (Decision.Known false), which is not an error.
func (h *FakeHost) Lookup(_ context.Context, q host.Query) (host.Decision, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lookups = append(h.lookups, q)
	if q.MAC != "" {
		return h.clients[canonicalMAC(q.MAC)], nil
	}
	for _, d := range h.clients {
		if q.Target != "" && q.Target != d.TargetIQN {
			continue
		}
		if q.Initiator != "" && q.Initiator != d.InitiatorIQN && !slices.Contains(d.Initiators, q.Initiator) {
			continue
		}
		if q.Target != "" || q.Initiator != "" {
			return d, nil
		}
	}
	return host.Decision{}, nil
}

// SetScript makes Script answer body, as the script of client, for the
// machine with this MAC when the requester is one of peers (any requester
// when peers is empty), the way the host answers only the address bound to
// a machine's boot.
func (h *FakeHost) SetScript(mac, client, body string, peers ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scripts[canonicalMAC(mac)] = fakeScript{client: client, body: body, peers: peers}
}

// Script implements host.Clients: Found for a MAC set with SetScript and a
// requester it allows, otherwise Found false (not an error).
func (h *FakeHost) Script(_ context.Context, q host.ScriptQuery) (host.Script, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.scriptQs = append(h.scriptQs, q)
	sc, ok := h.scripts[canonicalMAC(q.MAC)]
	if !ok || (len(sc.peers) > 0 && !slices.Contains(sc.peers, q.Peer)) {
		return host.Script{}, nil
	}
	return host.Script{Found: true, Client: sc.client, Body: sc.body}, nil
}

// ScriptQueries returns the queries Script received, oldest first.
func (h *FakeHost) ScriptQueries() []host.ScriptQuery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.scriptQs)
}

// Lookups returns the queries Lookup received, oldest first.
func (h *FakeHost) Lookups() []host.Query {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.lookups)
}

// Report implements host.Events. It records the events, or refuses the
// whole batch (as the host does) if one has a type that is not in
// host.EventTypes.
func (h *FakeHost) Report(_ context.Context, events []host.Event) error {
	for _, e := range events {
		if !slices.Contains(host.EventTypes, e.Type) {
			return status.Errorf(codes.InvalidArgument, "unknown event type %q (see host.EventTypes)", e.Type)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, events...)
	close(h.newEvent)
	h.newEvent = make(chan struct{})
	return nil
}

// Events returns the events reported so far, oldest first.
func (h *FakeHost) Events() []host.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}

// WaitEvent returns the first event of type typ reported, waiting up to
// timeout for one to arrive; it fails t if none does. Events travel in
// batches (see host.Batcher), so allow for the batcher's interval.
func (h *FakeHost) WaitEvent(t testing.TB, typ string, timeout time.Duration) host.Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		i := slices.IndexFunc(h.events, func(e host.Event) bool { return e.Type == typ })
		if i >= 0 {
			e := h.events[i]
			h.mu.Unlock()
			return e
		}
		wake := h.newEvent
		h.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("plugintest: no %q event within %s; events: %s", typ, timeout, eventTypes(h.Events()))
			return host.Event{}
		}
	}
}

func eventTypes(events []host.Event) string {
	if len(events) == 0 {
		return "none"
	}
	types := make([]string, len(events))
	for i, e := range events {
		types[i] = e.Type
	}
	return strings.Join(types, ", ")
}

// SetAttach sets the function that answers Attach: typically it attaches a
// volume of a storage plugin under test, or returns a descriptor of a file
// the test made.
func (h *FakeHost) SetAttach(fn func(ctx context.Context, client string) (volume.Descriptor, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attach = fn
}

// Attach implements host.Volumes with the function given to SetAttach,
// counting the client as attached when it succeeds.
func (h *FakeHost) Attach(ctx context.Context, client string) (volume.Descriptor, error) {
	h.mu.Lock()
	fn := h.attach
	h.mu.Unlock()
	if fn == nil {
		return volume.Descriptor{}, status.Errorf(codes.Unimplemented, "plugintest: attach volume of client %s: no attach function (FakeHost.SetAttach)", client)
	}
	d, err := fn(ctx, client)
	if err != nil {
		return volume.Descriptor{}, err
	}
	h.mu.Lock()
	h.attached[client]++
	h.attaches[client]++
	h.mu.Unlock()
	return d, nil
}

// Detach implements host.Volumes. Detaching a client that is not attached
// is an error, so that tests catch unbalanced calls.
func (h *FakeHost) Detach(_ context.Context, client string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.attached[client] == 0 {
		return status.Errorf(codes.FailedPrecondition, "plugintest: detach volume of client %s: not attached", client)
	}
	h.attached[client]--
	if h.attached[client] == 0 {
		delete(h.attached, client)
	}
	return nil
}

// Attached returns the clients attached and not yet detached, sorted, each
// once however often it was attached.
func (h *FakeHost) Attached() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.attached))
	for c := range h.attached {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

// AttachCount returns how often the client's volume was attached
// successfully, detaches notwithstanding.
func (h *FakeHost) AttachCount(client string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.attaches[client]
}

// PutLease stores l as it is, without the conflict check: the state a
// plugin finds when it loads its pool.
func (h *FakeHost) PutLease(l host.Lease) {
	l.MAC = canonicalMAC(l.MAC)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.leases[leaseKey{l.Pool, l.Address}] = l
}

// Leases returns every stored lease, sorted by pool and address.
func (h *FakeHost) Leases() []host.Lease {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sortedLeases("")
}

// Load implements host.Leases: the leases of pool, or all for "", sorted
// by pool and address.
func (h *FakeHost) Load(_ context.Context, pool string) ([]host.Lease, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sortedLeases(pool), nil
}

func (h *FakeHost) sortedLeases(pool string) []host.Lease {
	out := make([]host.Lease, 0, len(h.leases))
	for k, l := range h.leases {
		if pool == "" || k.pool == pool {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b host.Lease) int {
		return cmp.Or(cmp.Compare(a.Pool, b.Pool), cmp.Compare(a.Address, b.Address))
	})
	return out
}

// Commit implements host.Leases. The batch is applied in order, as one
// transaction: a lease is refused (OK false, Holder the other MAC) when its
// address in its pool is held by another MAC, that is, by a lease that is
// not released and has not expired; otherwise it replaces what was stored
// for the address. Leases earlier in the batch count for later ones.
func (h *FakeHost) Commit(_ context.Context, leases []host.Lease) ([]host.CommitResult, error) {
	for i, l := range leases {
		if l.Address == "" || l.MAC == "" {
			return nil, status.Errorf(codes.InvalidArgument, "lease %d of the batch: address and MAC are required", i)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	out := make([]host.CommitResult, len(leases))
	for i, l := range leases {
		l.MAC = canonicalMAC(l.MAC)
		k := leaseKey{l.Pool, l.Address}
		if cur, ok := h.leases[k]; ok && cur.MAC != l.MAC && cur.State != host.LeaseReleased && cur.Expires.After(now) {
			out[i] = host.CommitResult{Holder: cur.MAC}
			continue
		}
		h.leases[k] = l
		out[i] = host.CommitResult{OK: true}
	}
	return out, nil
}

// canonicalMAC returns a MAC lower-case and colon separated, as plugins send
// it, or the input lower-cased when it is not a MAC.
func canonicalMAC(s string) string {
	if hw, err := net.ParseMAC(s); err == nil {
		return hw.String()
	}
	return strings.ToLower(s)
}

// String describes the fake's contents, for test failure messages.
func (h *FakeHost) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("FakeHost{%d clients, %d events, %d attached, %d leases}",
		len(h.clients), len(h.events), len(h.attached), len(h.leases))
}
