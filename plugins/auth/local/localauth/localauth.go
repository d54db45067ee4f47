// Package localauth is the "local" auth plugin: DLS's own users, kept in a
// JSON file under the plugin's data directory, with argon2id password
// hashes in the PHC string format. It verifies passwords for the host and
// offers user administration (auth.UserAdmin), which `dls user add` uses
// by launching the plugin with nothing but its data directory.
//
// The file is written atomically (temporary file, fsync, rename) with mode
// 0600 under a lock file, so the host's instance and a CLI's instance of
// the plugin can change it at the same time; each Verify checks the file's
// identity (inode, size, mtime) and rereads it when it changed.
package localauth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
	"github.com/dls-project/dls/sdk/metrics"
	"github.com/hashicorp/go-hclog"
)

// Version is the plugin's own version, reported in Info.
const Version = "0.1.0"

// DefaultFile is the users file's name when the config does not say:
// relative to the plugin's data directory.
const DefaultFile = "users.json"

// maxConcurrentHashes bounds the argon2id hashes computed at once, and so
// the memory they take (each allocates hash_memory_kib): a burst of login
// attempts queues instead of exhausting memory.
const maxConcurrentHashes = 4

// Config is the plugin's config {} block.
type Config struct {
	File              string `hcl:"file,optional" doc:"users file; relative paths are under the plugin's data dir"`
	MinPasswordLength int    `hcl:"min_password_length,optional" doc:"minimum length of new passwords, in characters (8 to 1024)"`
	HashMemoryKiB     int    `hcl:"hash_memory_kib,optional" doc:"argon2id memory for new hashes, in KiB (m); existing hashes keep their own"`
	HashIterations    int    `hcl:"hash_iterations,optional" doc:"argon2id passes for new hashes (t)"`
	HashParallelism   int    `hcl:"hash_parallelism,optional" doc:"argon2id lanes for new hashes (p)"`
}

// Plugin is the local auth plugin. Create it with New; the host configures
// it before any other call.
type Plugin struct {
	metrics *instruments
	slots   chan struct{} // one per hash being computed

	mu     sync.RWMutex
	st     *state
	logger hclog.Logger
}

// state is what Configure sets up; replaced as a whole on reconfiguration.
type state struct {
	file   *usersFile
	params Params
	minLen int
	// dummy is hashed with the configured parameters: Verify compares
	// against it when the user does not exist, so that an unknown user
	// costs the same time as a wrong password.
	dummy Hash
}

var (
	_ auth.Auth            = (*Plugin)(nil)
	_ auth.UserAdmin       = (*Plugin)(nil)
	_ base.MetricsDeclarer = (*Plugin)(nil)
	_ base.HealthChecker   = (*Plugin)(nil)
)

// New returns an unconfigured plugin.
func New() *Plugin {
	p := &Plugin{
		metrics: newInstruments(),
		slots:   make(chan struct{}, maxConcurrentHashes),
		logger:  hclog.NewNullLogger(),
	}
	p.metrics.reg.OnCollect(func() {
		if st, err := p.state(); err == nil {
			if users, err := st.file.current(); err == nil {
				p.metrics.users.Set(float64(len(users)))
			}
		}
	})
	return p
}

// Info implements base.Plugin.
func (p *Plugin) Info() base.Info { return base.Info{Type: "local", Version: Version} }

// NewConfig implements base.Plugin: a Config with its defaults.
func (p *Plugin) NewConfig() any {
	return &Config{
		File:              DefaultFile,
		MinPasswordLength: DefaultMinPasswordLength,
		HashMemoryKiB:     int(DefaultParams.Memory),
		HashIterations:    int(DefaultParams.Iterations),
		HashParallelism:   int(DefaultParams.Parallelism),
	}
}

// Metrics implements base.MetricsDeclarer.
func (p *Plugin) Metrics() *metrics.Registry { return p.metrics.reg }

