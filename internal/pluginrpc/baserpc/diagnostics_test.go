package baserpc

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/dls-project/dls/sdk/config"
)

func TestDiagnosticsRoundTrip(t *testing.T) {
	var errs config.Errors
	errs.Add(config.Errorf("pool[1].start", "10.0.0.9 is after end"))
	errs.Add(errors.Join(config.Errorf("mode", "bad"), errors.New("plain")))
	errs.Add(fmt.Errorf("wrapped: %w", config.Errorf("b", "y")))

	diags := diagnostics(errs)
	if len(diags) != 4 || diags[0].Path != "pool[1].start" || diags[2].Path != "" || diags[2].Message != "plain" {
		t.Errorf("diagnostics: %v", diags)
	}
	if back := fromDiagnostics(diags); !reflect.DeepEqual(back, errs) {
		t.Errorf("fromDiagnostics:\n got %v\nwant %v", back, errs)
	}
	if diagnostics(nil) != nil || fromDiagnostics(nil) != nil {
		t.Error("nil in, non-nil out")
	}
	if d := diagnostics(errors.New("boom")); len(d) != 1 || d[0].Path != "" || d[0].Message != "boom" {
		t.Errorf("plain error: %v", d)
	}
}
