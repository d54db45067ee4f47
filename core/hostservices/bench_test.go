package hostservices_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dls-project/dls/core/hostservices"
	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/store/postgres"
	"github.com/dls-project/dls/core/store/sqlite"
	"github.com/dls-project/dls/internal/fakeprotocol"
	"github.com/dls-project/dls/internal/pluginrpc/baserpc"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/hashicorp/go-hclog"
	"github.com/jackc/pgx/v5"
)

// benchClients is how many clients the store holds.
const benchClients = 1000

func benchMAC(i int) string { return fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8&0xff, i&0xff) }

// pluginSide returns the host services as a plugin sees them: the real
// hostservices over a real SQLite store holding benchClients clients,
// offered over the go-plugin broker to a protocol plugin served by
// plugintest, whose Configure hands back its host.Services (the gRPC
// clients of the brokered connection).
func pluginSide(b *testing.B, open func(b *testing.B) store.Store) host.Services {
	b.Helper()
	ctx := context.Background()
	st := open(b)
	b.Cleanup(func() { _ = st.Close() }) // registered before the plugin's: runs after it
	for i := range benchClients {
		c := store.Client{
			Name: fmt.Sprintf("pc-%04d", i), MAC: benchMAC(i), Image: "lab",
			Address: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}),
		}
		if err := st.PutClient(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	svc := hostservices.New(hostservices.Boot{
		URL: "http://10.0.0.1:9180", IQNPrefix: "iqn.2026-11.io.dls", ServerAddress: "10.0.0.1",
	}, st, nil, hclog.NewNullLogger())

	got := make(chan host.Services, 1)
	impl := &fakeprotocol.Mock{ConfigureFn: func(_ context.Context, req base.ConfigureRequest) error {
		select {
		case got <- req.Host:
		default:
		}
		return nil
	}}
	// plugintest.WithHost takes only a *FakeHost: skip the harness's
	// Configure and offer the real services over the broker ourselves, as
	// the daemon does (core/daemon/lifecycle.go).
	h := plugintest.Start(b, impl, plugintest.WithoutConfigure(), plugintest.WithLogger(hclog.NewNullLogger()))
	id := h.Base.ServeHost(svc.For())
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	errs, err := h.Base.Configure(cctx, baserpc.ConfigureArgs{ConfigJSON: []byte("{}"), HostID: id, Instance: "bench", DataDir: b.TempDir()})
	if err != nil || len(errs) > 0 {
		b.Fatalf("configure: %v %v", err, errs)
	}
	hs := <-got
	if hs.Clients == nil || hs.Leases == nil {
		b.Fatal("plugin got no host services")
	}
	// One call through before timing: the brokered connection is dialled.
	d, err := hs.Clients.Lookup(ctx, host.Query{MAC: benchMAC(1)})
	if err != nil || !d.Known || d.Client != "pc-0001" {
		b.Fatalf("lookup: %+v %v", d, err)
	}
	return hs
}

// backends are the stores the benchmarks run on: SQLite always, and
// PostgreSQL (a fresh schema in $DLS_PG_DSN's database) when it is set.
func backends(b *testing.B, run func(b *testing.B, open func(b *testing.B) store.Store)) {
	b.Run("sqlite", func(b *testing.B) {
		run(b, func(b *testing.B) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "dls.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			return st
		})
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := os.Getenv("DLS_PG_DSN")
		if dsn == "" {
			b.Skip("DLS_PG_DSN is not set (eval \"$(.ci/postgres-setup.sh)\")")
		}
		run(b, func(b *testing.B) store.Store {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
			if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
				_ = conn.Close(context.Background())
			})
			sep := "?"
			if strings.Contains(dsn, "?") {
				sep = "&"
			}
			st, err := postgres.Open(ctx, dsn+sep+"search_path="+schema, nil)
			if err != nil {
				b.Fatal(err)
			}
			return st
		})
	})
}

// BenchmarkClientsLookup is one boot decision by MAC (a DHCP DISCOVER's),
// plugin → host over the broker → SQLite, among benchClients clients.
func BenchmarkClientsLookup(b *testing.B) { backends(b, benchmarkLookup) }

func benchmarkLookup(b *testing.B, open func(b *testing.B) store.Store) {
	hs := pluginSide(b, open)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		d, err := hs.Clients.Lookup(ctx, host.Query{MAC: benchMAC(i % benchClients), Arch: 7})
		if err != nil {
			b.Fatal(err)
		}
		if !d.Known {
			b.Fatalf("client %d unknown", i%benchClients)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkClientsLookupParallel is BenchmarkClientsLookup from
// GOMAXPROCS goroutines at once (one broker connection, as a plugin has).
func BenchmarkClientsLookupParallel(b *testing.B) { backends(b, benchmarkLookupParallel) }

func benchmarkLookupParallel(b *testing.B, open func(b *testing.B) store.Store) {
	hs := pluginSide(b, open)
	ctx := context.Background()
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)) * 7919
		for pb.Next() {
			d, err := hs.Clients.Lookup(ctx, host.Query{MAC: benchMAC(i % benchClients), Arch: 7})
			if err != nil {
				b.Error(err)
				return
			}
			if !d.Known {
				b.Errorf("client %d unknown", i%benchClients)
				return
			}
			i++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// benchmarkCommit commits batches of size leases, each a new address and
// MAC (a real insert), plugin → host over the broker → one SQLite
// transaction per batch.
func benchmarkCommit(b *testing.B, open func(b *testing.B) store.Store, size int) {
	hs := pluginSide(b, open)
	ctx := context.Background()
	batch := make([]host.Lease, size)
	n := uint32(0)
	for b.Loop() {
		exp := time.Now().Add(time.Hour)
		for i := range batch {
			n++
			a := 10<<24 + 64<<16 + n // from 10.64.0.1: clear of the clients' 10.0/16
			batch[i] = host.Lease{
				Pool: "lan", State: host.LeaseBound, Expires: exp,
				Address: netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}).String(),
				MAC:     fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(n>>24), byte(n>>16), byte(n>>8), byte(n)),
			}
		}
		rs, err := hs.Leases.Commit(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		for i, r := range rs {
			if !r.OK {
				b.Fatalf("lease %s refused: held by %s", batch[i].Address, r.Holder)
			}
		}
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/secs, "commits/s")
	b.ReportMetric(float64(b.N*size)/secs, "leases/s")
}

func BenchmarkLeasesCommit1(b *testing.B) {
	backends(b, func(b *testing.B, open func(b *testing.B) store.Store) { benchmarkCommit(b, open, 1) })
}

func BenchmarkLeasesCommit256(b *testing.B) {
	backends(b, func(b *testing.B, open func(b *testing.B) store.Store) { benchmarkCommit(b, open, 256) })
}
