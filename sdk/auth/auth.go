// Package auth is the plugin kind that verifies admins' credentials. The
// host issues and checks tokens itself; an auth plugin only answers "who is
// this and which groups are they in?": at login with a password (Verify),
// and again without one whenever the host renews a session (Lookup), so
// that a user deleted, disabled or regrouped in the backend loses their
// session or role at the next refresh. Backends that own their users (not
// a directory) also offer user administration.
package auth

import (
	"context"
	"errors"

	"github.com/dls-project/dls/sdk/base"
)

// Auth is implemented by auth plugins.
//
// Methods may be added to Auth in later SDK versions. Embed Unimplemented
// in the plugin's type so that such an addition still compiles: the new
// method then answers with an error wrapping ErrUnimplemented until the
// plugin implements it.
type Auth interface {
	base.Plugin
	// Verify checks a username and password. Wrong credentials return an
	// error wrapping ErrInvalidCredentials and nothing else: callers must
	// not learn whether the user exists.
	Verify(ctx context.Context, username, password string) (Identity, error)
	// Lookup returns the current identity of a user Verify accepted
	// before (username as Verify returned it), without a password: the
	// host asks it whenever it renews a session, so that groups changed
	// since the login take effect and a user who is gone loses access. A
	// user that no longer exists, or exists but may not log in any more
	// (disabled, locked, no longer matched by the backend's user filter),
	// returns an error wrapping ErrUserNotFound. Any other error means the
	// backend could not answer (a directory down): the host then neither
	// renews nor ends the session.
	Lookup(ctx context.Context, username string) (Identity, error)
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
	// ErrInvalidCredentials: wrong username or password (Verify).
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrUserExists: CreateUser of a name already taken.
	ErrUserExists = errors.New("user exists")
	// ErrUserNotFound: no such user, or (from Lookup) a user who may no
	// longer log in.
	ErrUserNotFound = errors.New("user not found")
	// ErrUnimplemented is wrapped by the operations a plugin does not
	// implement (see Unimplemented); the host sees gRPC's Unimplemented.
	ErrUnimplemented = errors.New("unimplemented")
)
