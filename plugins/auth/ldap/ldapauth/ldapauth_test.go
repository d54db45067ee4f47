//go:build linux

// These tests run the plugin against a real OpenLDAP server (slapd, started
// by the test on loopback; skipped when slapd is missing, except in CI).

package ldapauth_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/internal/slapdtest"
	"github.com/dls-project/dls/plugins/auth/ldap/ldapauth"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/plugintest"
	"github.com/go-ldap/ldap/v3"
)

// searchConfig finds users with the service account.
func searchConfig(s *slapdtest.Server) map[string]any {
	return map[string]any{
		"url":           s.URL,
		"bind_dn":       serviceDN,
		"bind_password": servicePW,
		"user_base":     peopleDN,
		"group_base":    groupsDN,
	}
}

func with(cfg map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range cfg {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

func startPlugin(t *testing.T, cfg map[string]any) (*plugintest.Harness, *plugintest.AuthClient) {
	t.Helper()
	h := plugintest.Start(t, ldapauth.New(), plugintest.WithConfig(cfg))
	return h, h.Auth()
}

func wantValid(t *testing.T, c *plugintest.AuthClient, name, password, wantName string, groups ...string) {
	t.Helper()
	id, err := c.Verify(context.Background(), name, password)
	if err != nil {
		t.Fatalf("Verify(%q): %v", name, err)
	}
	if groups == nil {
		groups = []string{}
	}
	if id.Username != wantName || !slices.Equal(id.Groups, groups) && !(len(id.Groups) == 0 && len(groups) == 0) {
		t.Errorf("Verify(%q) = %+v, want user %q in groups %q", name, id, wantName, groups)
	}
}

func wantInvalid(t *testing.T, c *plugintest.AuthClient, name, password string) {
	t.Helper()
	id, err := c.Verify(context.Background(), name, password)
	if !errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Verify(%q, %q) = %+v, %v; want ErrInvalidCredentials", name, password, id, err)
	}
}

// wantFailure: the plugin could not tell, which is not invalid credentials.
func wantFailure(t *testing.T, c *plugintest.AuthClient, name, password, contains string) {
	t.Helper()
	_, err := c.Verify(context.Background(), name, password)
	if err == nil || errors.Is(err, auth.ErrInvalidCredentials) || !strings.Contains(err.Error(), contains) {
		t.Errorf("Verify(%q) = %v; want an error (not invalid credentials) containing %q", name, err, contains)
	}
}

func TestSearchWithServiceAccount(t *testing.T) {
	s := startSlapd(t)
	h, c := startPlugin(t, searchConfig(s))
	if h.Info.Type != "ldap" || slices.Contains(h.Info.Capabilities, auth.CapabilityUserAdmin) {
		t.Errorf("info = %+v", h.Info)
	}

	wantValid(t, c, "alice", "alice-password", "alice", "admins", "ops")
	wantValid(t, c, "bob", "bob-password", "bob", "ops")
	wantValid(t, c, "carol", "carol-password", "carol")
	wantValid(t, c, "x,y+z", "comma-password", "x,y+z")
	wantValid(t, c, "o(b)*n", "paren-password", "o(b)*n", "ops")
	// The directory matches names without case; DLS gets its spelling,
	// and memberUid (case-exact) still finds the group.
	wantValid(t, c, "ALICE", "alice-password", "alice", "admins", "ops")

	wantInvalid(t, c, "alice", "bob-password")
	wantInvalid(t, c, "alice", "alice-passwor")
	wantInvalid(t, c, "mallory", "alice-password")
	wantInvalid(t, c, "dls", servicePW) // the service account is not under user_base
	wantInvalid(t, c, "alice", "")
	wantInvalid(t, c, "", "alice-password")

	if err := h.Base.Health(context.Background()); err != nil {
		t.Errorf("Health: %v", err)
	}
	if err := c.CreateUser(context.Background(), "dave", "dave-password-1", nil); err == nil {
		t.Error("CreateUser: the ldap plugin administers no users, but it succeeded")
	}
}

func TestDirectBindTemplate(t *testing.T) {
	s := startSlapd(t)
	_, c := startPlugin(t, map[string]any{
		"url":              s.URL,
		"user_dn_template": "uid={username}," + peopleDN,
		"group_base":       groupsDN,
	})
	wantValid(t, c, "alice", "alice-password", "alice", "admins", "ops")
	wantValid(t, c, "x,y+z", "comma-password", "x,y+z")
	wantValid(t, c, "Bob", "bob-password", "bob", "ops")
	wantInvalid(t, c, "alice", "wrong-password")
	wantInvalid(t, c, "mallory", "alice-password")
	wantInvalid(t, c, "alice", "")
	// A name that would change the DN if it were not escaped.
	wantInvalid(t, c, "alice,ou=people", "alice-password")
	wantInvalid(t, c, "cn=admin,dc=dls,dc=test", rootPW)
}

func TestAnonymousSearch(t *testing.T) {
	s := startSlapd(t)
	_, c := startPlugin(t, with(searchConfig(s), "bind_dn", nil, "bind_password", nil, "username_attr", ""))
	wantValid(t, c, "alice", "alice-password", "alice", "admins", "ops")
	// Without username_attr the name is reported as typed.
	wantValid(t, c, "Bob", "bob-password", "Bob")
	wantInvalid(t, c, "bob", "alice-password")
}

// TestFilterInjection: user names with filter syntax are matched
// literally. "alic*" would find alice if it reached the filter unescaped.
func TestFilterInjection(t *testing.T) {
	s := startSlapd(t)
	_, c := startPlugin(t, searchConfig(s))
	for _, name := range []string{
		"*",
		"alic*",
		"*lice",
		"alice)(uid=*",
		"alice)(|(uid=*)",
		"*)(uid=*))(|(uid=*",
		`alice\`,
		`alic\65`,
		"alice\x00",
		"alice\n",
	} {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			wantInvalid(t, c, name, "alice-password")
		})
	}
	// A group filter with {username} gets the escaped name too: "o(b)*n"
	// is in ops by memberUid, and only in ops.
	wantValid(t, c, "o(b)*n", "paren-password", "o(b)*n", "ops")
}

// TestEmptyPasswordNeverSent: an empty password is refused before the
// plugin even connects (here: to a port where nothing listens).
func TestEmptyPasswordNeverSent(t *testing.T) {
	_, c := startPlugin(t, map[string]any{
		"url":              fmt.Sprintf("ldap://127.0.0.1:%d", slapdtest.FreePort(t)),
		"user_dn_template": "uid={username}," + peopleDN,
	})
	wantInvalid(t, c, "alice", "")
	wantFailure(t, c, "alice", "alice-password", "connect")
}

func TestServerDown(t *testing.T) {
	s := startSlapd(t)
	h, c := startPlugin(t, searchConfig(s))
	wantValid(t, c, "alice", "alice-password", "alice", "admins", "ops")
	s.Stop()
	wantFailure(t, c, "alice", "alice-password", "connect to "+s.URL)
	wantFailure(t, c, "mallory", "whatever", "connection refused")
	if err := h.Base.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "connect") {
		t.Errorf("Health with the server down: %v", err)
	}
	if got := h.MetricValue(t, "dls_auth_plugin_verifications_total", "error"); got != 2 {
		t.Errorf("verifications{error} = %v, want 2", got)
	}
}

// TestMisconfigured: a wrong service password or a missing base is the
// admin's problem, not a failed login.
func TestMisconfigured(t *testing.T) {
	s := startSlapd(t)
	h, c := startPlugin(t, with(searchConfig(s), "bind_password", "not-the-password"))
	wantFailure(t, c, "alice", "alice-password", "bind as service account")
	if err := h.Base.Health(context.Background()); err == nil || !strings.Contains(err.Error(), "service account") {
		t.Errorf("Health with a wrong service password: %v", err)
	}
	_, c = startPlugin(t, with(searchConfig(s), "user_base", "ou=nowhere,"+baseDN))
	wantFailure(t, c, "alice", "alice-password", "search user")
	_, c = startPlugin(t, with(searchConfig(s), "group_base", "ou=nowhere,"+baseDN))
	wantFailure(t, c, "alice", "alice-password", "search groups")
	// A filter matching several entries finds no single user.
	_, c = startPlugin(t, with(searchConfig(s), "user_filter", "(|(uid={username})(objectClass=inetOrgPerson))"))
	wantInvalid(t, c, "alice", "alice-password")
	// No group base: no groups.
	_, c = startPlugin(t, with(searchConfig(s), "group_base", nil))
	wantValid(t, c, "alice", "alice-password", "alice")
}

func TestTLS(t *testing.T) {
	s := startSlapd(t)
	_, c := startPlugin(t, with(searchConfig(s), "url", s.LDAPSURL, "ca_file", s.CAFile))
	wantValid(t, c, "alice", "alice-password", "alice", "admins", "ops")
	wantInvalid(t, c, "alice", "bob-password")

	_, c = startPlugin(t, with(searchConfig(s), "start_tls", true, "ca_file", s.CAFile))
	wantValid(t, c, "bob", "bob-password", "bob", "ops")

	// The system's CAs do not know the test CA.
	_, c = startPlugin(t, with(searchConfig(s), "url", s.LDAPSURL))
	wantFailure(t, c, "alice", "alice-password", "certificate")
	_, c = startPlugin(t, with(searchConfig(s), "start_tls", true))
	wantFailure(t, c, "alice", "alice-password", "StartTLS")
}

// TestTimeout: a server that accepts and never answers fails the login
// after timeout, and a caller's deadline ends it sooner.
func TestTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	cfg := map[string]any{
		"url": "ldap://" + l.Addr().String(), "user_dn_template": "uid={username}," + peopleDN, "timeout": "300ms",
	}
	_, c := startPlugin(t, cfg)
	start := time.Now()
	wantFailure(t, c, "alice", "alice-password", "timed out")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timed out after %v, want about 300ms", d)
	}

	_, c = startPlugin(t, with(cfg, "timeout", "1m"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := c.Verify(ctx, "alice", "alice-password"); err == nil || errors.Is(err, auth.ErrInvalidCredentials) {
		t.Errorf("Verify with a deadline: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the caller's deadline did not end the login: %v", d)
	}
}

func TestConcurrentVerify(t *testing.T) {
	s := startSlapd(t)
	_, c := startPlugin(t, searchConfig(s))
	var wg sync.WaitGroup
	fail := make(chan string, 100)
	for i := range 20 {
		wg.Go(func() {
			id, err := c.Verify(context.Background(), "alice", "alice-password")
			if err != nil || !slices.Equal(id.Groups, []string{"admins", "ops"}) {
				fail <- fmt.Sprintf("alice %d: %+v, %v", i, id, err)
			}
		})
		wg.Go(func() {
			if _, err := c.Verify(context.Background(), "bob", "nope"); !errors.Is(err, auth.ErrInvalidCredentials) {
				fail <- fmt.Sprintf("bob %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	close(fail)
	for f := range fail {
		t.Error(f)
	}
}

func TestMetrics(t *testing.T) {
	s := startSlapd(t)
	h, c := startPlugin(t, searchConfig(s))
	wantValid(t, c, "alice", "alice-password", "alice", "admins", "ops")
	wantInvalid(t, c, "alice", "x")
	wantInvalid(t, c, "nobody", "x")
	for result, want := range map[string]float64{"ok": 1, "invalid": 2, "error": 0} {
		if got := h.MetricValue(t, "dls_auth_plugin_verifications_total", result); got != want {
			t.Errorf("verifications{%s} = %v, want %v", result, got, want)
		}
	}
	if smp, ok := h.MetricSample(t, "dls_auth_plugin_verify_duration_seconds"); !ok || smp.Count != 3 {
		t.Errorf("verify duration: %+v, %v", smp, ok)
	}
}

// TestReconfigure: a reload switches to the new settings.
func TestReconfigure(t *testing.T) {
	s := startSlapd(t)
	h, c := startPlugin(t, searchConfig(s))
	wantValid(t, c, "alice", "alice-password", "alice", "admins", "ops")
	errs, err := h.Configure(with(searchConfig(s), "group_filter", "(member={dn})"))
	if err != nil || len(errs) > 0 {
		t.Fatalf("reconfigure: %v %v", errs, err)
	}
	wantValid(t, c, "alice", "alice-password", "alice", "admins")
}

// TestLookup: the directory as it is now decides. A user removed from a
// group loses it, one the user filter no longer matches (here: disabled
// by a description the filter excludes) and one deleted are not found, and
// a directory that is down is a failure, not "not found".
func TestLookup(t *testing.T) {
	s := startSlapd(t)
	ctx := context.Background()
	_, c := startPlugin(t, with(searchConfig(s), "user_filter", "(&(uid={username})(!(description=disabled)))"))
	_, direct := startPlugin(t, map[string]any{
		"url":              s.URL,
		"user_dn_template": "uid={username}," + peopleDN,
		"group_base":       groupsDN,
	})
	wantLookup := func(c *plugintest.AuthClient, name, wantName string, groups ...string) {
		t.Helper()
		id, err := c.Lookup(ctx, name)
		if err != nil || id.Username != wantName || !slices.Equal(id.Groups, groups) {
			t.Errorf("Lookup(%q) = %+v, %v; want %s in %q", name, id, err, wantName, groups)
		}
	}
	wantNotFound := func(c *plugintest.AuthClient, name string) {
		t.Helper()
		if id, err := c.Lookup(ctx, name); !errors.Is(err, auth.ErrUserNotFound) {
			t.Errorf("Lookup(%q) = %+v, %v; want ErrUserNotFound", name, id, err)
		}
	}
	modify := func(dn string, fn func(*ldap.ModifyRequest)) {
		t.Helper()
		conn := s.DialRoot(t)
		defer conn.Close()
		req := ldap.NewModifyRequest(dn, nil)
		fn(req)
		if err := conn.Modify(req); err != nil {
			t.Fatalf("modify %s: %v", dn, err)
		}
	}

	for _, cl := range []*plugintest.AuthClient{c, direct} {
		wantLookup(cl, "alice", "alice", "admins", "ops")
		wantLookup(cl, "carol", "carol")
		wantNotFound(cl, "mallory")
		wantNotFound(cl, "")
		wantNotFound(cl, "alic*")
	}
	wantLookup(c, "ALICE", "alice", "admins", "ops")

	// Demoted: alice leaves admins (a groupOfNames needs a member left).
	modify(slapdtest.GroupDN("admins"), func(r *ldap.ModifyRequest) {
		r.Add("member", []string{slapdtest.RootDN})
		r.Delete("member", []string{slapdtest.UserDN("alice")})
	})
	wantLookup(c, "alice", "alice", "ops")
	wantLookup(direct, "alice", "alice", "ops")

	// Disabled: the user filter no longer matches bob.
	wantLookup(c, "bob", "bob", "ops")
	modify(slapdtest.UserDN("bob"), func(r *ldap.ModifyRequest) { r.Add("description", []string{"disabled"}) })
	wantNotFound(c, "bob")

	// Deleted.
	conn := s.DialRoot(t)
	if err := conn.Del(ldap.NewDelRequest(slapdtest.UserDN("carol"), nil)); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	wantNotFound(c, "carol")
	wantNotFound(direct, "carol")

	s.Stop()
	for _, cl := range []*plugintest.AuthClient{c, direct} {
		if _, err := cl.Lookup(ctx, "alice"); err == nil || errors.Is(err, auth.ErrUserNotFound) {
			t.Errorf("Lookup with the directory down = %v; want a failure other than ErrUserNotFound", err)
		}
	}
}