// Configure implements base.Plugin. It reads the users file (a missing
// file is an empty one: the first `dls user add` creates it).
func (p *Plugin) Configure(_ context.Context, req base.ConfigureRequest) error {
	cfg, err := config.As[*Config](req.Config)
	if err != nil {
		return err
	}
	logger := req.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	var errs config.Errors
	path := cfg.File
	switch {
	case strings.TrimSpace(path) == "":
		errs.Add(config.Errorf("file", "must not be empty"))
	case !filepath.IsAbs(path) && req.DataDir == "":
		errs.Add(config.Errorf("file", "relative path %q needs the plugin's data directory, and the host gave none; use an absolute path", path))
	case !filepath.IsAbs(path):
		path = filepath.Join(req.DataDir, path)
	}
	if cfg.MinPasswordLength < 8 || cfg.MinPasswordLength > maxPasswordBytes {
		errs.Add(config.Errorf("min_password_length", "%d: must be from 8 to %d", cfg.MinPasswordLength, maxPasswordBytes))
	}
	if cfg.HashParallelism < 1 || cfg.HashParallelism > 255 {
		errs.Add(config.Errorf("hash_parallelism", "%d: must be from 1 to 255", cfg.HashParallelism))
	}
	if cfg.HashIterations < 1 || cfg.HashIterations > maxIterations {
		errs.Add(config.Errorf("hash_iterations", "%d: must be from 1 to %d", cfg.HashIterations, maxIterations))
	}
	if cfg.HashMemoryKiB < 8*max(cfg.HashParallelism, 1) || cfg.HashMemoryKiB > maxMemory {
		errs.Add(config.Errorf("hash_memory_kib", "%d: must be from 8 KiB per lane (%d) to %d", cfg.HashMemoryKiB, 8*max(cfg.HashParallelism, 1), maxMemory))
	}
	if err := errs.Err(); err != nil {
		return err
	}
	params := Params{Memory: uint32(cfg.HashMemoryKiB), Iterations: uint32(cfg.HashIterations), Parallelism: uint8(cfg.HashParallelism)}
	if params.weak() {
		logger.Warn("argon2id parameters are weaker than OWASP's minimum (e.g. m=19456 KiB, t=2); use them only for tests", "params", params.String())
	}
	path = filepath.Clean(path)

	file, err := openUsersFile(path, logger)
	if err != nil {
		return config.Errorf("file", "%v", err)
	}
	// The dummy's password is random and thrown away: nothing matches it.
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("read random bytes: %w", err)
	}
	dummy, err := NewHash(string(secret), params)
	if err != nil {
		return config.Errorf("", "%v", err)
	}
	users, _ := file.current()
	p.metrics.users.Set(float64(len(users)))

	p.mu.Lock()
	defer p.mu.Unlock()
	p.logger = logger
	p.st = &state{file: file, params: params, minLen: cfg.MinPasswordLength, dummy: dummy}
	logger.Info("users file loaded", "file", path, "users", len(users), "params", params.String())
	return nil
}

// state returns the configured state.
func (p *Plugin) state() (*state, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.st == nil {
		return nil, errors.New("local auth is not configured")
	}
	return p.st, nil
}

func (p *Plugin) log() hclog.Logger {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.logger
}

// hash runs fn while holding one of the hash slots, waiting for one as
// long as ctx allows.
func (p *Plugin) hash(ctx context.Context, fn func()) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait to compute a password hash: %w", ctx.Err())
	}
	defer func() { <-p.slots }()
	fn()
	return nil
}

// Verify implements auth.Auth. A wrong password, an unknown user, an
// empty password and a name that cannot exist all return the same error,
// wrapping auth.ErrInvalidCredentials, after the same work: one argon2id
// hash (for an unknown user, of a dummy hashed with the configured
// parameters).
func (p *Plugin) Verify(ctx context.Context, username, password string) (id auth.Identity, err error) {
	start := time.Now()
	result := resultError
	defer func() { p.metrics.observe(result, start) }()

	st, err := p.state()
	if err != nil {
		return auth.Identity{}, err
	}
	users, err := st.file.current()
	if err != nil {
		p.log().Error("cannot verify: users file unreadable", "error", err)
		return auth.Identity{}, fmt.Errorf("verify user %q: %w", username, err)
	}
	u, known := users[username]
	hash, reason := u.hash, ""
	switch {
	case !known:
		hash, reason = st.dummy, "unknown user"
	case password == "":
		reason = "empty password"
	case len(password) > maxPasswordBytes:
		reason = "password too long"
	}
	// Hash at most maxPasswordBytes of what was sent: the work does not
	// depend on what the caller sends.
	var cmp error
	if err := p.hash(ctx, func() { cmp = hash.Compare(password[:min(len(password), maxPasswordBytes)]) }); err != nil {
		return auth.Identity{}, fmt.Errorf("verify user %q: %w", username, err)
	}
	if reason == "" && cmp != nil {
		reason = "wrong password"
	}
	if reason != "" {
		result = resultInvalid
		// Debug only: a user name field sometimes holds a mistyped password.
		p.log().Debug("login refused", "user", username, "reason", reason)
		return auth.Identity{}, fmt.Errorf("verify user %q: %w", username, auth.ErrInvalidCredentials)
	}
	result = resultOK
	return auth.Identity{Username: u.name, Groups: slices.Clone(u.groups)}, nil
}

