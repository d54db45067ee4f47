//go:build linux

package slapdtest_test

import (
	"slices"
	"testing"

	"github.com/dls-project/dls/internal/slapdtest"
	"github.com/go-ldap/ldap/v3"
)

func TestStart(t *testing.T) {
	s := slapdtest.Start(t,
		slapdtest.WithUser("alice", "alice-password", "admins", "ops"),
		slapdtest.WithUser("x,y+z", "comma-password", "ops"),
		slapdtest.WithGroup("nobody", slapdtest.RootDN),
		slapdtest.WithPosixGroup("posix", "alice"),
		slapdtest.WithPosixGroup("empty"),
	)
	s.AddUser(t, "bob", "bob-password", "admins")
	s.AddPosixGroup(t, "posix", "bob")
	s.AddGroup(t, "nobody", slapdtest.ServiceDN)

	// Users bind with their passwords, and only with them.
	for uid, pw := range map[string]string{"alice": "alice-password", "x,y+z": "comma-password", "bob": "bob-password"} {
		conn, err := ldap.DialURL(s.URL)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Bind(slapdtest.UserDN(uid), pw); err != nil {
			t.Errorf("bind as %s: %v", uid, err)
		}
		if err := conn.Bind(slapdtest.UserDN(uid), pw+"x"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			t.Errorf("bind as %s with a wrong password: %v", uid, err)
		}
		conn.Close()
	}
	conn, err := ldap.DialURL(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Bind(s.ServiceDN, s.ServicePassword); err != nil {
		t.Fatalf("bind as the service account: %v", err)
	}

	members := func(cn, attr string) []string {
		t.Helper()
		res, err := conn.Search(ldap.NewSearchRequest(slapdtest.GroupDN(cn), ldap.ScopeBaseObject, ldap.NeverDerefAliases,
			0, 0, false, "(objectClass=*)", []string{attr, "gidNumber"}, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("group %s: %v", cn, err)
		}
		v := res.Entries[0].GetAttributeValues(attr)
		slices.Sort(v)
		return v
	}
	for _, c := range []struct {
		cn, attr string
		want     []string
	}{
		{"admins", "member", []string{slapdtest.UserDN("alice"), slapdtest.UserDN("bob")}},
		{"ops", "member", []string{slapdtest.UserDN("alice"), slapdtest.UserDN("x,y+z")}},
		{"nobody", "member", []string{slapdtest.RootDN, slapdtest.ServiceDN}},
		{"posix", "memberUid", []string{"alice", "bob"}},
		{"empty", "memberUid", nil},
	} {
		got := members(c.cn, c.attr)
		want := slices.Clone(c.want)
		slices.Sort(want)
		// slapd spells DNs its own way ("x\2Cy" for "x\,y"): compare them parsed.
		if !slices.EqualFunc(got, want, func(a, b string) bool {
			da, errA := ldap.ParseDN(a)
			db, errB := ldap.ParseDN(b)
			if errA != nil || errB != nil {
				return a == b
			}
			return da.Equal(db)
		}) {
			t.Errorf("%s %s = %q, want %q", c.cn, c.attr, got, want)
		}
	}

	s.Stop()
	s.Stop() // twice is fine
	if _, err := ldap.DialURL(s.URL); err == nil {
		t.Error("slapd still answers after Stop")
	}
}
