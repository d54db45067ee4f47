package hostrpc

import (
	"context"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/volume"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// fakeServices records what the server side of each service received and
// answers what the test set.
type fakeServices struct {
	mu sync.Mutex

	query    host.Query
	decision host.Decision

	scriptQ host.ScriptQuery
	script  host.Script

	events   [][]host.Event
	eventErr error

	attached, detached []string
	descriptor         volume.Descriptor
	attachErr          error

	pool      string
	loaded    []host.Lease
	committed []host.Lease
	results   []host.CommitResult
}

func (f *fakeServices) Lookup(_ context.Context, q host.Query) (host.Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.query = q
	return f.decision, nil
}

func (f *fakeServices) Script(_ context.Context, q host.ScriptQuery) (host.Script, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scriptQ = q
	return f.script, nil
}

func (f *fakeServices) Report(_ context.Context, events []host.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, events)
	return f.eventErr
}

func (f *fakeServices) Attach(_ context.Context, client string) (volume.Descriptor, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = append(f.attached, client)
	return f.descriptor, f.attachErr
}

func (f *fakeServices) Detach(_ context.Context, client string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = append(f.detached, client)
	return nil
}

func (f *fakeServices) Load(_ context.Context, pool string) ([]host.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pool = pool
	return f.loaded, nil
}

func (f *fakeServices) Commit(_ context.Context, leases []host.Lease) ([]host.CommitResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.committed = leases
	return f.results, nil
}

// serve serves svc over an in-process connection and returns the plugin's
// view of it (NewClient) and the raw connection.
func serve(t *testing.T, svc host.Services) (host.Services, *grpc.ClientConn) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	RegisterServer(s, svc)
	go func() { _ = s.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		s.Stop()
	})
	return NewClient(conn), conn
}

func all(f *fakeServices) host.Services {
	return host.Services{Clients: f, Events: f, Volumes: f, Leases: f}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestScriptRoundTrip: the requester's address reaches the host, and the
// host's answer (found or not) reaches the plugin unchanged.
func TestScriptRoundTrip(t *testing.T) {
	f := &fakeServices{script: host.Script{Found: true, Client: "pc-01", Body: "#!ipxe\nboot\n"}}
	c, _ := serve(t, all(f))
	q := host.ScriptQuery{MAC: "52-54-00-00-00-01", Peer: "10.0.0.51", Platform: "efi"}
	sc, err := c.Clients.Script(ctxT(t), q)
	if err != nil || sc != f.script {
		t.Errorf("host.Script = %+v, %v; host sent %+v", sc, err, f.script)
	}
	f.mu.Lock()
	got := f.scriptQ
	f.script = host.Script{}
	f.mu.Unlock()
	if got != q {
		t.Errorf("host got %+v, plugin sent %+v", got, q)
	}
	if sc, err := c.Clients.Script(ctxT(t), q); err != nil || sc.Found || sc.Body != "" {
		t.Errorf("refused host.Script = %+v, %v", sc, err)
	}
}

func TestLookupRoundTrip(t *testing.T) {
	f := &fakeServices{decision: host.Decision{
		Known: true, Client: "pc-01", BootFile: "ipxe.efi", NextServer: "10.0.0.1",
		ScriptURL: "http://10.0.0.1/boot/52-54-00-00-00-01.ipxe",
		TargetIQN: "iqn.2026-01.io.dls:pc-01", InitiatorIQN: "iqn.2026-01.io.dls:initiator:pc-01",
		Initiators: []string{"iqn.2026-01.io.dls:initiator:pc-01", "iqn.1991-05.com.microsoft:pc-01"},
		CHAPUser:   "user", CHAPSecret: "secret", CHAPMutualSecret: "mutual", ReservedAddress: "10.0.0.51",
		AllowedAddresses: []string{"10.0.0.51", "10.0.0.9"}, Loader: host.LoaderShim,
	}}
	c, _ := serve(t, all(f))
	q := host.Query{
		MAC: "52:54:00:00:00:01", Initiator: "iqn.x:init", Target: "iqn.x:target", Arch: 0xffff,
		UserClass: "iPXE", VendorClass: "PXEClient:Arch:00007", Peer: "10.0.0.51",
	}
	d, err := c.Clients.Lookup(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, f.decision) {
		t.Errorf("plugin got decision\n%+v\nhost sent\n%+v", d, f.decision)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.query != q {
		t.Errorf("host got query %+v, plugin sent %+v", f.query, q)
	}
}

func TestLookupRefusesArchOutOfRange(t *testing.T) {
	f := &fakeServices{}
	_, conn := serve(t, all(f))
	_, err := dlsv1.NewClientsClient(conn).Lookup(ctxT(t), &dlsv1.ClientQuery{Mac: "52:54:00:00:00:01", Arch: 0x10000})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("Lookup with arch 0x10000: %v, want InvalidArgument", err)
	}
}

func TestReportRoundTrip(t *testing.T) {
	f := &fakeServices{}
	c, _ := serve(t, all(f))
	at := time.Date(2026, 3, 4, 5, 6, 7, 891011, time.UTC)
	sent := []host.Event{
		{Type: host.EventDHCPAck, MAC: "52:54:00:00:00:01", Client: "pc-01", Address: "10.0.0.51", Time: at,
			Attrs: map[string]string{"arch": "7", "hostname": "pc-01"}},
		{Type: host.EventISCSILogin, Client: "pc-02", Time: at.Add(time.Nanosecond)},
	}
	if err := c.Events.Report(ctxT(t), sent); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) != 1 || len(f.events[0]) != len(sent) {
		t.Fatalf("host got %v, plugin sent one batch of %d", f.events, len(sent))
	}
	for i, got := range f.events[0] {
		want := sent[i]
		if !got.Time.Equal(want.Time) {
			t.Errorf("event %d: Time %v, sent %v", i, got.Time, want.Time)
		}
		got.Time, want.Time = time.Time{}, time.Time{}
		if len(want.Attrs) == 0 && len(got.Attrs) == 0 {
			got.Attrs, want.Attrs = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("event %d: host got %+v, plugin sent %+v", i, got, want)
		}
	}
}

