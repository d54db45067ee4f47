package ldapauth

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/plugintest"
)

func TestConfigErrors(t *testing.T) {
	good := func() *Config {
		c := New().NewConfig().(*Config)
		c.URL, c.UserBase, c.GroupBase = "ldap://127.0.0.1:389", "ou=people,dc=example,dc=org", "ou=groups,dc=example,dc=org"
		c.BindDN, c.BindPassword = "cn=dls,dc=example,dc=org", "secret"
		return c
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		path   string
		want   string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "url", "want ldap://"},
		{"http url", func(c *Config) { c.URL = "http://dir.example.org" }, "url", "want ldap://"},
		{"ldapi", func(c *Config) { c.URL = "ldapi:///run/slapd/ldapi" }, "url", "want ldap://"},
		{"no host", func(c *Config) { c.URL = "ldap://" }, "url", "no host"},
		{"base in url", func(c *Config) { c.URL = "ldap://dir/dc=example,dc=org" }, "url", "only scheme, host and port"},
		{"start_tls on ldaps", func(c *Config) { c.URL, c.StartTLS = "ldaps://dir", true }, "start_tls", "TLS already"},
		{"ca_file without tls", func(c *Config) { c.CAFile = caFile }, "ca_file", "only with ldaps"},
		{"ca_file missing", func(c *Config) { c.URL, c.CAFile = "ldaps://dir", "/nonexistent/ca.pem" }, "ca_file", "no such file"},
		{"ca_file not pem", func(c *Config) { c.URL, c.CAFile = "ldaps://dir", caFile }, "ca_file", "no PEM certificate"},
		{"bind_dn without password", func(c *Config) { c.BindPassword = "" }, "bind_password", "unauthenticated bind"},
		{"password without bind_dn", func(c *Config) { c.BindDN = "" }, "bind_dn", "without bind_dn"},
		{"bad bind_dn", func(c *Config) { c.BindDN = "not a dn" }, "bind_dn", ""},
		{"no user_base", func(c *Config) { c.UserBase = "" }, "user_base", "required unless user_dn_template"},
		{"bad user_base", func(c *Config) { c.UserBase = "people" }, "user_base", ""},
		{"filter without username", func(c *Config) { c.UserFilter = "(uid=alice)" }, "user_filter", "must contain {username}"},
		{"bad filter", func(c *Config) { c.UserFilter = "(uid={username}" }, "user_filter", "not a valid LDAP filter"},
		{"bare filter", func(c *Config) { c.UserFilter = "uid={username}" }, "user_filter", "not a valid LDAP filter"},
		{"template without username", func(c *Config) { c.UserDNTemplate = "uid=alice,dc=org" }, "user_dn_template", "must contain {username}"},
		{"template not a dn", func(c *Config) { c.UserDNTemplate = "{username}" }, "user_dn_template", "not a DN"},
		{"group filter without placeholder", func(c *Config) { c.GroupFilter = "(objectClass=groupOfNames)" }, "group_filter", "{dn} or {username}"},
		{"bad group filter", func(c *Config) { c.GroupFilter = "(member={dn}))" }, "group_filter", "not a valid LDAP filter"},
		{"bad group_attr", func(c *Config) { c.GroupAttr = "cn)(x" }, "group_attr", "not an attribute name"},
		{"empty group_attr", func(c *Config) { c.GroupAttr = "" }, "group_attr", "not an attribute name"},
		{"bad username_attr", func(c *Config) { c.UsernameAttr = "uid cn" }, "username_attr", "not an attribute name"},
		{"no timeout", func(c *Config) { c.Timeout = 0 }, "timeout", "more than 0"},
		{"huge timeout", func(c *Config) { c.Timeout = time.Hour }, "timeout", "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.change(c)
			err := New().Configure(context.Background(), base.ConfigureRequest{Config: c, DataDir: t.TempDir()})
			var errs config.Errors
			errs.Add(err)
			if len(errs) == 0 {
				t.Fatalf("config accepted: %+v", c)
			}
			if errs[0].Path != tc.path || !strings.Contains(errs[0].Message, tc.want) {
				t.Errorf("got %v, want an error at %q containing %q", errs, tc.path, tc.want)
			}
		})
	}

	t.Run("good", func(t *testing.T) {
		for _, change := range []func(*Config){
			func(*Config) {},
			func(c *Config) { c.GroupBase = "" },
			func(c *Config) {
				c.UserDNTemplate, c.UserBase, c.BindDN, c.BindPassword = "uid={username},ou=people,dc=org", "", "", ""
			},
			func(c *Config) { c.URL, c.UsernameAttr = "ldaps://dir.example.org", "" },
			func(c *Config) { c.StartTLS, c.GroupAttr = true, "cn;lang-en" },
			func(c *Config) { c.UserFilter = "(&(objectClass=person)(|(uid={username})(mail={username})))" },
			func(c *Config) { c.GroupFilter = "(member:1.2.840.113556.1.4.1941:={dn})" },
		} {
			c := good()
			change(c)
			if err := New().Configure(context.Background(), base.ConfigureRequest{Config: c}); err != nil {
				t.Errorf("%+v: %v", c, err)
			}
		}
	})
}

