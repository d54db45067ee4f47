// Package ldapauth is the "ldap" auth plugin: it checks admins' passwords
// against an LDAP directory (OpenLDAP, 389-ds, Active Directory) and reads
// their groups there. It finds the user's entry with a service account (or
// anonymously, or builds its DN from a template), binds as that entry with
// the password, and searches the groups naming the user. It owns no users:
// it offers no user administration.
//
// User input never reaches a filter or a DN unescaped (RFC 4515 and RFC
// 4514 escaping), and an empty password is refused before any bind: LDAP
// treats a simple bind with a name and no password as an unauthenticated
// bind, which succeeds without checking anything.
package ldapauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/hashicorp/go-hclog"
)

// Version is the plugin's own version, reported in Info.
const Version = "0.1.0"

// Bounds on what Verify sends to the directory.
const (
	maxUsernameBytes = 256
	maxPasswordBytes = 1024
)

// Plugin is the ldap auth plugin. Create it with New; the host configures
// it before any other call.
type Plugin struct {
	metrics *instruments

	mu     sync.RWMutex
	s      *settings
	logger hclog.Logger
}

var (
	_ auth.Auth            = (*Plugin)(nil)
	_ base.MetricsDeclarer = (*Plugin)(nil)
	_ base.HealthChecker   = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New() *Plugin {
	return &Plugin{metrics: newInstruments(), logger: hclog.NewNullLogger()}
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info { return base.Info{Type: "ldap", Version: Version} }

// NewConfig implements base.Plugin: a Config with its defaults.
func (p *Plugin) NewConfig() any {
	return &Config{
		UserFilter:   DefaultUserFilter,
		GroupFilter:  DefaultGroupFilter,
		GroupAttr:    DefaultGroupAttr,
		UsernameAttr: DefaultUsernameAttr,
		Timeout:      DefaultTimeout,
	}
}

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.metrics.reg }

// Configure implements base.Plugin. It checks the config but does not
// contact the server: a directory that is down at start is reported by
// Health and by each Verify, not by refusing the config.
func (p *Plugin) Configure(_ context.Context, req base.ConfigureRequest) error {
	cfg, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	s, err := check(cfg, req.DataDir)
	if err != nil {
		return err
	}
	logger := req.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if s.tls == nil && !isLoopback(s.url.Hostname()) {
		logger.Warn("passwords are sent to the directory in clear text: use ldaps:// or start_tls = true", "url", s.url.Redacted())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.s, p.logger = s, logger
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// settings returns the configured settings and logger.
func (p *Plugin) settings() (*settings, hclog.Logger, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.s == nil {
		return nil, p.logger, errors.New("ldap auth is not configured")
	}
	return p.s, p.logger, nil
}

// Verify implements auth.Auth: find the user's entry, bind as it with the
// password, read its groups. A wrong password, an unknown user, an empty
// password and a name the filter cannot match all return an error wrapping
// auth.ErrInvalidCredentials; a directory that cannot be reached or
// searched returns another error, so that the host does not count an
// outage as failed logins.
func (p *Plugin) Verify(ctx context.Context, username, password string) (auth.Identity, error) {
	start := time.Now()
	s, logger, err := p.settings()
	if err != nil {
		return auth.Identity{}, err
	}
	id, reason, err := p.verify(ctx, s, username, password)
	switch {
	case reason != "":
		p.metrics.observe(resultInvalid, start)
		// Debug only: a user name field sometimes holds a mistyped password.
		logger.Debug("login refused", "user", username, "reason", reason)
		return auth.Identity{}, fmt.Errorf("verify user %q: %w", username, auth.ErrInvalidCredentials)
	case err != nil:
		p.metrics.observe(resultError, start)
		logger.Warn("cannot verify a login against the directory", "user", username, "error", err)
		return auth.Identity{}, fmt.Errorf("verify user %q: %w", username, err)
	}
	p.metrics.observe(resultOK, start)
	return id, nil
}

// verify does Verify's work. A non-empty reason means invalid credentials
// (and says why, for the log); otherwise err means the check failed.
func (p *Plugin) verify(ctx context.Context, s *settings, username, password string) (id auth.Identity, reason string, err error) {
	if reason := refuse(username, password); reason != "" {
		return auth.Identity{}, reason, nil
	}
	ss, err := connect(ctx, s)
	if err != nil {
		return auth.Identity{}, "", err
	}
	defer ss.close()

	var dn, name string
	if s.dnTemplate != "" {
		dn = s.userDN(username)
	} else {
		if err := ss.bindService(); err != nil {
			return auth.Identity{}, "", err
		}
		dn, name, err = ss.findUser(username)
		if errors.Is(err, errNoUser) {
			return auth.Identity{}, err.Error(), nil
		}
		if err != nil {
			return auth.Identity{}, "", err
		}
	}
	refused, err := ss.bindUser(dn, password)
	if refused {
		return auth.Identity{}, fmt.Sprintf("bind as %q refused: %v", dn, err), nil
	}
	if err != nil {
		return auth.Identity{}, "", err
	}
	if name == "" {
		// Direct bind: read the entry's name as the user, who may read
		// their own entry.
		if name, err = ss.readName(dn, username); err != nil {
			return auth.Identity{}, "", err
		}
	}
	// Groups are searched with the service account where there is one:
	// users often may not read group entries themselves.
	if err := ss.bindService(); err != nil {
		return auth.Identity{}, "", err
	}
	groups, err := ss.groups(name, dn)
	if err != nil {
		return auth.Identity{}, "", err
	}
	return auth.Identity{Username: name, Groups: groups}, "", nil
}

// Lookup implements auth.Auth: find the user's entry with the service
// account (or anonymously) exactly as Verify does, and read its groups.
// The directory decides who is disabled: an entry that user_filter no
// longer matches (deleted, or excluded by a clause such as
// "(&(uid={username})(!(pwdAccountLockedTime=*)))" or Active Directory's
// userAccountControl bit) answers an error wrapping auth.ErrUserNotFound.
// With user_dn_template the entry at the templated DN is read instead
// (with the service account, or anonymously: the directory must let that
// read it); a missing entry is not found. A directory that cannot be reached or
// searched answers another error.
func (p *Plugin) Lookup(ctx context.Context, username string) (auth.Identity, error) {
	s, logger, err := p.settings()
	if err != nil {
		return auth.Identity{}, err
	}
	id, err := p.lookup(ctx, s, username)
	if err != nil && !errors.Is(err, auth.ErrUserNotFound) {
		logger.Warn("cannot look up a user in the directory", "user", username, "error", err)
	}
	return id, err
}

func (p *Plugin) lookup(ctx context.Context, s *settings, username string) (auth.Identity, error) {
	if refuse(username, "x") != "" {
		return auth.Identity{}, fmt.Errorf("look up user %q: %w", username, auth.ErrUserNotFound)
	}
	ss, err := connect(ctx, s)
	if err != nil {
		return auth.Identity{}, fmt.Errorf("look up user %q: %w", username, err)
	}
	defer ss.close()
	if err := ss.bindService(); err != nil {
		return auth.Identity{}, fmt.Errorf("look up user %q: %w", username, err)
	}
	var dn, name string
	if s.dnTemplate != "" {
		dn = s.userDN(username)
		name, err = ss.entryName(dn, username)
	} else {
		dn, name, err = ss.findUser(username)
	}
	if errors.Is(err, errNoUser) {
		return auth.Identity{}, fmt.Errorf("look up user %q: %v: %w", username, err, auth.ErrUserNotFound)
	}
	if err != nil {
		return auth.Identity{}, fmt.Errorf("look up user %q: %w", username, err)
	}
	groups, err := ss.groups(name, dn)
	if err != nil {
		return auth.Identity{}, fmt.Errorf("look up user %q: %w", username, err)
	}
	return auth.Identity{Username: name, Groups: groups}, nil
}

// refuse returns why a login is refused before asking the directory, or
// "". The filter and DN escaping make any name safe; this keeps names no
// directory holds (and empty passwords) away from the server.
func refuse(username, password string) string {
	switch {
	case username == "":
		return "empty user name"
	case len(username) > maxUsernameBytes:
		return "user name too long"
	case !utf8.ValidString(username):
		return "user name is not UTF-8"
	case password == "":
		return "empty password (would be an unauthenticated bind)"
	case len(password) > maxPasswordBytes:
		return "password too long"
	}
	for _, r := range username {
		if unicode.IsControl(r) {
			return "control character in user name"
		}
	}
	return ""
}

// Health implements base.HealthChecker: the server answers, and accepts
// the service account's bind if there is one.
func (p *Plugin) Health(ctx context.Context) error {
	s, _, err := p.settings()
	if err != nil {
		return err
	}
	ss, err := connect(ctx, s)
	if err != nil {
		return err
	}
	defer ss.close()
	if s.bindDN != "" {
		return ss.bindService()
	}
	// No account to bind: a Who Am I? round trip shows the server answers.
	if _, err := ss.conn.WhoAmI(nil); err != nil {
		return fmt.Errorf("directory %s does not answer: %w", s.url.Redacted(), err)
	}
	return nil
}
