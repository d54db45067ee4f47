package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// This file holds the control plane's parts of the store: images, boot
// sessions and refresh tokens, and the purge of old sessions and tokens.
// Clients also gain CHAP secrets (see Client).

// Images holds the images admins declare; their versions live in the
// storage plugins, the store keeps which storage holds each image.
type Images interface {
	// PutImage creates or replaces the image called img.Name (CreatedAt
	// is kept), or fails with ErrInvalid when img does not pass Normalize.
	PutImage(ctx context.Context, img Image) error
	// GetImage returns the image called name, or ErrNotFound.
	GetImage(ctx context.Context, name string) (Image, error)
	// ListImages returns every image, ordered by name.
	ListImages(ctx context.Context) ([]Image, error)
	// DeleteImage removes the image, or returns ErrNotFound; ErrConflict
	// while a client boots it (a client whose Image is name). Clients may
	// name images the store does not hold (there is no foreign key, so
	// that config can declare them in any order).
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
	// Loader is the first stage of EFI x64 machines: "" (iPXE) or
	// LoaderShim. Normalize turns LoaderIPXE into "", so that profiles
	// stored before loaders existed compare equal.
	Loader string `json:"loader,omitempty"`
}

// Values of BootProfile.Loader.
const (
	LoaderIPXE = "ipxe"
	LoaderShim = "shim"
)

// normalize returns b in stored form, or an error wrapping ErrInvalid.
func (b *BootProfile) normalize() (*BootProfile, error) {
	if b == nil {
		return nil, nil
	}
	n := *b
	switch n.Loader {
	case "", LoaderShim:
	case LoaderIPXE:
		n.Loader = ""
	default:
		return b, fmt.Errorf("boot profile: loader %q is neither %q nor %q: %w", b.Loader, LoaderIPXE, LoaderShim, ErrInvalid)
	}
	return &n, nil
}

// UsesShim reports whether the profile boots EFI x64 machines through shim.
func (b *BootProfile) UsesShim() bool { return b != nil && b.Loader == LoaderShim }

// Sessions holds boot sessions: one per machine boot, from the first DHCP
// packet to the last stage the client is expected to reach.
type Sessions interface {
	// CreateSession stores a new session and returns it as stored: with
	// its ID, normalized (see Session.Normalize), a zero Started set to
	// now. ErrConflict when TokenHash belongs to another session.
	CreateSession(ctx context.Context, s Session) (Session, error)
	// UpdateSession replaces the session with s.ID, or ErrNotFound;
	// ErrConflict when TokenHash belongs to another session.
	UpdateSession(ctx context.Context, s Session) error
	// GetSession returns the session with id, or ErrNotFound.
	GetSession(ctx context.Context, id int64) (Session, error)
	// SessionByToken returns the session whose boot token hashes to
	// tokenHash, or ErrNotFound (always, for "").
	SessionByToken(ctx context.Context, tokenHash string) (Session, error)
	// ListSessions returns sessions, newest (latest Started) first,
	// filtered by f, at most f.Limit of them (see SessionFilter).
	ListSessions(ctx context.Context, f SessionFilter) ([]Session, error)
}

// SessionBatcher is what a Sessions store may add: many session writes in
// one transaction, so that a boot storm's session changes cost one commit
// (one fsync) per batch rather than one each.
type SessionBatcher interface {
	// WriteSessions creates each session whose ID is 0 and replaces the
	// others, all or none, and returns them as stored (new ones with
	// their IDs), in order. On an error nothing was written.
	WriteSessions(ctx context.Context, ss []Session) ([]Session, error)
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
	// MAC is the booting NIC's address, canonical form once stored ("" if
	// not known).
	MAC string
	// Address is the IPv4 address the machine got, when known.
	Address string
	// Stages maps each stage reached (dhcp, script, iscsi_login,
	// handoff, booted) to when it was first reached (millisecond
	// precision, UTC, like every time the store returns). Nil when none.
	Stages map[string]time.Time
	// Expect is the last stage this boot should reach (handoff, booted).
	Expect string
	// State is SessionActive, SessionDone or SessionFailed; "" is stored
	// as SessionActive.
	State string
	// FailedStage is the stage that did not arrive in time.
	FailedStage string
	// TokenHash is the SHA-256 (hex) of the per-boot token the OS posts to
	// /boot/done; the token itself is never stored.
	TokenHash string
	// TokenUsed is set once the token confirmed the boot.
	TokenUsed bool
	Started   time.Time
	// Ended is zero while the session is active.
	Ended time.Time
}

// SessionFilter narrows ListSessions.
type SessionFilter struct {
	Client string // "" for all
	State  string // "" for all
	Limit  int    // <= 0: DefaultSessionLimit; at most MaxSessionLimit
	// Since, when set, keeps the sessions started at or after it (the
	// console's boot-time chart of the last hours).
	Since time.Time
	// Before, when set, keeps the sessions started before it: with
	// Since, one window; with the oldest Started of a full answer, the
	// next page (the store keeps times to the millisecond).
	Before time.Time
	// Latest keeps only each client's newest session among those the
	// other fields keep (sessions with no client are left out): the
	// console's floor, in one query.
	Latest bool
}

// Bounds of SessionFilter.Limit.
const (
	DefaultSessionLimit = 100
	MaxSessionLimit     = 1000
)

