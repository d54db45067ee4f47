// Command dls-storage-zfs is the "zfs" storage plugin: a ZFS dataset per
// image, a snapshot per version, a clone per client volume. See README.md.
package main

import (
	"github.com/dls-project/dls/plugins/storage/zfs/zfs"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(zfs.New()) }
