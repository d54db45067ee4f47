// Command dls-storage-rawdir is the smallest storage plugin that passes the
// SDK's conformance suite; the plugin is package rawdir. See README.md.
package main

import (
	"github.com/dls-project/dls/examples/storage-minimal/rawdir"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(rawdir.New()) }
