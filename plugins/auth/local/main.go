// Command dls-auth-local is the "local" auth plugin: DLS's own users with
// argon2id password hashes in a file under the plugin's data dir, and user
// administration for `dls user add`. See README.md.
package main

import (
	"github.com/dls-project/dls/plugins/auth/local/localauth"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(localauth.New()) }
