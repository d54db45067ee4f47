package grants

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/pluginrpc/hostrpc"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// open answers everything, with CHAP secrets in every decision.
type open struct{}

func (open) Lookup(context.Context, host.Query) (host.Decision, error) {
	return host.Decision{Known: true, Client: "pc-01", CHAPUser: "iqn.x:initiator:pc-01", CHAPSecret: "s3cretS3cret", CHAPMutualSecret: "mutualMutual"}, nil
}
func (open) Script(context.Context, host.ScriptQuery) (host.Script, error) {
	return host.Script{Found: true, Client: "pc-01", Body: "#!ipxe"}, nil
}
func (open) Report(context.Context, []host.Event) error { return nil }
func (open) Attach(context.Context, string) (volume.Descriptor, error) {
	return volume.Descriptor{Format: volume.FormatRaw, Paths: []string{"/x"}, Size: 512, BlockSize: 512}, nil
}
func (open) Detach(context.Context, string) error                              { return nil }
func (open) Load(context.Context, string) ([]host.Lease, error)                { return nil, nil }
func (open) Commit(context.Context, []host.Lease) ([]host.CommitResult, error) { return nil, nil }

// serve serves the guarded services over an in-process gRPC connection,
// as the host serves them on a plugin's broker connection.
func serve(t *testing.T, svc host.Services) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	hostrpc.RegisterServer(s, svc)
	go func() { _ = s.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); s.Stop() })
	return conn
}

// call makes every host service call through the raw stubs and returns
// each method's error.
func call(t *testing.T, conn *grpc.ClientConn) map[string]error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]error{}
	_, out[MethodLookup] = dlsv1.NewClientsClient(conn).Lookup(ctx, &dlsv1.ClientQuery{Mac: "52:54:00:00:00:01"})
	_, out[MethodScript] = dlsv1.NewClientsClient(conn).Script(ctx, &dlsv1.ScriptQuery{Mac: "52:54:00:00:00:01", Peer: "10.0.0.5"})
	_, out[MethodReport] = dlsv1.NewEventsClient(conn).Report(ctx, &dlsv1.EventBatch{})
	_, out[MethodAttach] = dlsv1.NewVolumesClient(conn).Attach(ctx, &dlsv1.AttachRequest{Client: "pc-01"})
	_, out[MethodDetach] = dlsv1.NewVolumesClient(conn).Detach(ctx, &dlsv1.AttachRequest{Client: "pc-01"})
	_, out[MethodLoad] = dlsv1.NewLeasesClient(conn).Load(ctx, &dlsv1.LoadLeasesRequest{})
	_, out[MethodCommit] = dlsv1.NewLeasesClient(conn).Commit(ctx, &dlsv1.LeaseBatch{})
	return out
}

// needs maps each method to the grant it needs.
var needs = map[string]string{
	MethodLookup: Lookup, MethodScript: Scripts, MethodReport: Events,
	MethodAttach: Volumes, MethodDetach: Volumes, MethodLoad: Leases, MethodCommit: Leases,
}

func TestGuardPerKind(t *testing.T) {
	all := host.Services{Clients: open{}, Events: open{}, Volumes: open{}, Leases: open{}}
	for _, tc := range []struct{ kind, typ string }{
		{"protocol", "dhcp"}, {"protocol", "tftp"}, {"protocol", "iscsi"}, {"protocol", "vendor"},
		{"storage", "zfs"}, {"auth", "local"},
	} {
		t.Run(tc.kind+"-"+tc.typ, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			g := Default(tc.kind, tc.typ)
			conn := serve(t, Guard(all, Plugin{Name: "inst-" + tc.typ, Kind: tc.kind, Type: tc.typ}, g, m))
			denied := 0
			for method, err := range call(t, conn) {
				if g.Has(needs[method]) {
					if err != nil {
						t.Errorf("%s granted %s: %v", method, g, err)
					}
					continue
				}
				denied++
				if status.Code(err) != codes.PermissionDenied {
					t.Errorf("%s with grant %s: %v, want PermissionDenied", method, g, err)
					continue
				}
				if msg := status.Convert(err).Message(); !strings.Contains(msg, "inst-"+tc.typ) || !strings.Contains(msg, method) {
					t.Errorf("refusal %q does not name the instance and %s", msg, method)
				}
				if v := testutil.ToFloat64(m.denied.WithLabelValues("inst-"+tc.typ, method)); v != 1 {
					t.Errorf("dls_host_service_denied_total{method=%q} = %v, want 1", method, v)
				}
			}
			if tc.kind != "protocol" && denied != len(needs) {
				t.Errorf("%s plugin: %d of %d methods refused, want all", tc.kind, denied, len(needs))
			}
		})
	}
}

func TestLookupSecretsOnlyWithGrant(t *testing.T) {
	all := host.Services{Clients: open{}}
	ctx := context.Background()
	for _, tc := range []struct {
		names   []string
		secrets bool
	}{{[]string{Lookup}, false}, {[]string{Lookup, Secrets}, true}} {
		g, err := Parse(tc.names)
		if err != nil {
			t.Fatal(err)
		}
		conn := serve(t, Guard(all, Plugin{Name: "p", Kind: "protocol", Type: "x"}, g, nil))
		d, err := dlsv1.NewClientsClient(conn).Lookup(ctx, &dlsv1.ClientQuery{Mac: "52:54:00:00:00:01"})
		if err != nil {
			t.Fatal(err)
		}
		has := d.GetChapSecret() != "" || d.GetChapMutualSecret() != "" || d.GetChapUser() != ""
		if has != tc.secrets || d.GetClient() != "pc-01" {
			t.Errorf("grant %v: decision %v, want secrets %v", tc.names, d, tc.secrets)
		}
	}
}

