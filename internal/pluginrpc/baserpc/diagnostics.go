package baserpc

import (
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/proto/dlsv1"
)

// diagnostics converts the error of a plugin's Configure (or of decoding
// its config) into the diagnostics the wire carries: one per *config.Error
// (also inside config.Errors, errors.Join or a %w wrapper), and one with an
// empty path for any other error. It returns nil for a nil err.
func diagnostics(err error) []*dlsv1.ConfigDiagnostic {
	var es config.Errors
	es.Add(err)
	if len(es) == 0 {
		return nil
	}
	out := make([]*dlsv1.ConfigDiagnostic, len(es))
	for i, e := range es {
		out[i] = &dlsv1.ConfigDiagnostic{Path: e.Path, Message: e.Message}
	}
	return out
}

// fromDiagnostics is the reverse of diagnostics, on the host's side. It
// returns nil when there are none.
func fromDiagnostics(diags []*dlsv1.ConfigDiagnostic) config.Errors {
	var es config.Errors
	for _, d := range diags {
		if d == nil {
			continue
		}
		es = append(es, &config.Error{Path: d.GetPath(), Message: d.GetMessage()})
	}
	return es
}