// Lookup implements auth.Auth: the user's current groups, read from the
// users file (reread when it changed, so a `dls user delete` or a group
// change by another instance counts at once). The file has no notion of a
// disabled user: deleting one is how access ends. An unknown user answers
// an error wrapping auth.ErrUserNotFound; no hash is computed.
func (p *Plugin) Lookup(_ context.Context, username string) (auth.Identity, error) {
	st, err := p.state()
	if err != nil {
		return auth.Identity{}, err
	}
	users, err := st.file.current()
	if err != nil {
		p.log().Error("cannot look up a user: users file unreadable", "error", err)
		return auth.Identity{}, fmt.Errorf("look up user %q: %w", username, err)
	}
	u, ok := users[username]
	if !ok {
		return auth.Identity{}, fmt.Errorf("look up user %q: %w", username, auth.ErrUserNotFound)
	}
	return auth.Identity{Username: u.name, Groups: slices.Clone(u.groups)}, nil
}

// CreateUser implements auth.UserAdmin. groups are the user's groups, which
// the host maps to roles (admin, operator, viewer).
func (p *Plugin) CreateUser(ctx context.Context, username, password string, groups []string) error {
	st, err := p.state()
	if err != nil {
		return err
	}
	if err := checkName(username); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	if err := checkPassword(username, password, st.minLen); err != nil {
		return fmt.Errorf("create user %q: %w", username, err)
	}
	groups, err = cleanGroups(groups)
	if err != nil {
		return fmt.Errorf("create user %q: %w", username, err)
	}
	// Refuse an existing name before spending a hash on it; update checks
	// again under the lock.
	if users, err := st.file.current(); err == nil {
		if _, exists := users[username]; exists {
			return fmt.Errorf("create user %q: %w", username, auth.ErrUserExists)
		}
	}
	h, err := p.newHash(ctx, st, password)
	if err != nil {
		return fmt.Errorf("create user %q: %w", username, err)
	}
	err = st.file.update(func(users userSet) error {
		if _, exists := users[username]; exists {
			return auth.ErrUserExists
		}
		now := time.Now().UTC()
		users[username] = user{name: username, hash: h, groups: groups, created: now, updated: now}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create user %q: %w", username, err)
	}
	p.log().Info("user created", "user", username, "groups", groups)
	return nil
}

// SetPassword implements auth.UserAdmin.
func (p *Plugin) SetPassword(ctx context.Context, username, password string) error {
	st, err := p.state()
	if err != nil {
		return err
	}
	if checkName(username) != nil {
		return fmt.Errorf("set password of user %q: %w", username, auth.ErrUserNotFound)
	}
	if err := checkPassword(username, password, st.minLen); err != nil {
		return fmt.Errorf("set password of user %q: %w", username, err)
	}
	h, err := p.newHash(ctx, st, password)
	if err != nil {
		return fmt.Errorf("set password of user %q: %w", username, err)
	}
	err = st.file.update(func(users userSet) error {
		u, ok := users[username]
		if !ok {
			return auth.ErrUserNotFound
		}
		u.hash, u.updated = h, time.Now().UTC()
		users[username] = u
		return nil
	})
	if err != nil {
		return fmt.Errorf("set password of user %q: %w", username, err)
	}
	p.log().Info("password changed", "user", username)
	return nil
}

// DeleteUser implements auth.UserAdmin.
func (p *Plugin) DeleteUser(_ context.Context, username string) error {
	st, err := p.state()
	if err != nil {
		return err
	}
	err = st.file.update(func(users userSet) error {
		if _, ok := users[username]; !ok {
			return auth.ErrUserNotFound
		}
		delete(users, username)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete user %q: %w", username, err)
	}
	p.log().Info("user deleted", "user", username)
	return nil
}

// ListUsers implements auth.UserAdmin: every user with their groups,
// sorted by name.
func (p *Plugin) ListUsers(context.Context) ([]auth.Identity, error) {
	st, err := p.state()
	if err != nil {
		return nil, err
	}
	users, err := st.file.current()
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	out := make([]auth.Identity, 0, len(users))
	for _, u := range users {
		out = append(out, auth.Identity{Username: u.name, Groups: slices.Clone(u.groups)})
	}
	slices.SortFunc(out, func(a, b auth.Identity) int { return strings.Compare(a.Username, b.Username) })
	return out, nil
}

// Health implements base.HealthChecker: the users file must be readable
// and valid.
func (p *Plugin) Health(context.Context) error {
	st, err := p.state()
	if err != nil {
		return err
	}
	_, err = st.file.current()
	return err
}

// newHash hashes a new password with the configured parameters.
func (p *Plugin) newHash(ctx context.Context, st *state, password string) (Hash, error) {
	var h Hash
	var herr error
	if err := p.hash(ctx, func() { h, herr = NewHash(password, st.params) }); err != nil {
		return Hash{}, err
	}
	return h, herr
}
