// Command dls-protocol-dhcp6 is the "dhcp6" protocol plugin, DLS's DHCPv6
// server; the code is package dhcp6d. See README.md.
package main

import (
	"runtime/debug"

	"github.com/dls-project/dls/plugins/protocol/dhcp6/dhcp6d"
	"github.com/dls-project/dls/sdk"
)

func main() {
	// As protocol "dhcp": a small heap, allocations per packet.
	debug.SetGCPercent(400)
	sdk.Serve(dhcp6d.New())
}
