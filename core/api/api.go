// Package api serves the host's admin API under /api/v1: logins and
// tokens, clients and their volumes, images and their versions, boot
// sessions, plugins and the audit log. Every write lands in the audit log.
//
// Authentication: POST auth/login checks a username and password against
// the auth plugins and answers a short-lived access token (HMAC-SHA256
// signed, never stored) and a refresh token (random, stored hashed,
// rotated at every use). Every other route takes the access token as
// "Authorization: Bearer ...". The role (admin, operator, viewer) comes
// from the user's groups at login, and again at every refresh: refresh asks
// the auth plugin that verified the login (Lookup) for the user's current
// groups, so a demoted user gets their new role with the next access
// token and a deleted or disabled one gets 401. A chain of refreshes ends
// SessionLifetime after its login, whatever happens.
//
// Revocation: logout revokes the refresh token in the store and denies the
// access token's ID in memory until it expires; a replayed refresh token,
// and a refresh for a user the auth plugin no longer knows (deleted,
// disabled), revoke every refresh token of the user and deny the user's
// access tokens issued until then, also in memory. `dls user delete` and
// `dls user passwd` revoke the user's refresh tokens in the store. A
// demoted user's access tokens keep their role until they expire. Memory
// is lost at a restart and not shared between hosts: there, a revoked
// access token stays valid until it expires (AccessTTL, 15 minutes by
// default).
package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/internal/pluginrpc/authrpc"
	"github.com/dls-project/dls/internal/pluginrpc/storagerpc"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Prefix is where the API lives.
const Prefix = "/api/v1"

// Store is the part of the state store the API uses.
type Store interface {
	PutClient(ctx context.Context, c store.Client) error
	GetClient(ctx context.Context, name string) (store.Client, error)
	ListClients(ctx context.Context) ([]store.Client, error)
	DeleteClient(ctx context.Context, name string) error

	PutImage(ctx context.Context, img store.Image) error
	GetImage(ctx context.Context, name string) (store.Image, error)
	ListImages(ctx context.Context) ([]store.Image, error)
	DeleteImage(ctx context.Context, name string) error

	GetSession(ctx context.Context, id int64) (store.Session, error)
	ListSessions(ctx context.Context, f store.SessionFilter) ([]store.Session, error)

	RenameClient(ctx context.Context, old, new string) error

	ListDiscovered(ctx context.Context) ([]store.DiscoveredMachine, error)
	GetDiscovered(ctx context.Context, mac string) (store.DiscoveredMachine, error)
	DeleteDiscovered(ctx context.Context, mac string) error

	store.Tokens
	store.AuditLog
}

// Authenticator checks a username and password, and looks a user up again
// when a session is renewed: an auth plugin's client. Wrong credentials
// answer an error wrapping auth.ErrInvalidCredentials; a user that is gone
// or disabled, one wrapping auth.ErrUserNotFound.
type Authenticator interface {
	Verify(ctx context.Context, username, password string) (auth.Identity, error)
	Lookup(ctx context.Context, username string) (auth.Identity, error)
}

// NamedAuthenticator is a running auth plugin instance and its name in
// the config: a session remembers the instance that verified its login and
// asks that one again at every refresh.
type NamedAuthenticator struct {
	Name string
	Authenticator
}

var _ Authenticator = (*authrpc.Client)(nil)

// ImageStorage is the part of a storage plugin the API drives.
// *storagerpc.Client implements it.
type ImageStorage interface {
	ImportImage(ctx context.Context, req storage.ImportRequest) (storage.Version, error)
	DeleteImage(ctx context.Context, image string) error
	CreateVersion(ctx context.Context, image string) (storage.Version, error)
	ListVersions(ctx context.Context, image string) ([]storage.Version, error)
	DeleteVersion(ctx context.Context, image string, version uint64) error
	SetCurrentVersion(ctx context.Context, image string, version uint64) error
	ResetVolume(ctx context.Context, req storage.VolumeRequest) (storage.Volume, error)
	Promote(ctx context.Context, volume, image string) (storage.Version, error)
}

var _ ImageStorage = (*storagerpc.Client)(nil)

// Storage finds the storage plugin that holds an image.
type Storage interface {
	ImageStorage(ctx context.Context, image string) (ImageStorage, error)
}

// StorageResolver adapts a StorageForImage method (the daemon's) to
// Storage.
type StorageResolver func(ctx context.Context, image string) (*storagerpc.Client, error)

