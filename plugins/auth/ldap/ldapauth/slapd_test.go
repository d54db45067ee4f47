//go:build linux

package ldapauth_test

import (
	"testing"

	"github.com/dls-project/dls/internal/slapdtest"
)

// The directory every test gets (see startSlapd); the layout is
// slapdtest's.
const (
	baseDN    = slapdtest.BaseDN
	rootPW    = slapdtest.RootPassword
	peopleDN  = slapdtest.PeopleDN
	groupsDN  = slapdtest.GroupsDN
	serviceDN = slapdtest.ServiceDN
	servicePW = slapdtest.ServicePassword
)

// startSlapd starts a slapd (skipped without one, except in CI) holding:
//
//	ou=people: alice, bob, carol, "x,y+z", "o(b)*n" (inetOrgPerson, {SSHA} passwords)
//	ou=groups: cn=admins (groupOfNames: alice), cn=ops (posixGroup: bob, alice, o(b)*n),
//	           cn=nobody (groupOfNames: cn=admin)
//	ou=services: cn=dls (the service account)
func startSlapd(t testing.TB) *slapdtest.Server {
	t.Helper()
	return slapdtest.Start(t,
		slapdtest.WithUser("alice", "alice-password", "admins"), // and ops (memberUid)
		slapdtest.WithUser("bob", "bob-password"),               // ops (memberUid)
		slapdtest.WithUser("carol", "carol-password"),           // in no group
		slapdtest.WithUser("x,y+z", "comma-password"),           // a name that needs DN escaping
		slapdtest.WithUser("o(b)*n", "paren-password"),          // a name that needs filter escaping; in ops
		slapdtest.WithGroup("nobody", slapdtest.RootDN),
		slapdtest.WithPosixGroup("ops", "bob", "alice", "o(b)*n"),
	)
}
