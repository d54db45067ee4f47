// Command dls-storage-dir is the embedded default storage plugin: images,
// versions and per-client volumes as files under a directory. The plugin
// is package dirstore; see README.md.
package main

import (
	"github.com/dls-project/dls/plugins/storage/dir/dirstore"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(dirstore.New()) }
