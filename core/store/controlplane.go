package store

import (
	"context"
	"time"
)

// This file holds the control plane's parts of the store: images, boot
// sessions and refresh tokens. Clients also gain CHAP secrets (see Client).

// Images holds the images admins declare; their versions live in the
// storage plugins, the store keeps which storage holds each image.
type Images interface {
	// PutImage creates or replaces the image called img.Name.
	PutImage(ctx context.Context, img Image) error
	// GetImage returns the image called name, or ErrNotFound.
	GetImage(ctx context.Context, name string) (Image, error)
	// ListImages returns every image, ordered by name.
	ListImages(ctx context.Context) ([]Image, error)
	// DeleteImage removes the image, or returns ErrNotFound; ErrConflict
	// while a client boots it.
	DeleteImage(ctx context.Context, name string) error
}

// Image is a golden image as the host knows it.
type Image struct {
	Name string
	// Storage is the storage plugin instance holding the image.
	Storage string
	// Source is where version 1 was imported from (free text).
	Source string
	// Boot is the boot profile: nil boots the client's volume with sanboot.
	Boot *BootProfile
	// Origin is "config" for images declared in HCL, "api" otherwise.
	Origin    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// BootProfile boots a kernel with root on the client's volume.
type BootProfile struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	// Confirm: the OS posts /boot/done; sessions end at "booted".
	Confirm bool `json:"confirm"`
}

// Sessions holds boot sessions: one per machine boot, from the first DHCP
// packet to the last stage the client is expected to reach.
type Sessions interface {
	// CreateSession stores a new session and returns it with its ID.
	CreateSession(ctx context.Context, s Session) (Session, error)
	// UpdateSession replaces the session with s.ID, or ErrNotFound.
	UpdateSession(ctx context.Context, s Session) error
	// GetSession returns the session with id, or ErrNotFound.
	GetSession(ctx context.Context, id int64) (Session, error)
	// SessionByToken returns the session whose boot token hashes to
	// tokenHash, or ErrNotFound.
	SessionByToken(ctx context.Context, tokenHash string) (Session, error)
	// ListSessions returns sessions, newest first, filtered by f.
	ListSessions(ctx context.Context, f SessionFilter) ([]Session, error)
}

// Session states.
const (
	SessionActive = "active" // still moving through its stages
	SessionDone   = "done"   // reached its last expected stage
	SessionFailed = "failed" // a stage timed out (FailedStage)
)

// Session is one boot of one machine.
type Session struct {
	ID     int64
	Client string
	MAC    string
	// Address is the IPv4 address the machine got, when known.
	Address string
	// Stages maps each stage reached (dhcp, script, iscsi_login,
	// handoff, booted) to when it was first reached.
	Stages map[string]time.Time
	// Expect is the last stage this boot should reach (handoff, booted).
	Expect string
	State  string
	// FailedStage is the stage that did not arrive in time.
	FailedStage string
	// TokenHash is the SHA-256 (hex) of the per-boot token the OS posts to
	// /boot/done; the token itself is never stored.
	TokenHash string
	// TokenUsed is set once the token confirmed the boot.
	TokenUsed bool
	Started   time.Time
	Ended     time.Time
}

// SessionFilter narrows ListSessions.
type SessionFilter struct {
	Client string // "" for all
	State  string // "" for all
	Limit  int    // <= 0: 100
}

// Tokens holds refresh tokens: long-lived, rotating, revocable. Access
// tokens are short-lived and signed by the host, never stored.
type Tokens interface {
	// PutRefreshToken stores a new refresh token.
	PutRefreshToken(ctx context.Context, t RefreshToken) error
	// RotateRefreshToken marks the token hashed oldHash used and stores
	// next, in one transaction. A token already used or revoked returns
	// ErrConflict and nothing is stored (replay: the caller revokes the
	// user's tokens).
	RotateRefreshToken(ctx context.Context, oldHash string, next RefreshToken) error
	// GetRefreshToken returns the token hashed hash, or ErrNotFound.
	GetRefreshToken(ctx context.Context, hash string) (RefreshToken, error)
	// RevokeRefreshToken revokes one token (logout); ErrNotFound if absent.
	RevokeRefreshToken(ctx context.Context, hash string) error
	// RevokeUserTokens revokes every token of user.
	RevokeUserTokens(ctx context.Context, user string) error
	// CountActiveTokens counts unexpired, unrevoked, unused tokens (the
	// dls_active_sessions gauge).
	CountActiveTokens(ctx context.Context, now time.Time) (int, error)
}

// RefreshToken is one refresh token, kept by its SHA-256 hash (hex).
type RefreshToken struct {
	Hash    string
	User    string
	Role    string
	Groups  []string
	Issued  time.Time
	Expires time.Time
	// Used: rotated into a new token. Revoked: logged out or revoked.
	Used    bool
	Revoked bool
}
