package ldapauth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dls-project/dls/sdk/config"
	"github.com/go-ldap/ldap/v3"
)

// Defaults of the config attributes.
const (
	DefaultUserFilter   = "(uid={username})"
	DefaultGroupFilter  = "(|(member={dn})(memberUid={username}))"
	DefaultGroupAttr    = "cn"
	DefaultUsernameAttr = "uid"
	DefaultTimeout      = 10 * time.Second
)

// Placeholders in filters and the DN template.
const (
	phUsername = "{username}"
	phDN       = "{dn}"
)

// maxTimeout bounds the timeout attribute.
const maxTimeout = 5 * time.Minute

// Config is the plugin's config {} block.
type Config struct {
	URL            string        `hcl:"url" doc:"directory server: ldap://host[:port] or ldaps://host[:port]"`
	BindDN         string        `hcl:"bind_dn,optional" doc:"service account that searches users and groups; empty: search anonymously, or bind with user_dn_template"`
	BindPassword   string        `hcl:"bind_password,optional" doc:"the service account's password (use env() rather than writing it in the file)"`
	UserBase       string        `hcl:"user_base,optional" doc:"where users are searched (subtree); required unless user_dn_template is set"`
	UserFilter     string        `hcl:"user_filter,optional" doc:"filter finding a user; {username} is replaced by the escaped user name"`
	UserDNTemplate string        `hcl:"user_dn_template,optional" doc:"bind directly as this DN instead of searching, e.g. uid={username},ou=people,dc=example,dc=org"`
	GroupBase      string        `hcl:"group_base,optional" doc:"where groups are searched (subtree); empty: users get no groups"`
	GroupFilter    string        `hcl:"group_filter,optional" doc:"filter finding a user's groups; {dn} is the user's DN, {username} the user name, both escaped"`
	GroupAttr      string        `hcl:"group_attr,optional" doc:"attribute of a group entry that names it"`
	UsernameAttr   string        `hcl:"username_attr,optional" doc:"attribute of the user's entry holding the user name DLS reports and puts in group_filter's {username} (the directory's spelling); empty: the name as typed"`
	StartTLS       bool          `hcl:"start_tls,optional" doc:"upgrade an ldap:// connection with StartTLS before binding"`
	CAFile         string        `hcl:"ca_file,optional" doc:"PEM file of the CAs that sign the server's certificate (default: the system's); relative paths are under the plugin's data dir"`
	Timeout        time.Duration `hcl:"timeout,optional" doc:"bound on connecting and on each LDAP operation"`
}

// settings is a checked Config, ready to use.
type settings struct {
	url        *url.URL
	address    string // host:port
	ldaps      bool
	startTLS   bool
	tls        *tls.Config // nil for plain ldap://
	bindDN     string
	bindPass   string
	userBase   string
	userFilter string
	dnTemplate string
	groupBase  string
	groupFilt  string
	groupAttr  string
	nameAttr   string
	timeout    time.Duration
}

