package storage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/dls-project/dls/sdk/storage"
)

// counted is a plugin that records no operation metrics of its own: the
// SDK must.
type counted struct {
	storage.Unimplemented
	reg *metrics.Registry
}

func (counted) Info() base.Info                                        { return base.Info{Type: "counted", Version: "0"} }
func (counted) NewConfig() any                                         { return nil }
func (counted) Configure(context.Context, base.ConfigureRequest) error { return nil }
func (c counted) Metrics() *metrics.Registry                           { return c.reg }

func (counted) CreateVolume(_ context.Context, r storage.VolumeRequest) (storage.Volume, error) {
	return storage.Volume{Name: r.Volume, Image: r.Image, Version: 1, Size: 512}, nil
}

func (counted) DeleteVolume(ctx context.Context, name string) error {
	return fmt.Errorf("delete volume %s: %w", name, context.Canceled)
}

func (counted) ListVolumes(context.Context) ([]storage.Volume, error) { return nil, nil }

func TestSDKRecordsOperationMetrics(t *testing.T) {
	reg := metrics.NewRegistry()
	storage.NewMetrics(reg)
	h := plugintest.Start(t, counted{reg: reg})
	st := h.Storage()
	ctx := t.Context()
	for range 2 {
		if _, err := st.CreateVolume(ctx, storage.VolumeRequest{Volume: "pc-01", Image: "lab"}); err != nil {
			t.Fatalf("CreateVolume: %v", err)
		}
	}
	_ = st.DeleteVolume(ctx, "pc-01")
	_, _ = st.Attach(ctx, "pc-01")
	if _, err := st.ListVolumes(ctx); err != nil {
		t.Fatalf("ListVolumes: %v", err)
	}

	for _, c := range []struct {
		op, result string
		want       float64
	}{
		{storage.OpClone, "ok", 2},
		{storage.OpDeleteVolume, "canceled", 1},
		{storage.OpAttach, "error", 1},
	} {
		if got := h.MetricValue(t, "dls_image_operations_total", c.op, c.result); got != c.want {
			t.Errorf("dls_image_operations_total{op=%s,result=%s} = %v, want %v", c.op, c.result, got, c.want)
		}
	}
	if s, ok := h.MetricSample(t, "dls_image_operation_duration_seconds", storage.OpClone); !ok || s.Count != 2 {
		t.Errorf("dls_image_operation_duration_seconds{op=clone} = %+v, %v; want 2 observations", s, ok)
	}
	// Reads are not operations: no series beyond the three above.
	for _, f := range h.Metrics(t) {
		if f.Name == "dls_image_operations_total" && len(f.Samples) != 3 {
			t.Errorf("dls_image_operations_total has %d series %+v, want 3 (reads are not counted)", len(f.Samples), f.Samples)
		}
	}
}

// The operation families are declared once, beside the gauges, whatever
// the plugin declared itself.
func TestOperationFamiliesAreDeclaredOnThePluginsRegistry(t *testing.T) {
	reg := metrics.NewRegistry()
	storage.NewMetrics(reg)
	plugintest.Start(t, counted{reg: reg})
	descs, err := reg.Descs()
	if err != nil {
		t.Fatalf("Descs: %v", err)
	}
	var names []string
	for _, d := range descs {
		names = append(names, d.Name)
	}
	want := []string{"dls_disk_images", "dls_storage_used_bytes", "dls_storage_available_bytes", "dls_storage_snapshots",
		"dls_image_operations_total", "dls_image_operation_duration_seconds"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Errorf("declared families %v, want %v", names, want)
	}
}
