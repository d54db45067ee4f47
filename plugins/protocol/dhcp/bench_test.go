package main

import (
	"context"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkDORA is the packet path of one 4-way exchange without sockets:
// parse, allocate, build and encode the OFFER and the ACK, and the group
// commit to an in-memory host.
func BenchmarkDORA(b *testing.B) {
	c := baseConfig()
	c.RateLimit = 0
	c.Pools[0].Start, c.Pools[0].End, c.Pools[0].Netmask = "10.0.1.0", "10.0.255.250", "255.255.0.0"
	set, err := check(*c)
	if err != nil {
		b.Fatal(err)
	}
	fh := plugintest.NewFakeHost()
	e := &env{sent: make(chan reply, 1024)}
	e.srv = newServer(set, set.serverIP, fh.Services(), newMetrics(metrics.NewRegistry()), hclog.NewNullLogger())
	e.srv.out = func(r reply) error { e.sent <- r; return nil }
	defer e.srv.commits.close(context.Background())
	const clients = 50000
	discovers := make([][]byte, clients)
	requests := make([][]byte, clients)
	for i := range clients {
		mac := []byte{0x02, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		d := discover(macString(string(mac)), relayed("10.0.0.1"))
		discovers[i] = d.ToBytes()
	}
	ctx := context.Background()
	in := packetInfo{}
	// Warm: every client has its lease (returning clients, as in perfdhcp's later steps).
	for i := range clients {
		e.srv.handle(ctx, discovers[i], in)
		r := <-e.sent
		offer, _ := dhcpv4.FromBytes(r.b)
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		req.GatewayIPAddr = offer.GatewayIPAddr
		requests[i] = req.ToBytes()
		e.srv.handle(ctx, requests[i], in)
		<-e.sent
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		in.at = time.Now()
		e.srv.handle(ctx, discovers[i%clients], in)
		<-e.sent
		e.srv.handle(ctx, requests[i%clients], in)
		<-e.sent
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}
