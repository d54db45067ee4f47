// Command dls-protocol-dhcp is DLS's DHCP server: addresses from pools
// (full mode), PXE and iPXE boot answers beside the site's DHCP server
// (proxy mode) or for known clients only (reservation mode), with leases
// stored through the host before they are ACKed. See README.md.
package main

import (
	"runtime/debug"

	"github.com/dls-project/dls/sdk"
)

func main() {
	// The heap is small (the lease table, a decision cache) and the packet
	// path allocates per packet: collect less often, spend less CPU on it.
	debug.SetGCPercent(400)
	sdk.Serve(New())
}
