package dhcpd

import (
	"context"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/hashicorp/go-hclog"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// BenchmarkDORA is the packet path of 4-way exchanges without sockets:
// parse, allocate, build and encode the OFFER and the ACK, and the group
// commit to an in-memory host. REQUESTs are not held back until the
// previous ACK (as under load, many are in flight), so group commit works
// as it does in the server and the figure is the handler's throughput, not
// the commit's gather delay.
func BenchmarkDORA(b *testing.B) {
	c := baseConfig()
	c.RateLimit = 0
	c.Pools[0].Start, c.Pools[0].End, c.Pools[0].Netmask = "10.0.1.0", "10.0.255.250", "255.255.0.0"
	set, err := check(*c)
	if err != nil {
		b.Fatal(err)
	}
	fh := plugintest.NewFakeHost()
	srv := newServer(context.Background(), set, set.serverIP, fh.Services(), newMetrics(metrics.NewRegistry()), hclog.NewNullLogger())
	defer srv.commits.Close(context.Background())
	offers := make(chan reply, 1)
	acks := make(chan struct{}, 1<<16)
	srv.out = func(r reply) error {
		if r.typ == replyAck {
			acks <- struct{}{}
		} else {
			offers <- r
		}
		return nil
	}
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
		srv.handle(ctx, discovers[i], in)
		offer, _ := dhcpv4.FromBytes((<-offers).b)
		req, _ := dhcpv4.NewRequestFromOffer(offer)
		req.GatewayIPAddr = offer.GatewayIPAddr
		requests[i] = req.ToBytes()
	}
	for i := range clients {
		srv.handle(ctx, requests[i], in)
	}
	for range clients {
		<-acks
	}
	b.ResetTimer()
	i, inFlight := 0, 0
	for b.Loop() {
		in.at = time.Now()
		srv.handle(ctx, discovers[i%clients], in)
		<-offers
		srv.handle(ctx, requests[i%clients], in)
		inFlight++
		// Collect the ACKs that are back; never let the queue fill.
		for inFlight > 0 {
			select {
			case <-acks:
				inFlight--
				continue
			default:
			}
			if inFlight < 1<<15 {
				break
			}
			<-acks
			inFlight--
		}
		i++
	}
	for ; inFlight > 0; inFlight-- {
		<-acks
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "exchanges/s")
}
