// Command dls-auth-static is the smallest DLS auth plugin: the users and
// their passwords are listed in its config block. An example to start from,
// not for production: the passwords sit in dls.hcl in clear text.
package main

import (
	"context"
	"crypto/subtle"
	"fmt"

	"github.com/dls-project/dls/sdk"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/base"
	"github.com/dls-project/dls/sdk/config"
)

// Config is the plugin's config {} block.
type Config struct {
	Users map[string]string `hcl:"users" doc:"each user's password"`
	Group string            `hcl:"group,optional" doc:"every user's group, which the host maps to a role"`
}

func (c *Config) SetDefaults() { c.Group = "viewer" }

func (c *Config) Validate() error {
	for name, password := range c.Users {
		if password == "" { // so that "" below means "no such user"
			return config.Errorf("users", "user %q has an empty password", name)
		}
	}
	return nil
}

// Static verifies users against its config; config.Current swaps it whole
// on a reload while Verify and Lookup may be running.
type Static struct {
	auth.Unimplemented
	config.Current[Config]
}

func (*Static) Info() base.Info { return base.Info{Type: "static", Version: "0.1.0"} }

func (s *Static) Verify(ctx context.Context, username, password string) (auth.Identity, error) {
	want := s.Config().Users[username]
	if want == "" || subtle.ConstantTimeCompare([]byte(password), []byte(want)) != 1 {
		return auth.Identity{}, fmt.Errorf("verify user %s: %w", username, auth.ErrInvalidCredentials)
	}
	return s.Lookup(ctx, username)
}

func (s *Static) Lookup(_ context.Context, username string) (auth.Identity, error) {
	cfg := s.Config()
	if cfg.Users[username] == "" {
		return auth.Identity{}, fmt.Errorf("look up user %s: %w", username, auth.ErrUserNotFound)
	}
	return auth.Identity{Username: username, Groups: []string{cfg.Group}}, nil
}

func main() { sdk.Serve(&Static{}) }
