// Command dls-storage-file is the "file" storage plugin: an example of a
// vendor plugin built only on the DLS SDK. See README.md.
package main

import (
	"github.com/dls-project/dls/examples/storage-file/file"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(file.New()) }