func TestReportRefusesBatchOverLimit(t *testing.T) {
	f := &fakeServices{}
	c, _ := serve(t, all(f))
	batch := make([]host.Event, host.MaxEventBatch)
	for i := range batch {
		batch[i] = host.Event{Type: host.EventDHCPDiscover, MAC: "52:54:00:00:00:01", Time: time.Unix(1, 0)}
	}
	if err := c.Events.Report(ctxT(t), batch); err != nil {
		t.Fatalf("a batch of exactly %d: %v", host.MaxEventBatch, err)
	}
	err := c.Events.Report(ctxT(t), append(batch, batch[0]))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a batch of %d: %v, want InvalidArgument", host.MaxEventBatch+1, err)
	}
	if !strings.Contains(err.Error(), "host events report") {
		t.Errorf("error %q does not say what failed", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.events) != 1 {
		t.Errorf("host implementation saw %d batches, want only the one within the limit", len(f.events))
	}
}

func TestReportPassesHostError(t *testing.T) {
	f := &fakeServices{eventErr: status.Error(codes.InvalidArgument, `unknown event type "x"`)}
	c, _ := serve(t, all(f))
	err := c.Events.Report(ctxT(t), []host.Event{{Type: "x", Time: time.Unix(1, 0)}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `unknown event type "x"`) {
		t.Errorf("Report: %v, want the host's InvalidArgument", err)
	}
}

func TestVolumesRoundTrip(t *testing.T) {
	f := &fakeServices{descriptor: volume.Descriptor{
		Format: volume.FormatRaw, Paths: []string{"/tank/dls/pc-01/disk.raw"}, Size: 1 << 30,
		BlockSize: 4096, ReadOnly: true, Options: map[string]string{"k": "v"},
	}}
	c, _ := serve(t, all(f))
	d, err := c.Volumes.Attach(ctxT(t), "pc-01")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, f.descriptor) {
		t.Errorf("plugin got %+v, host sent %+v", d, f.descriptor)
	}
	if err := c.Volumes.Detach(ctxT(t), "pc-02"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	if !reflect.DeepEqual(f.attached, []string{"pc-01"}) || !reflect.DeepEqual(f.detached, []string{"pc-02"}) {
		t.Errorf("host saw attach %v, detach %v", f.attached, f.detached)
	}
	f.attachErr = status.Error(codes.NotFound, "no image lab")
	f.mu.Unlock()

	_, err = c.Volumes.Attach(ctxT(t), "pc-03")
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "client pc-03") {
		t.Errorf("Attach error: %v, want NotFound naming client pc-03", err)
	}
}