// Tokens holds refresh tokens: long-lived, rotating, revocable. Access
// tokens are short-lived and signed by the host, never stored.
type Tokens interface {
	// PutRefreshToken stores a new refresh token: ErrConflict when the
	// hash is taken, ErrInvalid when t does not pass Normalize. A zero
	// Issued is set to now.
	PutRefreshToken(ctx context.Context, t RefreshToken) error
	// RotateRefreshToken marks the token hashed oldHash used and stores
	// next, in one transaction. A token already used or revoked returns
	// ErrConflict and nothing is stored (replay: the caller revokes the
	// user's tokens). So does one that has expired (by the store's clock):
	// a caller that must tell expiry from replay reads the token first.
	// Of concurrent rotations of one token exactly one succeeds. An
	// unknown oldHash returns ErrNotFound; a next of another user than the
	// old token's, or one that fails Normalize, ErrInvalid.
	RotateRefreshToken(ctx context.Context, oldHash string, next RefreshToken) error
	// GetRefreshToken returns the token hashed hash, or ErrNotFound.
	GetRefreshToken(ctx context.Context, hash string) (RefreshToken, error)
	// RevokeRefreshToken revokes one token (logout); ErrNotFound if absent.
	RevokeRefreshToken(ctx context.Context, hash string) error
	// RevokeUserTokens revokes every token of user (none is not an error).
	RevokeUserTokens(ctx context.Context, user string) error
	// CountActiveTokens counts unexpired, unrevoked, unused tokens (the
	// dls_active_sessions gauge).
	CountActiveTokens(ctx context.Context, now time.Time) (int, error)
}

// RefreshToken is one refresh token, kept by its SHA-256 hash (hex).
type RefreshToken struct {
	Hash   string
	User   string
	Role   string
	Groups []string // nil when none
	Issued time.Time
	// Expires is when the token stops being active; it must be set.
	Expires time.Time
	// Backend is the auth plugin instance that verified the login the
	// token descends from: refreshing asks it again. "" means unknown
	// (tokens stored before DLS recorded it).
	Backend string
	// SessionStart is when that login happened: every token of one chain
	// of rotations carries the same, so the chain can be capped at an
	// absolute lifetime. A zero SessionStart is stored as Issued.
	SessionStart time.Time
	// Used: rotated into a new token. Revoked: logged out or revoked.
	Used    bool
	Revoked bool
}

// Purger deletes what the host no longer keeps: boot session history and
// refresh tokens past their retention. The audit log is kept forever and
// leases are the DHCP servers' to manage: a purge touches neither.
type Purger interface {
	// Purge deletes the sessions and tokens p selects and counts them. It
	// deletes at most PurgeBatch rows per statement, each statement its own
	// transaction, so that purging months of history never holds the
	// database for long (SQLite has one writer: lease commits wait behind
	// it). On an error, the result counts what was deleted before it.
	Purge(ctx context.Context, p PurgeRequest) (PurgeResult, error)
}

// PurgeBatch bounds the rows one purge statement deletes.
const PurgeBatch = 1000

// PurgeRequest selects what Purge deletes. A zero time deletes nothing of
// its kind.
type PurgeRequest struct {
	// SessionsBefore: delete sessions that are no longer active (done or
	// failed) and whose Ended is before it. An active session is never
	// deleted, however old; neither is one without Ended.
	SessionsBefore time.Time
	// TokensBefore: delete refresh tokens whose Expires is before it,
	// used and revoked ones included. Expires is the only time a token
	// has (revocation is not dated); keeping a revoked or used token until
	// then also keeps the answer to it "revoked" or "already used" (a
	// replay, which revokes the user's tokens) rather than "unknown".
	TokensBefore time.Time
}

// PurgeResult counts what one Purge deleted.
type PurgeResult struct {
	Sessions int
	Tokens   int
}

// Normalize returns img in the form the store keeps, or an error wrapping
// ErrInvalid (empty name). Implementations call it before writing.
func (img Image) Normalize() (Image, error) {
	if strings.TrimSpace(img.Name) == "" {
		return img, fmt.Errorf("image name is empty: %w", ErrInvalid)
	}
	boot, err := img.Boot.normalize()
	if err != nil {
		return img, fmt.Errorf("image %s: %w", img.Name, err)
	}
	img.Boot = boot
	return img, nil
}

// Normalize returns s in the form the store keeps (canonical MAC, "" state
// as SessionActive, empty Stages nil), or an error wrapping ErrInvalid (a
// MAC that does not parse, an unknown state). Implementations call it
// before writing.
func (s Session) Normalize() (Session, error) {
	if s.MAC != "" {
		mac, err := CanonicalMAC(s.MAC)
		if err != nil {
			return s, fmt.Errorf("session %d: %w", s.ID, err)
		}
		s.MAC = mac
	}
	switch s.State {
	case "":
		s.State = SessionActive
	case SessionActive, SessionDone, SessionFailed:
	default:
		return s, fmt.Errorf("session %d: unknown state %q: %w", s.ID, s.State, ErrInvalid)
	}
	if len(s.Stages) == 0 {
		s.Stages = nil
	}
	return s, nil
}

// Normalize returns f with Limit in bounds.
func (f SessionFilter) Normalize() SessionFilter {
	switch {
	case f.Limit <= 0:
		f.Limit = DefaultSessionLimit
	case f.Limit > MaxSessionLimit:
		f.Limit = MaxSessionLimit
	}
	return f
}

// Normalize returns t in the form the store keeps (empty Groups nil), or an
// error wrapping ErrInvalid: a token needs a hash, a user and an expiry.
// Implementations call it before writing.
func (t RefreshToken) Normalize() (RefreshToken, error) {
	switch {
	case t.Hash == "":
		return t, fmt.Errorf("refresh token without hash: %w", ErrInvalid)
	case strings.TrimSpace(t.User) == "":
		return t, fmt.Errorf("refresh token without user: %w", ErrInvalid)
	case t.Expires.IsZero():
		return t, fmt.Errorf("refresh token of %s without expiry: %w", t.User, ErrInvalid)
	}
	if len(t.Groups) == 0 {
		t.Groups = nil
	}
	return t, nil
}