// TestGuardMissingService: a granted service the host does not offer is
// refused too, not a nil dereference.
func TestGuardMissingService(t *testing.T) {
	g, _ := Parse([]string{Events})
	conn := serve(t, Guard(host.Services{}, Plugin{Name: "p"}, g, nil))
	if err := call(t, conn)[MethodReport]; status.Code(err) != codes.PermissionDenied {
		t.Errorf("Report without an Events service: %v", err)
	}
}

func TestParse(t *testing.T) {
	if _, err := Parse([]string{"secrets"}); err == nil || !strings.Contains(err.Error(), `grant "lookup" too`) {
		t.Errorf("secrets alone: %v", err)
	}
	if _, err := Parse([]string{"lookup", "volume"}); err == nil || !strings.Contains(err.Error(), `"volume" is not a host service`) {
		t.Errorf("unknown name: %v", err)
	}
	g, err := Parse([]string{"events", "lookup", "secrets", "events"})
	if err != nil || g.String() != `["lookup", "secrets", "events"]` {
		t.Errorf("Parse = %s, %v", g, err)
	}
	if g := Default("protocol", "dhcp"); g.Has(Secrets) || !g.Has(Lookup) || !g.Has(Leases) {
		t.Errorf("dhcp default %s", g)
	}
	if g := Default("protocol", "dhcp6"); g.Has(Secrets) || !g.Has(Lookup) || !g.Has(Leases) || !g.Has(Events) {
		t.Errorf("dhcp6 default %s", g)
	}
	if g := Default("storage", "dir"); len(g.Names()) != 0 {
		t.Errorf("storage default %s", g)
	}
}

// watching is open with a pushed table: a snapshot of n clients with
// secrets, then one change.
type watching struct {
	open
	n int
}

func (w watching) Watch(ctx context.Context, fn func(host.ClientUpdate) error) error {
	d, _ := open{}.Lookup(ctx, host.Query{})
	snap := host.ClientUpdate{Version: 7, Full: true, UnknownClients: "discover"}
	for i := range w.n {
		snap.Set = append(snap.Set, host.ClientDecision{MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff), Decision: d})
	}
	if err := fn(snap); err != nil {
		return err
	}
	if err := fn(host.ClientUpdate{Version: 8, Removed: []string{"52:54:00:00:00:00"}, UnknownClients: "discover"}); err != nil {
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestWatchUnderLookupGrant: Clients.Watch is granted with "lookup",
// strips CHAP secrets like Lookup unless "secrets" is granted, is refused
// (and counted) without "lookup", and arrives whole however many chunks
// a snapshot takes on the wire.
func TestWatchUnderLookupGrant(t *testing.T) {
	const n = 2500 // three chunks
	for _, tc := range []struct {
		names   []string
		secrets bool
		denied  bool
	}{{[]string{Lookup}, false, false}, {[]string{Lookup, Secrets}, true, false}, {[]string{Events}, false, true}} {
		g, err := Parse(tc.names)
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		m, _ := NewMetrics(reg)
		conn := serve(t, Guard(host.Services{Clients: watching{n: n}}, Plugin{Name: "p", Kind: "protocol", Type: "dhcp"}, g, m))
		w := hostrpc.NewClient(conn).Clients.(host.ClientWatcher)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var got []host.ClientUpdate
		err = w.Watch(ctx, func(u host.ClientUpdate) error {
			got = append(got, u)
			if len(got) == 2 {
				cancel()
			}
			return nil
		})
		cancel()
		if tc.denied {
			if status.Code(err) != codes.PermissionDenied || testutil.ToFloat64(m.denied.WithLabelValues("p", MethodWatch)) != 1 {
				t.Errorf("grant %v: Watch %v, want PermissionDenied counted", tc.names, err)
			}
			continue
		}
		if len(got) != 2 {
			t.Fatalf("grant %v: %d updates (%v), want 2", tc.names, len(got), err)
		}
		snap, change := got[0], got[1]
		if !snap.Full || snap.Version != 7 || len(snap.Set) != n || snap.UnknownClients != "discover" || snap.Set[n-1].MAC != "52:54:00:00:09:c3" {
			t.Fatalf("grant %v: snapshot version %d full %v with %d clients", tc.names, snap.Version, snap.Full, len(snap.Set))
		}
		if change.Full || change.Version != 8 || len(change.Removed) != 1 {
			t.Errorf("grant %v: change %+v", tc.names, change)
		}
		for _, e := range snap.Set {
			if has := e.Decision.CHAPSecret != "" || e.Decision.CHAPUser != ""; has != tc.secrets || !e.Decision.Known {
				t.Fatalf("grant %v: %+v, want secrets %v", tc.names, e.Decision, tc.secrets)
			}
		}
	}
	// A host whose Clients cannot push: Unimplemented, the plugin's cue
	// to keep using Lookup.
	g, _ := Parse([]string{Lookup})
	conn := serve(t, Guard(host.Services{Clients: open{}}, Plugin{Name: "p"}, g, nil))
	err := hostrpc.NewClient(conn).Clients.(host.ClientWatcher).Watch(context.Background(), func(host.ClientUpdate) error { return nil })
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Watch on a host without a table: %v, want Unimplemented", err)
	}
}
