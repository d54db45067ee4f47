// Command dls-auth-ldap is the "ldap" auth plugin: admins' passwords and
// groups checked against an LDAP directory. See README.md.
package main

import (
	"github.com/dls-project/dls/plugins/auth/ldap/ldapauth"
	"github.com/dls-project/dls/sdk"
)

func main() { sdk.Serve(ldapauth.New()) }
