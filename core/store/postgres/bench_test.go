package postgres

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// The same benchmarks as the SQLite store's, to compare the two backends;
// they need DLS_PG_DSN like the tests.

// benchmarkCommit commits batches of size leases, renewing a rolling set of
// 4096 addresses each held by its own MAC: the steady state of a busy DHCP
// server. Each op is one transaction, so one WAL flush on the server.
func benchmarkCommit(b *testing.B, size int) {
	s, _ := openFresh(b, nil)
	const addrs = 4096
	leases := make([]store.Lease, addrs)
	for i := range leases {
		leases[i] = store.Lease{
			Pool:    "lan",
			Address: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}),
			MAC:     fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff),
			State:   store.LeaseBound,
		}
	}
	batch := make([]store.Lease, size)
	next := 0
	for b.Loop() {
		exp := time.Now().Add(time.Hour)
		for i := range batch {
			batch[i] = leases[next]
			batch[i].Expires = exp
			next = (next + 1) % addrs
		}
		res, err := s.CommitLeases(b.Context(), batch)
		if err != nil {
			b.Fatal(err)
		}
		if !res[0].OK {
			b.Fatalf("refused: %+v", res[0])
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "leases/s")
}

func BenchmarkCommitLeases1(b *testing.B)   { benchmarkCommit(b, 1) }
func BenchmarkCommitLeases256(b *testing.B) { benchmarkCommit(b, 256) }

// BenchmarkClientByMAC is the per-DISCOVER lookup, among 1000 clients.
func BenchmarkClientByMAC(b *testing.B) {
	s, _ := openFresh(b, nil)
	const clients = 1000
	macs := make([]string, clients)
	for i := range macs {
		macs[i] = fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff)
		if err := s.PutClient(b.Context(), store.Client{Name: fmt.Sprintf("pc-%04d", i), MAC: macs[i],
			Image: "lab", Initiators: []string{fmt.Sprintf("iqn.2026-11.io.dls:extra-%d", i)}}); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	for b.Loop() {
		if _, err := s.ClientByMAC(b.Context(), macs[i%clients]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