// ImageStorage implements Storage.
func (f StorageResolver) ImageStorage(ctx context.Context, image string) (ImageStorage, error) {
	c, err := f(ctx, image)
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("image %s: no storage plugin", image)
	}
	return c, nil
}

// Waker wakes a machine with Wake-on-LAN; addr is the machine's reserved
// address (zero when none), which picks its segment. *wol.Sender
// implements it.
type Waker interface {
	Wake(ctx context.Context, mac string, addr netip.Addr) error
}

// Clock tells the time; tests pass a fake one.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Deps are what the API works on.
type Deps struct {
	// Store is the state store. Required.
	Store Store
	// Authenticators returns the running auth plugins in the order to try
	// them. Required.
	Authenticators func() []NamedAuthenticator
	// Storage finds an image's storage plugin. Required.
	Storage Storage
	// Plugins lists the plugin instances; nil lists none.
	Plugins func() []supervisor.Status
	// Waker sends Wake-on-LAN packets; nil answers 501 to wake requests.
	Waker Waker
	// Clock; nil is the system clock.
	Clock Clock
	// LiveSession reports whether the client has a live iSCSI session
	// (a rename waits for it to end); nil: none is known.
	LiveSession func(ctx context.Context, client string) bool
	// LiveSessions streams boot session changes to GET events (the
	// console's floor); nil answers 501 there.
	LiveSessions SessionWatcher
	// ClientChanges tells GET events that the client table changed; nil:
	// the stream carries session changes only.
	ClientChanges ClientWatcher
}

// FileOwner is a Unix user and group.
type FileOwner struct{ UID, GID uint32 }

// Options tune the API.
type Options struct {
	// KeyFile holds the key that signs access tokens (hex, mode 0600),
	// created on first use, so that restarts keep everyone logged in.
	// Required; typically <data_dir>/api-token.key.
	KeyFile string
	// AccessTTL is an access token's life; 0 means 15 minutes.
	AccessTTL time.Duration
	// RefreshTTL is a refresh token's life; 0 means 7 days.
	RefreshTTL time.Duration
	// SessionLifetime caps a chain of refreshes: no token of it is valid
	// past the login's time plus SessionLifetime, however often it is
	// refreshed; 0 means 24 hours (http.session_lifetime).
	SessionLifetime time.Duration
	// RoleGroups maps group names to roles (admin, operator, viewer); the
	// highest role of a user's groups wins. Nil means the groups admin,
	// operator and viewer give the role of the same name.
	RoleGroups map[string]string
	// UserFailures limits failed logins of one username from one source
	// address, SourceFailures those of one source whatever the username;
	// zero values mean 10 and 20 per 15 minutes. Neither is keyed on the
	// username alone: an attacker's failures must not lock the account's
	// owner out.
	UserFailures   Limit
	SourceFailures Limit
	// AccountFailures limits failed logins of one username from every
	// source together (an attack spread over many addresses); zero means
	// 100 per 15 minutes. It does not apply to a source the user logged
	// in from within TrustedSourceTTL, so the owner's usual workstation
	// still gets in while the account is under attack.
	AccountFailures Limit
	// TrustedSourceTTL is how long a successful login makes its source
	// address trusted for that username; 0 means 30 days.
	TrustedSourceTTL time.Duration
	// LimiterEntries caps the usernames and sources each limiter
	// remembers (the oldest are forgotten first); 0 means 10000.
	LimiterEntries int
	// ImportTimeout bounds an image import run by POST images; 0 means
	// one hour.
	ImportTimeout time.Duration
	// ImportDirs are the folders a source path in a request may lie under
	// (images.import_dirs); none refuses every path (uploads still work).
	// SetImportDirs changes them.
	ImportDirs []string
	// UploadDir holds uploads and copies of sources while their storage
	// imports them (typically <data_dir>/uploads); "" refuses imports.
	UploadDir string
	// UploadOwner, when set, is who storage plugins run as (plugin.user):
	// the upload folder is made passable (0711) and each upload file is
	// given to that user (still 0600), so the plugin can open it to import
	// and nobody else can read it.
	UploadOwner *FileOwner
	// Registerer gets the API's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// Logger; nil discards.
	Logger hclog.Logger
}

// Limit is a number of events allowed in a sliding window.
type Limit struct {
	Max    int
	Window time.Duration
}

