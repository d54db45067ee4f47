// Command dls-storage-zfs is the "zfs" storage plugin: a ZFS dataset per
// image, a snapshot per version, a clone per client volume. The plugin is
// package zfsstore; see README.md.
package main

import (
	"github.com/dls-project/dls/plugins/storage/zfs/zfsstore"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(zfsstore.New()) }