func TestSchema(t *testing.T) {
	if _, err := config.Schema(New().NewConfig()); err != nil {
		t.Fatal(err)
	}
}

func TestEscaping(t *testing.T) {
	c := New().NewConfig().(*Config)
	c.URL, c.UserBase, c.GroupBase = "ldap://127.0.0.1", "dc=org", "dc=org"
	c.UserDNTemplate = "uid={username},ou=people,dc=org"
	s, err := check(c, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ got, want string }{
		{s.userSearchFilter("*"), `(uid=\2a)`},
		{s.userSearchFilter("a)(uid=*"), `(uid=a\29\28uid=\2a)`},
		{s.userSearchFilter(`a\2a`), `(uid=a\5c2a)`},
		{s.userSearchFilter("{dn}"), `(uid={dn})`},
		{s.groupSearchFilter("{dn}", "uid=a*,dc=org"), `(|(member=uid=a\2a,dc=org)(memberUid={dn}))`},
		{s.groupSearchFilter("é", "uid=é,dc=org"), `(|(member=uid=\c3\a9,dc=org)(memberUid=\c3\a9))`},
		{s.userDN("a,b+c"), `uid=a\,b\+c,ou=people,dc=org`},
		{s.userDN("x,ou=admins"), `uid=x\,ou=admins,ou=people,dc=org`},
		{s.userDN("#x "), `uid=\#x\ ,ou=people,dc=org`},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

func TestRefuse(t *testing.T) {
	for _, tc := range []struct {
		user, password string
		refused        bool
	}{
		{"alice", "pw", false},
		{"o(b)*n", "pw", false},
		{"", "pw", true},
		{"alice", "", true},
		{strings.Repeat("a", 257), "pw", true},
		{"alice", strings.Repeat("p", 1025), true},
		{"al\x00ice", "pw", true},
		{"alice\r\n", "pw", true},
		{"\xff", "pw", true},
	} {
		if got := refuse(tc.user, tc.password) != ""; got != tc.refused {
			t.Errorf("refuse(%q, %d bytes) = %v, want %v", tc.user, len(tc.password), got, tc.refused)
		}
	}
}

// TestConfigThroughHost: config errors reach the host with the attribute's
// path, as `dls validate` reports them.
func TestConfigThroughHost(t *testing.T) {
	h := plugintest.Start(t, New(), plugintest.WithoutConfigure())
	errs, err := h.Configure(map[string]any{"url": "http://dir.example.org", "user_filter": "(cn=admin)"})
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{}
	for _, e := range errs {
		paths = append(paths, e.Path)
	}
	if want := []string{"url", "user_base", "user_filter"}; !slices.Equal(paths, want) {
		t.Errorf("errors at %v (%v), want at %v", paths, errs, want)
	}
}
