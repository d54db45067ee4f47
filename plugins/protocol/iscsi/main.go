// Command dls-protocol-iscsi is DLS's iSCSI target: each client's volume
// as LUN 0 of the target <iqn_prefix>:<client>, for that client's
// initiators only, with CHAP when the client has secrets.
package main

import "github.com/dls-project/dls/sdk"

func main() { sdk.Serve(New()) }
