package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
)

// TestDiscoverWiredUp: with unknown_clients = "discover" the host's
// write-behind runs: an unknown machine's boot firmware, answered
// unknown, is in the store within seconds and counted in /metrics.
func TestDiscoverWiredUp(t *testing.T) {
	h := start(t, "boot {\n  unknown_clients = \"discover\"\n}\n")
	const mac = "52:54:00:de:00:01"
	d, err := h.d.services.For().Clients.Lookup(context.Background(), host.Query{MAC: mac, Arch: 7, VendorClass: "PXEClient:Arch:00007:UNDI:003016", Peer: "10.0.0.1"})
	if err != nil || d.Known {
		t.Fatalf("Lookup(unknown) = %+v, %v; want unknown", d, err)
	}
	start := time.Now()
	h.waitFor(10*time.Second, "the machine recorded", func() bool {
		_, err := h.d.store.GetDiscovered(context.Background(), mac)
		return err == nil
	})
	t.Logf("recorded %v after the lookup", time.Since(start).Round(time.Millisecond))
	_, metrics := h.get("/metrics")
	if v, ok := metric(metrics, `dls_discovery_sightings_total{result="recorded"}`); !ok || v != 1 {
		t.Errorf("recorded sightings = %v (%v)", v, ok)
	}
}