// check turns cfg into settings, or returns every problem as config errors.
func check(cfg *Config, dataDir string) (*settings, error) {
	var errs config.Errors
	s := &settings{
		startTLS: cfg.StartTLS, bindDN: cfg.BindDN, bindPass: cfg.BindPassword,
		userBase: cfg.UserBase, userFilter: cfg.UserFilter, dnTemplate: cfg.UserDNTemplate,
		groupBase: cfg.GroupBase, groupFilt: cfg.GroupFilter, groupAttr: cfg.GroupAttr,
		nameAttr: cfg.UsernameAttr, timeout: cfg.Timeout,
	}

	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil:
		errs.Add(config.Errorf("url", "%v", err))
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		errs.Add(config.Errorf("url", "%q: want ldap://host[:port] or ldaps://host[:port]", cfg.URL))
	case u.Hostname() == "":
		errs.Add(config.Errorf("url", "%q: no host", cfg.URL))
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		errs.Add(config.Errorf("url", "%q: only scheme, host and port are used; set the base and filters in their own attributes", cfg.URL))
	default:
		s.url, s.ldaps = u, u.Scheme == "ldaps"
		port := u.Port()
		if port == "" {
			port = map[bool]string{false: "389", true: "636"}[s.ldaps]
		}
		s.address = net.JoinHostPort(u.Hostname(), port)
	}
	if cfg.StartTLS && s.ldaps {
		errs.Add(config.Errorf("start_tls", "ldaps:// is TLS already; start_tls is for ldap://"))
	}
	if s.url != nil && (s.ldaps || s.startTLS) {
		s.tls = &tls.Config{ServerName: s.url.Hostname(), MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pool, err := loadCAs(cfg.CAFile, dataDir)
			if err != nil {
				errs.Add(config.Errorf("ca_file", "%v", err))
			}
			s.tls.RootCAs = pool
		}
	} else if cfg.CAFile != "" && s.url != nil {
		errs.Add(config.Errorf("ca_file", "is used only with ldaps:// or start_tls = true"))
	}

	switch {
	case cfg.BindDN != "" && cfg.BindPassword == "":
		// An empty password is an unauthenticated bind (RFC 4513 5.1.2):
		// it "succeeds" without proving anything.
		errs.Add(config.Errorf("bind_password", "bind_dn is set, so a password is needed (an empty one is an unauthenticated bind)"))
	case cfg.BindDN == "" && cfg.BindPassword != "":
		errs.Add(config.Errorf("bind_dn", "bind_password is set without bind_dn"))
	}
	if cfg.BindDN != "" {
		if _, err := ldap.ParseDN(cfg.BindDN); err != nil {
			errs.Add(config.Errorf("bind_dn", "%v", err))
		}
	}

	if cfg.UserDNTemplate != "" {
		if !strings.Contains(cfg.UserDNTemplate, phUsername) {
			errs.Add(config.Errorf("user_dn_template", "must contain %s", phUsername))
		} else if _, err := ldap.ParseDN(strings.ReplaceAll(cfg.UserDNTemplate, phUsername, "x")); err != nil {
			errs.Add(config.Errorf("user_dn_template", "not a DN: %v", err))
		}
	} else {
		if cfg.UserBase == "" {
			errs.Add(config.Errorf("user_base", "required unless user_dn_template is set"))
		} else if _, err := ldap.ParseDN(cfg.UserBase); err != nil {
			errs.Add(config.Errorf("user_base", "%v", err))
		}
		errs.Add(checkFilter("user_filter", cfg.UserFilter, phUsername))
	}
	if cfg.GroupBase != "" {
		if _, err := ldap.ParseDN(cfg.GroupBase); err != nil {
			errs.Add(config.Errorf("group_base", "%v", err))
		}
		errs.Add(checkFilter("group_filter", cfg.GroupFilter, phDN, phUsername))
		if !validAttr(cfg.GroupAttr) {
			errs.Add(config.Errorf("group_attr", "%q is not an attribute name", cfg.GroupAttr))
		}
	}
	if cfg.UsernameAttr != "" && !validAttr(cfg.UsernameAttr) {
		errs.Add(config.Errorf("username_attr", "%q is not an attribute name", cfg.UsernameAttr))
	}
	if cfg.Timeout <= 0 || cfg.Timeout > maxTimeout {
		errs.Add(config.Errorf("timeout", "%s: must be more than 0 and at most %s", cfg.Timeout, maxTimeout))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// validAttr reports whether s is an attribute description: a name or an
// OID, with options ("cn;lang-en").
func validAttr(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == ';':
		default:
			return false
		}
	}
	return true
}

// checkFilter checks that filter uses one of the placeholders and is a
// valid filter once they are replaced.
func checkFilter(attr, filter string, placeholders ...string) error {
	used := false
	pairs := make([]string, 0, 2*len(placeholders))
	for _, ph := range placeholders {
		used = used || strings.Contains(filter, ph)
		pairs = append(pairs, ph, "x")
	}
	if !used {
		return config.Errorf(attr, "%q must contain %s", filter, strings.Join(placeholders, " or "))
	}
	if _, err := ldap.CompileFilter(strings.NewReplacer(pairs...).Replace(filter)); err != nil {
		return config.Errorf(attr, "%q is not a valid LDAP filter: %v", filter, err)
	}
	return nil
}

// loadCAs reads a PEM file of CA certificates.
func loadCAs(path, dataDir string) (*x509.CertPool, error) {
	if !filepath.IsAbs(path) {
		if dataDir == "" {
			return nil, fmt.Errorf("relative path %q needs the plugin's data directory, and the host gave none", path)
		}
		path = filepath.Join(dataDir, path)
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// userFilter is the user search filter for username.
func (s *settings) userSearchFilter(username string) string {
	return strings.NewReplacer(phUsername, ldap.EscapeFilter(username)).Replace(s.userFilter)
}

// groupSearchFilter is the group search filter for a user. A single pass
// of the replacer: a user name containing "{dn}" stays text.
func (s *settings) groupSearchFilter(username, dn string) string {
	return strings.NewReplacer(phUsername, ldap.EscapeFilter(username), phDN, ldap.EscapeFilter(dn)).Replace(s.groupFilt)
}

// userDN is the DN to bind as when a template is set.
func (s *settings) userDN(username string) string {
	return strings.NewReplacer(phUsername, ldap.EscapeDN(username)).Replace(s.dnTemplate)
}
