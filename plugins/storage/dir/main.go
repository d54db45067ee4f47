// Command dls-storage-dir is the embedded default storage plugin: images,
// versions and per-client volumes as files under a directory.
package main

import "github.com/dls-project/dls/sdk"

func main() { sdk.Serve(New()) }
