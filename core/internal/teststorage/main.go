// Command teststorage is a storage plugin for the host's tests: the
// example file storage (examples/storage-file) that, once configured,
// calls every host service through the raw gRPC stubs and writes what the
// host answered to host-probe.json in its data dir (core/internal/hostprobe).
package main

import (
	"context"

	"github.com/dls-project/dls/core/internal/hostprobe"
	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/sdk"
	"github.com/dls-project/dls/sdk/base"
)

type plugin struct{ *file.Plugin }

func (p plugin) Info() base.Info { return base.Info{Type: "probe", Version: "0.0.1"} }

func (p plugin) Configure(ctx context.Context, req base.ConfigureRequest) error {
	if err := p.Plugin.Configure(ctx, req); err != nil {
		return err
	}
	return hostprobe.RunAndWrite(ctx, req.HostConn, req.DataDir)
}

func main() { sdk.Serve(plugin{file.New()}) }
