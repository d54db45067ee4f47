package ldapauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/go-ldap/ldap/v3"
)

// maxGroups bounds the groups read for one user.
const maxGroups = 1000

// errNoUser says the user search found no entry, or more than one: the
// caller answers invalid credentials either way.
var errNoUser = errors.New("no single user entry")

// session is one connection to the directory, used for one Verify or
// Health and closed after it. A connection per request keeps binds from
// leaking between requests; logins are rare enough that the handshake
// does not matter.
type session struct {
	s    *settings
	conn *ldap.Conn
	stop func() bool
}

// connect dials the server, upgrades with StartTLS if configured, and ties
// the connection to ctx: when ctx ends, the connection is closed and the
// operation under way fails.
func connect(ctx context.Context, s *settings) (*session, error) {
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var c net.Conn
	var err error
	dialer := &net.Dialer{}
	if s.ldaps {
		c, err = (&tls.Dialer{NetDialer: dialer, Config: s.tls}).DialContext(dctx, "tcp", s.address)
	} else {
		c, err = dialer.DialContext(dctx, "tcp", s.address)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", s.url.Redacted(), err)
	}
	conn := ldap.NewConn(c, s.ldaps)
	conn.Start()
	conn.SetTimeout(s.timeout)
	ss := &session{s: s, conn: conn, stop: context.AfterFunc(ctx, func() { conn.Close() })}
	if s.startTLS {
		if err := conn.StartTLS(s.tls); err != nil {
			ss.close()
			return nil, fmt.Errorf("StartTLS with %s: %w", s.url.Redacted(), err)
		}
	}
	return ss, nil
}

func (ss *session) close() {
	ss.stop()
	ss.conn.Close()
}

// bindService binds as the service account, if there is one.
func (ss *session) bindService() error {
	if ss.s.bindDN == "" {
		return nil
	}
	if err := ss.conn.Bind(ss.s.bindDN, ss.s.bindPass); err != nil {
		return fmt.Errorf("bind as service account %q: %w", ss.s.bindDN, err)
	}
	return nil
}

// findUser returns the DN of the one entry user_filter finds for username,
// and the user name that entry holds (see canonicalName), or errNoUser.
func (ss *session) findUser(username string) (dn, name string, err error) {
	req := ldap.NewSearchRequest(ss.s.userBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		2, timeLimit(ss.s), false, ss.s.userSearchFilter(username), ss.nameAttrs(), nil)
	res, err := ss.conn.Search(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return "", "", fmt.Errorf("user filter matches more than one entry: %w", errNoUser)
	}
	if err != nil {
		return "", "", fmt.Errorf("search user in %q: %w", ss.s.userBase, err)
	}
	switch len(res.Entries) {
	case 0:
		return "", "", errNoUser
	case 1:
		e := res.Entries[0]
		return e.DN, ss.canonicalName(e, username), nil
	}
	return "", "", fmt.Errorf("user filter matches %d entries: %w", len(res.Entries), errNoUser)
}

// readName reads the user name held by the entry dn (see canonicalName).
func (ss *session) readName(dn, username string) (string, error) {
	if ss.s.nameAttr == "" {
		return username, nil
	}
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, timeLimit(ss.s), false, "(objectClass=*)", ss.nameAttrs(), nil)
	res, err := ss.conn.Search(req)
	if err != nil {
		return "", fmt.Errorf("read entry %q: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return username, nil
	}
	return ss.canonicalName(res.Entries[0], username), nil
}

// entryName reads the entry dn and the user name it holds (see
// canonicalName); errNoUser when there is no such entry. Unlike readName
// it always asks the directory: Lookup must learn whether the entry
// still exists.
func (ss *session) entryName(dn, username string) (string, error) {
	req := ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, timeLimit(ss.s), false, "(objectClass=*)", ss.nameAttrs(), nil)
	res, err := ss.conn.Search(req)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return "", fmt.Errorf("no entry %q: %w", dn, errNoUser)
	}
	if err != nil {
		return "", fmt.Errorf("read entry %q: %w", dn, err)
	}
	if len(res.Entries) != 1 {
		return "", fmt.Errorf("no entry %q: %w", dn, errNoUser)
	}
	return ss.canonicalName(res.Entries[0], username), nil
}

// nameAttrs are the attributes a user search asks for.
func (ss *session) nameAttrs() []string {
	if ss.s.nameAttr == "" {
		return []string{"1.1"} // RFC 4511: no attributes
	}
	return []string{ss.s.nameAttr}
}

// canonicalName is the user name as the directory spells it: the single
// value of username_attr in the user's entry. Directories match names
// without regard to case, so "Alice" finds alice's entry; DLS then knows
// her as "alice". Without username_attr, or when the entry has no single
// value, it is the name as typed.
func (ss *session) canonicalName(e *ldap.Entry, username string) string {
	if ss.s.nameAttr == "" {
		return username
	}
	if v := e.GetEqualFoldAttributeValues(ss.s.nameAttr); len(v) == 1 && v[0] != "" {
		return v[0]
	}
	return username
}

// bindUser binds as dn with password. It reports whether the directory
// refused the credentials (as opposed to failing).
func (ss *session) bindUser(dn, password string) (refused bool, err error) {
	if password == "" {
		// Never reached (Verify refuses it first); the LDAP library
		// refuses it too. An empty password would be an unauthenticated
		// bind, which succeeds without checking anything.
		return true, errors.New("empty password")
	}
	err = ss.conn.Bind(dn, password)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) ||
		ldap.IsErrorWithCode(err, ldap.LDAPResultInappropriateAuthentication) {
		return true, err
	}
	if err != nil {
		return false, fmt.Errorf("bind as %q: %w", dn, err)
	}
	return false, nil
}

// groups returns the names (group_attr) of the groups group_filter finds
// for the user, sorted, without duplicates.
func (ss *session) groups(username, dn string) ([]string, error) {
	if ss.s.groupBase == "" {
		return []string{}, nil
	}
	req := ldap.NewSearchRequest(ss.s.groupBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		maxGroups, timeLimit(ss.s), false, ss.s.groupSearchFilter(username, dn), []string{ss.s.groupAttr}, nil)
	res, err := ss.conn.Search(req)
	if err != nil {
		return nil, fmt.Errorf("search groups of %q in %q: %w", dn, ss.s.groupBase, err)
	}
	out := []string{}
	for _, e := range res.Entries {
		out = append(out, e.GetEqualFoldAttributeValues(ss.s.groupAttr)...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// timeLimit is the server-side time limit of a search, in whole seconds.
func timeLimit(s *settings) int {
	return max(1, int(s.timeout.Seconds()))
}
