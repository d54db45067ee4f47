// Command dls-protocol-iscsi is the "iscsi" protocol plugin, DLS's iSCSI
// target; the code is package iscsid. See README.md.
package main

import (
	"github.com/dls-project/dls/plugins/protocol/iscsi/iscsid"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(iscsid.New()) }