// API is the admin API.
type API struct {
	deps     Deps
	opts     Options
	clock    Clock
	logger   hclog.Logger
	tokens   *tokenSigner
	deny     *denylist
	users    *limiter // by username and source
	sources  *limiter // by source
	accounts *limiter // by username, every source but trusted ones
	trusted  *trustedSources
	refusals *refusalLog   // audit entries of rate-limited logins
	browser  browserChecks // when each browser session's role was last checked
	metrics  *metrics
	roles    map[string]role
	// listsPlugins: Deps.Plugins was given, so POST images can check that
	// the storage named exists.
	listsPlugins bool

	importMu   sync.RWMutex
	importDirs []string // see SetImportDirs

	// writeMu serialises check-then-write sequences (a POST's "does the
	// name exist?" and its PutClient) on this host.
	writeMu sync.Mutex
}

// New loads (or creates) the token key and registers the metrics. ctx is
// the daemon's: the store queries a metrics scrape makes run under its
// values.
func New(ctx context.Context, deps Deps, opts Options) (*API, error) {
	if deps.Store == nil || deps.Authenticators == nil || deps.Storage == nil {
		return nil, errors.New("api: Store, Authenticators and Storage are required")
	}
	if opts.KeyFile == "" {
		return nil, errors.New("api: KeyFile is required")
	}
	if opts.AccessTTL <= 0 {
		opts.AccessTTL = 15 * time.Minute
	}
	if opts.RefreshTTL <= 0 {
		opts.RefreshTTL = 7 * 24 * time.Hour
	}
	if opts.SessionLifetime <= 0 {
		opts.SessionLifetime = 24 * time.Hour
	}
	if opts.UserFailures.Max <= 0 || opts.UserFailures.Window <= 0 {
		opts.UserFailures = Limit{Max: 10, Window: 15 * time.Minute}
	}
	if opts.SourceFailures.Max <= 0 || opts.SourceFailures.Window <= 0 {
		opts.SourceFailures = Limit{Max: 20, Window: 15 * time.Minute}
	}
	if opts.AccountFailures.Max <= 0 || opts.AccountFailures.Window <= 0 {
		opts.AccountFailures = Limit{Max: 100, Window: 15 * time.Minute}
	}
	if opts.TrustedSourceTTL <= 0 {
		opts.TrustedSourceTTL = 30 * 24 * time.Hour
	}
	if opts.LimiterEntries <= 0 {
		opts.LimiterEntries = 10000
	}
	if opts.ImportTimeout <= 0 {
		opts.ImportTimeout = time.Hour
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if deps.Clock == nil {
		deps.Clock = systemClock{}
	}
	listsPlugins := deps.Plugins != nil
	if !listsPlugins {
		deps.Plugins = func() []supervisor.Status { return nil }
	}
	roles, err := roleMap(opts.RoleGroups)
	if err != nil {
		return nil, err
	}
	key, err := loadOrCreateKey(opts.KeyFile)
	if err != nil {
		return nil, err
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(ctx, reg, deps.Store, deps.Clock)
	if err != nil {
		return nil, err
	}
	a := &API{
		deps: deps, opts: opts, clock: deps.Clock, logger: opts.Logger,
		tokens:   &tokenSigner{key: key},
		deny:     newDenylist(),
		users:    newLimiter(opts.UserFailures, opts.LimiterEntries),
		sources:  newLimiter(opts.SourceFailures, opts.LimiterEntries),
		accounts: newLimiter(opts.AccountFailures, opts.LimiterEntries),
		trusted:  newTrustedSources(opts.TrustedSourceTTL, opts.LimiterEntries),
		refusals: newRefusalLog(max(opts.UserFailures.Window, opts.SourceFailures.Window, opts.AccountFailures.Window), opts.LimiterEntries),
		metrics:  m,
		roles:    roles,
		browser:  browserChecks{checked: map[string]browserCheck{}},

		listsPlugins: listsPlugins,
	}
	a.SetImportDirs(opts.ImportDirs)
	return a, nil
}

// route is one endpoint: method, path pattern under Prefix, the least role
// allowed (roleNone: no token needed) and the handler.
type route struct {
	method  string
	path    string
	role    role
	handler func(w http.ResponseWriter, r *http.Request) error
}

func (a *API) routes() []route {
	return []route{
		{"POST", "/auth/login", roleNone, a.login},
		{"POST", "/auth/refresh", roleNone, a.refresh},
		{"POST", "/auth/logout", roleNone, a.logout},
		{"POST", "/auth/session", roleNone, a.createBrowserSession},
		{"GET", "/auth/session", roleViewer, a.getBrowserSession},
		{"DELETE", "/auth/session", roleViewer, a.deleteBrowserSession},
		{"GET", "/openapi.json", roleNone, serveOpenAPI},

		{"GET", "/clients", roleViewer, a.listClients},
		{"POST", "/clients", roleOperator, a.createClient},
		{"GET", "/clients/{name}", roleViewer, a.getClient},
		{"PUT", "/clients/{name}", roleOperator, a.updateClient},
		{"DELETE", "/clients/{name}", roleOperator, a.deleteClient},
		{"POST", "/clients/{name}/volume", roleOperator, a.clientVolume},
		{"POST", "/clients/{name}/wake", roleOperator, a.wakeClient},
		{"POST", "/clients/{name}/chap", roleOperator, a.clientCHAP},
		{"POST", "/clients/{name}/rename", roleOperator, a.renameClient},
		{"POST", "/clients/{name}/maintenance", roleOperator, a.clientMaintenance},

		{"GET", "/discovered", roleViewer, a.listDiscovered},
		{"DELETE", "/discovered/{mac}", roleOperator, a.forgetDiscovered},
		{"POST", "/discovered/{mac}/adopt", roleOperator, a.adoptDiscovered},

		{"GET", "/images", roleViewer, a.listImages},
		{"POST", "/images", roleAdmin, a.createImage},
		{"GET", "/images/{name}", roleViewer, a.getImage},
		{"PUT", "/images/{name}", roleAdmin, a.updateImage},
		{"DELETE", "/images/{name}", roleAdmin, a.deleteImage},
		{"GET", "/images/{name}/versions", roleViewer, a.listVersions},
		{"POST", "/images/{name}/versions", roleAdmin, a.createVersion},
		{"PUT", "/images/{name}/versions/current", roleAdmin, a.setCurrentVersion},
		{"DELETE", "/images/{name}/versions/{n}", roleAdmin, a.deleteVersion},
		{"GET", "/images/{name}/rollout", roleViewer, a.getRollout},
		{"POST", "/images/{name}/rollout", roleAdmin, a.rollout},

		{"GET", "/floor", roleViewer, a.floor},
		{"GET", "/events", roleViewer, a.events},
		{"GET", "/boot-times", roleViewer, a.bootTimes},
		{"GET", "/sessions", roleViewer, a.listSessions},
		{"GET", "/sessions/{id}", roleViewer, a.getSession},
		{"GET", "/plugins", roleViewer, a.listPlugins},
		{"GET", "/audit", roleViewer, a.listAudit},

		{"GET", "/backup", roleAdmin, a.backup},
		{"POST", "/restore", roleAdmin, a.restore},
	}
}

// Handler serves every route under Prefix. Unknown paths answer 404 and
// known paths with another method 405, both as JSON errors.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	routes := a.routes()
	for _, rt := range routes {
		mux.Handle(rt.method+" "+Prefix+rt.path, a.wrap(rt))
	}
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, rt := range routes {
			if matchPath(Prefix+rt.path, r.URL.Path) {
				allow = append(allow, rt.method)
			}
		}
		if len(allow) == 0 {
			writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path, "")
			return
		}
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")), "")
	})
	return mux
}

// matchPath reports whether path matches a route pattern whose wildcards
// ({name}) each stand for one segment.
func matchPath(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i, p := range ps {
		if !(strings.HasPrefix(p, "{") && xs[i] != "") && p != xs[i] {
			return false
		}
	}
	return true
}

// wrap authenticates and authorises the request, runs the handler and
// writes the error it returns.
func (a *API) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if rt.role != roleNone {
			p, err := a.authenticate(r)
			if err != nil {
				a.writeErr(w, r, err)
				return
			}
			if p.role < rt.role {
				a.audit(r.Context(), p.user, "authz.denied", rt.method+" "+Prefix+rt.path, map[string]string{
					"path": r.URL.Path, "role": p.role.String(), "required": rt.role.String(),
				}, remoteIP(r))
				writeError(w, http.StatusForbidden, fmt.Sprintf("role %s may not %s %s (needs %s)", p.role, rt.method, r.URL.Path, rt.role), "")
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		}
		if err := rt.handler(w, r); err != nil {
			a.writeErr(w, r, err)
		}
	})
}
