// Command dls-protocol-tftp is the "tftp" protocol plugin: a read-only
// TFTP server for first-stage boot files and per-client iPXE scripts.
// See README.md.
package main

import (
	"github.com/dls-project/dls/plugins/protocol/tftp/tftpd"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(tftpd.New()) }
