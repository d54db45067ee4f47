package dhcp6d

import (
	"context"
	"strings"
	"testing"

	"github.com/dls-project/dls/sdk/plugintest"
)

// TestPluginOverGRPC runs the plugin as the host does (plugintest's gRPC
// path): its schema and metric declarations pass the host's checks, config
// errors name their attribute, and mode off serves nothing. (Serving needs
// an interface with a MAC and port 547: see netns_test.go.)
func TestPluginOverGRPC(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"interface": "br0", "pool": []any{map[string]any{"prefix": "fd00:99::/48"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "pool[0].prefix") {
		t.Errorf("config errors %v, want one at pool[0].prefix", errs)
	}
	if errs, err := h.Configure(map[string]any{"mode": "off"}); err != nil || len(errs) != 0 {
		t.Fatalf("mode off: %v %v", errs, err)
	}
	ctx := context.Background()
	if err := h.Protocol().Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := h.Protocol().Status(ctx)
	if err != nil || st.Serving || !strings.Contains(st.Message, "off") {
		t.Errorf("status %+v %v", st, err)
	}
	if v := h.MetricValue(t, "dls_dhcp6_requests_total", "solicit", "replied"); v != 0 {
		t.Errorf("requests_total{solicit,replied} = %v", v)
	}
}
