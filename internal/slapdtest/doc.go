// Package slapdtest starts a real OpenLDAP server (slapd) for tests: a
// child process on free loopback ports (ldap:// and ldaps://), with a
// throwaway mdb database, a test CA and server certificate, and a
// directory laid out as
//
//	dc=dls,dc=test                       BaseDN
//	  cn=admin                           RootDN (the rootdn, RootPassword)
//	  ou=people                          PeopleDN: users (inetOrgPerson, {SSHA} passwords)
//	  ou=groups                          GroupsDN: groupOfNames and posixGroup entries
//	  ou=services
//	    cn=dls                           ServiceDN: a service account (ServicePassword)
//
// Users and groups are added with options to Start (WithUser, WithGroup,
// WithPosixGroup) or afterwards with the Server's methods.
//
// Without slapd (Debian: apt-get install slapd ldap-utils, or
// .ci/ldap-setup.sh) Start skips the test, except when the environment
// variable CI is set: then it fails it, since CI must run these tests.
//
// It only builds on Linux (the server is killed with its parent through
// Pdeathsig).
package slapdtest
