// Package auth is the plugin kind that verifies admins' credentials. The
// host issues and checks tokens itself; an auth plugin only answers "who is
// this and which groups are they in?". Backends that own their users (not a
// directory) also offer user administration.
package auth

import (
	"context"
	"errors"

	"github.com/dls-project/dls/sdk/base"
)

// Auth is implemented by auth plugins.
type Auth interface {
	base.Plugin
	// Verify checks a username and password. Wrong credentials return an
	// error wrapping ErrInvalidCredentials and nothing else: callers must
	// not learn whether the user exists.
	Verify(ctx context.Context, username, password string) (Identity, error)
}

// UserAdmin is the optional capability "user_admin" for backends that own
// their users.
type UserAdmin interface {
	CreateUser(ctx context.Context, username, password string, groups []string) error
	SetPassword(ctx context.Context, username, password string) error
	DeleteUser(ctx context.Context, username string) error
	ListUsers(ctx context.Context) ([]Identity, error)
}

// CapabilityUserAdmin is advertised by plugins implementing UserAdmin.
const CapabilityUserAdmin = "user_admin"

// Identity is a verified user.
type Identity struct {
	Username string
	Groups   []string
}

// Errors plugins return (wrapped).
var (
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrUserExists         = errors.New("user exists")
	ErrUserNotFound       = errors.New("user not found")
)
