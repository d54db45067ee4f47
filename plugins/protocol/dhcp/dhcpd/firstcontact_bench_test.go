package dhcpd

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/dls-project/dls/internal/pluginrpc/hostrpc"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/iana"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
)

// BenchmarkFirstContactDecide is the decision of a never-seen MAC's first
// packet (boot firmware, unknown_clients = "ignore", 1000 clients known),
// the host behind a real gRPC connection as on a plugin's broker
// connection: "lookup" asks the host per new MAC (the plugin before the
// pushed table, and while it is not live), "table" answers from the
// pushed table. Compare the two in one run; the host here is an in-memory
// fake, so "lookup" leaves out the host's store query: the real gap is
// wider.
func BenchmarkFirstContactDecide(b *testing.B) {
	ph := newPushHost("ignore")
	for i := range 1000 {
		ph.set(fmt.Sprintf("52:54:00:01:%02x:%02x", i>>8, i&0xff), decisionOf(fmt.Sprintf("pc%d", i), ""))
	}
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	hostrpc.RegisterServer(gs, host.Services{Clients: ph, Events: ph.FakeHost, Leases: ph.FakeHost})
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	hs := hostrpc.NewClient(conn)
	set, err := check(*baseConfig())
	if err != nil {
		b.Fatal(err)
	}
	c := clientOf(discover("52:54:00:00:00:01", pxe(iana.EFI_X86_64)))
	for _, mode := range []string{"lookup", "table"} {
		b.Run(mode, func(b *testing.B) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv := newServer(ctx, set, set.serverIP, hs, newMetrics(metrics.NewRegistry()), hclog.NewNullLogger())
			defer srv.commits.Close(context.Background())
			if mode == "lookup" {
				srv.known = nil
			} else {
				go srv.follow(ctx, hs.Clients.(host.ClientWatcher))
				<-srv.known.Ready()
				if _, n, live := srv.known.State(); !live || n != 1000 {
					b.Fatalf("table: %d clients, live %v", n, live)
				}
			}
			mac := []byte{0x02, 0x42, 0, 0, 0, 0}
			i := uint32(0)
			for b.Loop() {
				i++
				mac[2], mac[3], mac[4], mac[5] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
				d, err := srv.decide(ctx, string(mac), c)
				if err != nil || d.Known {
					b.Fatalf("decision %+v %v", d, err)
				}
			}
		})
	}
}
