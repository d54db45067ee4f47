// Command dls-protocol-dhcp is the "dhcp" protocol plugin, DLS's DHCP
// server; the code is package dhcpd. See README.md.
package main

import (
	"runtime/debug"

	"github.com/dls-project/dls/plugins/protocol/dhcp/dhcpd"
	"github.com/dls-project/dls/sdk"
)

func main() {
	// The heap is small (the lease table, a decision cache) and the packet
	// path allocates per packet: collect less often, spend less CPU on it.
	debug.SetGCPercent(400)
	sdk.Serve(dhcpd.New())
}