func TestLeasesRoundTrip(t *testing.T) {
	exp := time.Unix(1_800_000_000, 0)
	f := &fakeServices{
		loaded: []host.Lease{
			{Pool: "lan", Address: "10.0.0.50", MAC: "52:54:00:00:00:01", Expires: exp, State: host.LeaseBound, Hostname: "pc-01"},
			{Pool: "lan", Address: "10.0.0.51", MAC: "52:54:00:00:00:02", Expires: exp.Add(time.Hour), State: host.LeaseReleased},
		},
		results: []host.CommitResult{{OK: true}, {OK: false, Holder: "52:54:00:00:00:09"}},
	}
	c, _ := serve(t, all(f))
	got, err := c.Leases.Load(ctxT(t), "lan")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, f.loaded) {
		t.Errorf("Load: plugin got %+v, host sent %+v", got, f.loaded)
	}

	batch := []host.Lease{
		{Pool: "lan", Address: "10.0.0.52", MAC: "52:54:00:00:00:03", Expires: exp, State: host.LeaseDeclined, Hostname: "h"},
		{Pool: "lan", Address: "10.0.0.53", MAC: "52:54:00:00:00:04", Expires: exp, State: host.LeaseBound},
	}
	rs, err := c.Leases.Commit(ctxT(t), batch)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rs, f.results) {
		t.Errorf("Commit: plugin got %+v, host answered %+v", rs, f.results)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pool != "lan" {
		t.Errorf("host got pool %q", f.pool)
	}
	if !reflect.DeepEqual(f.committed, batch) {
		t.Errorf("host got leases %+v, plugin sent %+v", f.committed, batch)
	}
}

func TestCommitRefusesWrongNumberOfAnswers(t *testing.T) {
	f := &fakeServices{results: []host.CommitResult{{OK: true}}}
	c, _ := serve(t, all(f))
	_, err := c.Leases.Commit(ctxT(t), []host.Lease{{Address: "10.0.0.1"}, {Address: "10.0.0.2"}})
	if err == nil || !strings.Contains(err.Error(), "1 answers") {
		t.Errorf("Commit of 2 answered with 1: %v, want an error", err)
	}
}

func TestUnsetServicesAreUnimplemented(t *testing.T) {
	f := &fakeServices{}
	c, _ := serve(t, host.Services{Clients: f})
	if _, err := c.Clients.Lookup(ctxT(t), host.Query{MAC: "52:54:00:00:00:01"}); err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	err := c.Events.Report(ctxT(t), []host.Event{{Type: host.EventDHCPAck, Time: time.Unix(1, 0)}})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Report on a host without Events: %v, want Unimplemented", err)
	}
	_, err = c.Leases.Load(ctxT(t), "")
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Load on a host without Leases: %v, want Unimplemented", err)
	}
}

// Event.Time is optional for a plugin that calls Report itself (only the
// Batcher fills it in): a zero Time must not arrive as a date in 1754
// (time.Time{}.UnixNano() is out of int64 range).
func TestReportZeroTime(t *testing.T) {
	f := &fakeServices{}
	c, _ := serve(t, all(f))
	if err := c.Events.Report(ctxT(t), []host.Event{{Type: host.EventOSBooted, Client: "pc-01"}}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.events[0][0].Time; !got.IsZero() && got.Year() < 2000 {
		t.Errorf("an event sent without a time arrived with Time %v, want zero (or the time of arrival)", got)
	}
}
