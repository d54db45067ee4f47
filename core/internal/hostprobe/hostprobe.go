// Package hostprobe is what DLS's test plugins use to check their grant
// from the plugin's side: it calls every host service once through the
// raw gRPC stubs on the brokered host connection (not the SDK's client
// wrappers, which a hostile plugin would not use either) and writes what
// the host answered to a JSON file the host's tests read.
package hostprobe

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/dls-project/dls/sdk/proto/dlsv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// MAC is the machine the probe looks up; tests configure a client with it.
const MAC = "52:54:00:9e:00:01"

// File is the probe's report in the plugin's data dir.
const File = "host-probe.json"

// Result is the host's answer to one call.
type Result struct {
	// Code is the gRPC status code's name ("OK", "PermissionDenied", ...).
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
	// Known and Secrets describe a Lookup decision: whether the host knew
	// MAC, and whether any CHAP secret came with it.
	Known   bool `json:"known,omitempty"`
	Secrets bool `json:"secrets,omitempty"`
}

// Report maps "Service.Method" to the host's answer.
type Report map[string]Result

// Run calls every host service on conn. Calls are chosen to change
// nothing in the host: empty batches, an unknown client's volume.
func Run(ctx context.Context, conn grpc.ClientConnInterface) Report {
	r := Report{}
	clients := dlsv1.NewClientsClient(conn)
	d, err := clients.Lookup(ctx, &dlsv1.ClientQuery{Mac: MAC})
	res := result(err)
	if err == nil {
		res.Known = d.GetKnown()
		res.Secrets = d.GetChapSecret() != "" || d.GetChapMutualSecret() != ""
	}
	r["Clients.Lookup"] = res
	_, err = clients.Script(ctx, &dlsv1.ScriptQuery{Mac: MAC, Peer: "192.0.2.1"})
	r["Clients.Script"] = result(err)
	_, err = dlsv1.NewEventsClient(conn).Report(ctx, &dlsv1.EventBatch{})
	r["Events.Report"] = result(err)
	volumes := dlsv1.NewVolumesClient(conn)
	_, err = volumes.Attach(ctx, &dlsv1.AttachRequest{Client: "no-such-client"})
	r["Volumes.Attach"] = result(err)
	_, err = volumes.Detach(ctx, &dlsv1.AttachRequest{Client: "no-such-client"})
	r["Volumes.Detach"] = result(err)
	leases := dlsv1.NewLeasesClient(conn)
	_, err = leases.Load(ctx, &dlsv1.LoadLeasesRequest{})
	r["Leases.Load"] = result(err)
	_, err = leases.Commit(ctx, &dlsv1.LeaseBatch{})
	r["Leases.Commit"] = result(err)
	return r
}

func result(err error) Result {
	st := status.Convert(err)
	return Result{Code: st.Code().String(), Message: st.Message()}
}

// RunAndWrite runs the probe and writes its report to dir/File.
func RunAndWrite(ctx context.Context, conn grpc.ClientConnInterface, dir string) error {
	if conn == nil {
		return fmt.Errorf("host probe: the host offers no services")
	}
	b, err := json.MarshalIndent(Run(ctx, conn), "", "  ")
	if err != nil {
		return fmt.Errorf("host probe: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, File), b, 0o600); err != nil {
		return fmt.Errorf("host probe: %w", err)
	}
	return nil
}

// Read reads the report a plugin wrote in dir.
func Read(dir string) (Report, error) {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("host probe report %s: %w", dir, err)
	}
	return r, nil
}
