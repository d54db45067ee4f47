// Package sessions follows every machine's boot as a boot session, from the
// boot events plugins report (and the host's own /boot handlers) to the
// last stage the client is expected to reach, and keeps them in the state
// store so that history can be queried and a restarted host carries on.
//
// # Stages
//
// A session moves through dhcp → ipxe → script → iscsi_login → handoff →
// booted, forward only; a client whose image boots EFI x64 through shim (the
// signed chain for Secure Boot) goes dhcp → shim → grub → script → ...; a
// boot that starts over DHCPv6 has dhcp6 in dhcp's place:
//
//   - dhcp: a dhcp_discover from boot firmware. The DHCP plugin tells
//     firmware from an OS's own DHCP client with the event's Attrs: a
//     vendor_class starting with "PXEClient" or "HTTPClient", a user_class
//     of "iPXE", or an arch attribute (option 93, which only PXE firmware
//     sends). A discover without such evidence never starts or restarts a
//     session: a running OS asking for an address is not a new boot (and
//     must not reset a non-persistent client's volume under it).
//   - dhcp6: the same from a DHCPv6 plugin (a dhcp_discover, sent for a
//     Solicit, with Attrs family "ipv6"), told from an OS's DHCPv6 client
//     by the same attributes (option 16's vendor class, option 15's user
//     class, option 61 as arch). Optional: a boot over IPv4 never waits
//     for it, and one that starts at dhcp6 waits for no dhcp. A dual-stack
//     firmware (iPXE configures both families at once) records both.
//   - shim, grub: file_served of the boot loader (Attrs loader "shim" or
//     "grub", from the TFTP plugin), named by the address bound to the
//     machine's boot (the host fills in the MAC). Only shim clients wait
//     for them: for others they are skipped stages.
//   - ipxe: file_served of a first-stage iPXE build (ipxe.efi,
//     snponly.efi, undionly.kpxe...: firstStages) over TFTP or HTTP (UEFI
//     HTTP boot), to the address of the client's active session (the
//     DHCP lease's), or naming the client. Optional: a NIC whose ROM is
//     iPXE fetches none, so a session waiting at dhcp is still waiting for
//     script (its failure stage). A proxy-mode boot has no address when
//     the file is fetched and records no ipxe stage.
//   - script: script_served (the iPXE script, or a shim client's GRUB
//     configuration, went out, over HTTP or TFTP).
//   - iscsi_login: iscsi_login. handoff: iscsi_handoff. booted: os_booted,
//     or the OS posting its token to /boot/done (Confirm).
//
// A boot loader that cannot go on (GRUB, whose kernel Secure Boot refused)
// reports it with the boot's token (boot_failed, through the host:
// LoaderFailed): the session fails at once at the loader's stage.
//
// dhcp_offer, dhcp_request and dhcp_ack only record the address of an
// active session (of the family it recorded first: a dual-stack boot's
// session keeps one); other events do not touch sessions. An event names its
// machine by Client or MAC; a MAC the store does not know is ignored.
//
// A session starts at a firmware dhcp_discover (dhcp or dhcp6), or at script_served for a
// machine that already had an address (or whose DHCP events were lost).
// Later stages never start one: a running OS logging in to its target
// again is not a boot. Stages already reached are ignored (duplicates);
// a stage after the current one moves the session there, skipped stages
// staying absent; an earlier stage arriving late (plugins send their
// events in batches, so a script_served can overtake the discover before
// it) fills the gap with its own time and may move Started back.
//
// The session ends "done" at its expected last stage: handoff by default,
// booted when the client's image has a boot profile with confirm = true.
// dls_boot_time_seconds observes Started to that stage.
//
// # Failures and reboots
//
// Sweep fails every active session whose next stage did not arrive within
// the stage timeout of the latest one: FailedStage, and the stage label of
// dls_boot_failures_total, is the stage that did not arrive.
//
// A firmware dhcp_discover for a client whose active session has gone
// past dhcp, more than the restart grace after its latest stage, is a new
// boot: the machine started over before reaching its last stage. The old
// session fails at its pending stage (counted like a timeout: a machine
// that reboots in a loop shows as failures, not as an ever-running
// session) and a new one starts. Discovers while the session is still at
// dhcp (the PXE ROM's, then the chainloaded iPXE's) or within the grace
// (a script that runs dhcp again) belong to the current boot.
//
// # Tokens
//
// Clients that confirm get a per-boot token in their script: Token issues
// it (32 random bytes, base64url) when the script is rendered, and the
// session keeps only its SHA-256 (hex) as TokenHash; the raw token lives
// in memory, so every render during one boot carries the same token. A
// token rendered before the session started (the DHCP lookup comes before
// its event) is adopted by the session that starts within the stage
// timeout. Confirm refuses a missing token, an unknown one, one already
// used, and one whose session is no longer active or has waited longer
// than the stage timeout; each outcome is counted in
// dls_boot_confirmations_total{result}.
//
// # Metrics
//
//	dls_boot_sessions_total               sessions started
//	dls_boot_failures_total{stage}        sessions failed, by the stage that did not arrive
//	dls_boot_time_seconds                 start to the expected last stage (10 30 60 90 120 180 300)
//	dls_active_clients                    distinct clients with an active session, or one
//	                                      done within the last stage timeout (a machine that
//	                                      just booted counts while it settles)
//	dls_boot_confirmations_total{result}  /boot/done answers: ok missing unknown reused expired error
//
// # Restart
//
// New reloads the active sessions from the store (and, for
// dls_active_clients, those done within the stage timeout). Their raw
// tokens are gone: a token rendered before the restart still confirms,
// but a script rendered again after it carries a new token.
package sessions

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/host"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
)

// Stages, in the order a boot reaches them.
const (
	StageDHCP       = "dhcp"
	StageDHCP6      = "dhcp6"
	StageShim       = "shim"
	StageGRUB       = "grub"
	StageIPXE       = "ipxe"
	StageScript     = "script"
	StageISCSILogin = "iscsi_login"
	StageHandoff    = "handoff"
	StageBooted     = "booted"
)

var stages = []string{StageDHCP, StageDHCP6, StageShim, StageGRUB, StageIPXE, StageScript, StageISCSILogin, StageHandoff, StageBooted}

// loaderStage reports whether stage is one only shim clients reach.
func loaderStage(stage string) bool { return stage == StageShim || stage == StageGRUB }

// optional are the stages a boot may go without: never a failure stage
// (the session waits for the next one that is not optional).
var optional = map[string]bool{StageDHCP6: true, StageIPXE: true}

// dhcpStage reports whether stage is one a firmware DHCP discover records
// (dhcp or dhcp6): the stages a boot starts at.
func dhcpStage(stage string) bool { return stage == StageDHCP || stage == StageDHCP6 }

// firstStages maps the base names of the first-stage files DHCP hands out
// (Debian's ipxe package, and the names the DHCP plugin defaults to) to
// the stage their download records.
var firstStages = map[string]string{
	"ipxe.efi": StageIPXE, "snponly.efi": StageIPXE, "snp.efi": StageIPXE,
	"undionly.kpxe": StageIPXE, "undionly.kkpxe": StageIPXE, "ipxe.pxe": StageIPXE, "ipxe.kpxe": StageIPXE,
}

// firstStage is the stage a file_served event of file records, "" for
// none (kernels, initrds, anything else).
func firstStage(file string) string {
	if i := strings.LastIndexAny(file, "/\\"); i >= 0 {
		file = file[i+1:]
	}
	return firstStages[file]
}

func stageIndex(stage string) int {
	for i, s := range stages {
		if s == stage {
			return i
		}
	}
	return -1
}

// Event attributes that tell boot firmware's DHCP from an OS's (the SDK's,
// which DHCP plugins set).
const (
	AttrVendorClass = host.AttrVendorClass
	AttrUserClass   = host.AttrUserClass
	AttrArch        = host.AttrArch
)

// Results of Confirm, the result label of dls_boot_confirmations_total.
const (
	ResultOK      = "ok"
	ResultMissing = "missing"
	ResultUnknown = "unknown"
	ResultReused  = "reused"
	ResultExpired = "expired"
	ResultError   = "error"
)

// Errors Confirm returns for refused tokens (errors.Is).
var (
	ErrTokenMissing = errors.New("boot token missing")
	ErrTokenUnknown = errors.New("boot token unknown")
	ErrTokenReused  = errors.New("boot token already used")
	ErrTokenExpired = errors.New("boot token expired")
)

// reportTimeout bounds the store lookups of one Report, which go on when
// the reporter gives up.
const reportTimeout = 30 * time.Second

// Defaults of Options.
const (
	DefaultStageTimeout = 5 * time.Minute
	DefaultRestartGrace = 10 * time.Second
)

// Options configure a Tracker.
type Options struct {
	// Sessions keeps the sessions; Clients resolves MACs and client names.
	Sessions store.Sessions
	Clients  store.Clients
	// Images gives the clients' boot profiles (confirm = true: sessions
	// end at booted). Nil: every session ends at handoff.
	Images store.Images
	// StageTimeout is how long a session waits for its next stage
	// (boot.stage_timeout); <= 0: DefaultStageTimeout.
	StageTimeout time.Duration
	// RestartGrace: a firmware discover this soon after the latest stage
	// belongs to the current boot; <= 0: DefaultRestartGrace.
	RestartGrace time.Duration
	// Registerer receives the metrics (the host's registry); nil: a
	// private registry.
	Registerer prometheus.Registerer
	Logger     hclog.Logger
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// OnNewSession is called when a session starts for a client that is
	// not persistent, after the events that started it are recorded and
	// before Report returns; the daemon resets the client's volume. Its
	// error is logged.
	OnNewSession func(ctx context.Context, client string) error
	// OnChange is given session states in the order of the changes: a
	// session the store already holds as the change is made (so without
	// waiting for the write, which a busy disk can hold for a second), a
	// new one once the store gave it its ID (or failed to); a state
	// older than one already given is not given again. The console's
	// live stream (core/sessionfeed) publishes them. It must not block
	// and is called with the tracker's lock held. Nil: nothing is told.
	OnChange func(store.Session)
}

// Tracker follows boot sessions. It is safe for concurrent use; Report,
// Confirm, Token and Sweep take one lock for the sessions in memory, and
// write what changed to the store after releasing it (flush): in a boot
// storm a thousand machines' events would otherwise queue behind each
// other's fsyncs. Each still returns only once its changes are stored.
type Tracker struct {
	sessions store.Sessions
	clients  store.Clients
	images   store.Images
	grace    time.Duration
	logger   hclog.Logger
	now      func() time.Time
	onNew    func(ctx context.Context, client string) error
	onChange func(store.Session)
	m        metrics

	mu      sync.Mutex
	timeout time.Duration
	active  map[string]*session  // active sessions by client
	macs    map[string]string    // MAC → client, of active sessions
	done    map[string]time.Time // client → when its last session ended done
	pending map[string]token     // client → token issued before its session started
	dirty   []write              // session changes not yet written, oldest first

	// wmu orders the writers: one flush at a time writes, in the order
	// the changes were made.
	wmu sync.Mutex
}

// write is a session's state to store, as it was when it changed.
type write struct {
	s   *session
	rec store.Session
	seq uint64 // the session's change count at rec (session.changes)
}

// session is an active session and what only this process knows of it.
type session struct {
	store.Session
	token string    // the raw token; "" when not issued by this process
	last  time.Time // when the latest stage was reached
	// stored is the session's ID in the store, 0 until it is created;
	// only the flushing writer (under wmu) reads and sets it. Session.ID
	// follows it under mu.
	stored int64
	// shim: the client boots through shim, so the shim and grub stages
	// are waited for (a reloaded session: it reached one of them).
	shim bool
	// changes counts the states queued for the store; told is the
	// latest of them given to OnChange (both under mu).
	changes, told uint64
}

type token struct {
	raw, hash string
	issued    time.Time
}

// New builds a tracker, registers its metrics and reloads the active
// sessions from the store.
func New(ctx context.Context, o Options) (*Tracker, error) {
	if o.Sessions == nil || o.Clients == nil {
		return nil, errors.New("boot sessions: a session store and a client store are required")
	}
	if o.StageTimeout <= 0 {
		o.StageTimeout = DefaultStageTimeout
	}
	if o.RestartGrace <= 0 {
		o.RestartGrace = DefaultRestartGrace
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tracker{
		sessions: o.Sessions, clients: o.Clients, images: o.Images, grace: o.RestartGrace,
		logger: o.Logger, now: o.Now, onNew: o.OnNewSession, onChange: o.OnChange, timeout: o.StageTimeout,
		active: map[string]*session{}, macs: map[string]string{}, done: map[string]time.Time{}, pending: map[string]token{},
	}
	var err error
	if t.m, err = newMetrics(o.Registerer, t.activeClients); err != nil {
		return nil, err
	}
	if err := t.load(ctx); err != nil {
		return nil, err
	}
	t.flush(ctx)
	return t, nil
}

// load reloads active sessions, and recently done ones for the gauge.
func (t *Tracker) load(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Every active one, however many machines were booting: one left out
	// would stay active in the store for good.
	act, truncated, err := store.ListAllSessions(ctx, t.sessions, store.SessionFilter{State: store.SessionActive}, 0)
	if err != nil {
		return fmt.Errorf("load active boot sessions: %w", err)
	}
	if truncated {
		t.logger.Warn("more active boot sessions started in one millisecond than one read answers; some not reloaded", "reloaded", len(act))
	}
	for _, st := range act { // newest first
		s := &session{Session: st, last: st.Started, stored: st.ID}
		if s.Stages == nil {
			s.Stages = map[string]time.Time{}
		}
		for _, at := range s.Stages {
			if at.After(s.last) {
				s.last = at
			}
		}
		if stageIndex(s.Expect) < stageIndex(StageHandoff) {
			s.Expect = StageHandoff
		}
		_, shim := s.Stages[StageShim]
		_, grub := s.Stages[StageGRUB]
		s.shim = shim || grub
		if newer := t.active[s.Client]; newer != nil {
			// Two active sessions for one client: the machine booted
			// again while the host was down.
			t.fail(s, newer.Started)
			continue
		}
		t.active[s.Client] = s
		if s.MAC != "" {
			t.macs[s.MAC] = s.Client
		}
	}
	done, err := t.sessions.ListSessions(ctx, store.SessionFilter{State: store.SessionDone, Limit: store.MaxSessionLimit})
	if err != nil {
		return fmt.Errorf("load done boot sessions: %w", err)
	}
	now := t.now()
	for _, st := range done {
		if now.Sub(st.Ended) <= t.timeout && st.Ended.After(t.done[st.Client]) {
			t.done[st.Client] = st.Ended
		}
	}
	if len(act) > 0 {
		t.logger.Info("boot sessions reloaded", "active", len(t.active))
	}
	return nil
}

// SetStageTimeout changes the stage timeout (config reload).
func (t *Tracker) SetStageTimeout(d time.Duration) {
	if d <= 0 {
		d = DefaultStageTimeout
	}
	t.mu.Lock()
	t.timeout = d
	t.mu.Unlock()
}

// Report implements host.Events: it moves sessions along. Events are
// taken in time order (a zero or future Time counts as now). It never
// fails: store errors are logged, the sessions go on in memory.
func (t *Tracker) Report(ctx context.Context, events []host.Event) error {
	if len(events) == 0 {
		return nil
	}
	// In a boot storm events queue for the lock, and the reporter may stop
	// waiting (a plugin's RPC deadline) before its turn: events handed
	// over are applied all the same, so their store lookups must not end
	// with the reporter's context (a thousand-machine storm lost 723
	// sessions' DHCP stage that way).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportTimeout)
	defer cancel()
	now := t.now()
	evs := make([]host.Event, len(events))
	copy(evs, events)
	for i := range evs {
		if evs[i].Time.IsZero() || evs[i].Time.After(now) {
			evs[i].Time = now
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })

	var fresh []string
	t.mu.Lock()
	for _, e := range evs {
		if c := t.observe(ctx, e, now); c != "" {
			fresh = append(fresh, c)
		}
	}
	t.mu.Unlock()
	t.flush(ctx)
	if t.onNew != nil {
		for _, c := range fresh {
			if err := t.onNew(context.WithoutCancel(ctx), c); err != nil {
				t.logger.Error("new boot session: reset of the volume failed", "client", c, "error", err)
			}
		}
	}
	return nil
}

// observe applies one event; it returns the client when a session started
// for a non-persistent client.
func (t *Tracker) observe(ctx context.Context, e host.Event, now time.Time) string {
	mac := ""
	if e.MAC != "" {
		if m, err := store.CanonicalMAC(e.MAC); err == nil {
			mac = m
		}
	}
	switch e.Type {
	case host.EventDHCPOffer, host.EventDHCPRequest, host.EventDHCPAck:
		if s := t.find(e.Client, mac); s != nil && e.Address != "" && s.Address != e.Address && sameFamily(s.Address, e.Address) {
			s.Address = e.Address
			t.persist(s)
		}
		return ""
	case host.EventFileServed:
		if eventStage(e) != "" {
			break // shim or grub: named by its boot's address, like the stages below
		}
		// A first-stage download never starts a session: it moves the
		// active one of the client it names, or of the address it went to.
		stage := firstStage(e.Attrs[host.AttrFile])
		if stage == "" {
			return ""
		}
		s := t.find(e.Client, mac)
		if s == nil && e.Client == "" && mac == "" {
			s = t.byAddress(e.Address)
		}
		if s != nil {
			t.advance(ctx, s, stage, e.Time, "")
		}
		return ""
	}
	stage := eventStage(e)
	if stage == "" || (dhcpStage(stage) && !fromFirmware(e)) {
		return ""
	}
	s := t.find(e.Client, mac)
	if s == nil {
		if !dhcpStage(stage) && stage != StageScript {
			return "" // a later stage never starts a boot
		}
		if e.Time.Before(now.Add(-t.timeout)) {
			return "" // stale: its session would have timed out already
		}
		c, err := t.resolve(ctx, e.Client, mac)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				t.logger.Warn("boot event of an unresolved machine dropped", "type", e.Type, "mac", mac, "client", e.Client, "error", err)
			}
			return ""
		}
		if s = t.active[c.Name]; s == nil {
			return t.start(ctx, c, mac, stage, e, now)
		}
	}
	if dhcpStage(stage) && s.current() > stageIndex(StageDHCP6) && e.Time.Sub(s.last) > t.grace {
		// The machine boots again before reaching its last stage (a
		// discover of either family while the session is at dhcp or
		// dhcp6 is the same boot's: iPXE asks both at once).
		t.logger.Info("boot session superseded: the machine booted again", "client", s.Client, "id", s.ID, "pending", s.next())
		t.fail(s, e.Time)
		c, err := t.resolve(ctx, s.Client, "")
		if err != nil {
			t.logger.Warn("no new boot session: client not resolved", "client", s.Client, "error", err)
			return ""
		}
		return t.start(ctx, c, mac, stage, e, now)
	}
	t.advance(ctx, s, stage, e.Time, e.Address)
	return ""
}

func eventStage(e host.Event) string {
	switch e.Type {
	case host.EventFileServed:
		switch e.Attrs[host.AttrLoader] {
		case StageShim:
			return StageShim
		case StageGRUB:
			return StageGRUB
		}
	case host.EventDHCPDiscover:
		if e.Attrs[host.AttrFamily] == host.FamilyIPv6 {
			return StageDHCP6
		}
		return StageDHCP
	case host.EventScriptServed:
		return StageScript
	case host.EventISCSILogin:
		return StageISCSILogin
	case host.EventISCSIHandoff:
		return StageHandoff
	case host.EventOSBooted:
		return StageBooted
	}
	return ""
}

// fromFirmware reports whether a DHCP event comes from boot firmware
// (PXE ROM, UEFI HTTP boot, iPXE) rather than an OS. The DHCPv6 plugin
// sets the same attributes from options 16 (vendor class), 15 (user
// class) and 61 (arch).
func fromFirmware(e host.Event) bool {
	vc := e.Attrs[AttrVendorClass]
	_, arch := e.Attrs[AttrArch]
	return strings.HasPrefix(vc, "PXEClient") || strings.HasPrefix(vc, "HTTPClient") ||
		e.Attrs[AttrUserClass] == "iPXE" || arch
}

// sameFamily reports whether a session's address old (may be "") may be
// replaced by addr: the session keeps the address family it got first, so
// that a dual-stack boot's session does not flip between its DHCPv4 and
// DHCPv6 leases.
func sameFamily(old, addr string) bool {
	a, err1 := netip.ParseAddr(old)
	b, err2 := netip.ParseAddr(addr)
	return err1 != nil || err2 != nil || a.Unmap().Is4() == b.Unmap().Is4()
}

// byAddress returns the active session whose address is addr (the
// latest started when several are), nil for none.
func (t *Tracker) byAddress(addr string) *session {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil
	}
	a = a.Unmap().WithZone("")
	var found *session
	for _, s := range t.active {
		b, err := netip.ParseAddr(s.Address)
		if err != nil || b.Unmap().WithZone("") != a {
			continue
		}
		if found == nil || s.Started.After(found.Started) {
			found = s
		}
	}
	return found
}

// find returns the active session of client, or of mac when client is "".
func (t *Tracker) find(client, mac string) *session {
	if client != "" {
		return t.active[client]
	}
	if c, ok := t.macs[mac]; ok && mac != "" {
		return t.active[c]
	}
	return nil
}

func (t *Tracker) resolve(ctx context.Context, client, mac string) (store.Client, error) {
	switch {
	case client != "":
		return t.clients.GetClient(ctx, client)
	case mac != "":
		return t.clients.ClientByMAC(ctx, mac)
	}
	return store.Client{}, store.ErrNotFound
}

// bootsShim reports whether the boot that e starts goes through shim, so
// that its session waits for the shim and grub stages: client c's image
// boots EFI x64 through shim and e is the discover of EFI x64 firmware
// (option 93: 7, 9 or their HTTP boot variants 16, 17; other
// architectures get iPXE). Not when the image cannot be read.
func (t *Tracker) bootsShim(ctx context.Context, c store.Client, e host.Event) bool {
	switch e.Attrs[AttrArch] {
	case "7", "9", "16", "17":
	default:
		return false
	}
	if t.images == nil || c.Image == "" {
		return false
	}
	img, err := t.images.GetImage(ctx, c.Image)
	return err == nil && img.Boot.UsesShim()
}

// expect is the last stage client c's boots reach.
func (t *Tracker) expect(ctx context.Context, c store.Client) string {
	if t.images == nil || c.Image == "" {
		return StageHandoff
	}
	img, err := t.images.GetImage(ctx, c.Image)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			t.logger.Warn("boot profile unknown: session ends at handoff", "client", c.Name, "image", c.Image, "error", err)
		}
		return StageHandoff
	}
	if img.Boot != nil && img.Boot.Confirm {
		return StageBooted
	}
	return StageHandoff
}

func (t *Tracker) start(ctx context.Context, c store.Client, mac, stage string, e host.Event, now time.Time) string {
	if mac == "" {
		mac = c.MAC
	}
	s := &session{
		Session: store.Session{
			Client: c.Name, MAC: mac, Address: e.Address, Stages: map[string]time.Time{stage: e.Time},
			Expect: t.expect(ctx, c), State: store.SessionActive, Started: e.Time,
		},
		last: e.Time,
		shim: t.bootsShim(ctx, c, e),
	}
	if p, ok := t.pending[c.Name]; ok {
		delete(t.pending, c.Name)
		if now.Sub(p.issued) <= t.timeout {
			s.token, s.TokenHash = p.raw, p.hash
		}
	}
	t.active[c.Name] = s
	if mac != "" {
		t.macs[mac] = c.Name
	}
	t.m.started.Inc()
	t.persist(s)
	t.logger.Debug("boot session started", "client", c.Name, "mac", mac, "stage", stage, "expect", s.Expect)
	if !c.Persistent {
		return c.Name
	}
	return ""
}

// current is the index of the latest stage reached.
func (s *session) current() int {
	cur := -1
	for st := range s.Stages {
		cur = max(cur, stageIndex(st))
	}
	return cur
}

// next is the stage the session waits for: optional stages are skipped,
// and so are shim and grub for a client that does not boot through shim.
func (s *session) next() string {
	for i := s.current() + 1; i < len(stages); i++ {
		if !optional[stages[i]] && (s.shim || !loaderStage(stages[i])) {
			return stages[i]
		}
	}
	return StageBooted
}

func (t *Tracker) advance(ctx context.Context, s *session, stage string, at time.Time, addr string) {
	changed := false
	if addr != "" && s.Address == "" {
		s.Address, changed = addr, true
	}
	cur := s.current()
	idx := stageIndex(stage)
	_, seen := s.Stages[stage]
	switch {
	case seen:
		// A duplicate.
	case idx < cur:
		// A late event of an earlier stage fills the gap when it
		// belongs to this boot.
		if !at.After(s.Stages[stages[cur]]) && !at.Before(s.Started.Add(-t.timeout)) {
			s.Stages[stage] = at
			if at.Before(s.Started) {
				s.Started = at
			}
			changed = true
		}
	default:
		s.Stages[stage] = at
		if at.After(s.last) {
			s.last = at
		}
		if idx >= stageIndex(s.Expect) {
			t.finish(ctx, s, at)
			return
		}
		changed = true
	}
	if changed {
		t.persist(s)
	}
}

func (t *Tracker) finish(ctx context.Context, s *session, at time.Time) {
	s.State, s.Ended = store.SessionDone, at
	t.m.bootTime.Observe(at.Sub(s.Started).Seconds())
	t.remove(s)
	if at.After(t.done[s.Client]) {
		t.done[s.Client] = at
	}
	t.persist(s)
	t.logger.Info("boot session done", "client", s.Client, "id", s.ID, "stage", stages[s.current()], "seconds", at.Sub(s.Started).Seconds())
}

func (t *Tracker) fail(s *session, at time.Time) {
	t.failAt(s, at, s.next())
}

// failAt ends s as failed at stage; the caller holds mu.
func (t *Tracker) failAt(s *session, at time.Time, stage string) {
	s.State, s.FailedStage, s.Ended = store.SessionFailed, stage, at
	t.m.failures.WithLabelValues(s.FailedStage).Inc()
	t.remove(s)
	t.persist(s)
	t.logger.Info("boot session failed", "client", s.Client, "id", s.ID, "stage", s.FailedStage)
}

func (t *Tracker) remove(s *session) {
	if t.active[s.Client] == s {
		delete(t.active, s.Client)
	}
	if t.macs[s.MAC] == s.Client {
		delete(t.macs, s.MAC)
	}
}

// persist queues s's state for the next flush; the caller holds mu.
func (t *Tracker) persist(s *session) {
	rec := s.Session
	rec.Stages = maps.Clone(s.Stages)
	s.changes++
	w := write{s: s, rec: rec, seq: s.changes}
	t.dirty = append(t.dirty, w)
	if s.ID != 0 {
		t.tell(w)
	}
}

// tell gives w's state to OnChange unless a later one was given; the
// caller holds mu.
func (t *Tracker) tell(w write) {
	if t.onChange == nil || w.seq <= w.s.told {
		return
	}
	w.s.told = w.seq
	rec := w.rec
	rec.ID = w.s.ID
	t.onChange(rec)
}

// flush writes the queued session changes (creating a session on its
// first write), after the caller released mu. A session changed several
// times since the last flush is written once, in its latest state; a
// store.SessionBatcher writes them all in one transaction. Failures are
// logged, and retried with the session's next change.
func (t *Tracker) flush(ctx context.Context) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.mu.Lock()
	batch := t.dirty
	t.dirty = nil
	t.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	latest := make(map[*session]int, len(batch))
	for i, w := range batch {
		latest[w.s] = i
	}
	ws := make([]write, 0, len(latest))
	for i, w := range batch {
		if latest[w.s] == i { // else a later state of this session follows
			ws = append(ws, w)
		}
	}
	ctx = context.WithoutCancel(ctx)
	defer t.told(ws)
	if b, ok := t.sessions.(store.SessionBatcher); ok && len(ws) > 1 && t.storeBatch(ctx, b, ws) {
		return
	}
	// One at a time: no batch writer, or the batch failed, as a whole, and
	// one by one each failure is logged with its session.
	for _, w := range ws {
		t.store(ctx, w)
	}
}

// told gives the written states not given yet (new sessions, now with
// their store IDs) to OnChange; the caller holds wmu.
func (t *Tracker) told(ws []write) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range ws {
		t.tell(w)
	}
}

// storeBatch writes ws in one transaction; the caller holds wmu. It
// reports whether they were all written.
func (t *Tracker) storeBatch(ctx context.Context, b store.SessionBatcher, ws []write) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	recs := make([]store.Session, len(ws))
	for i, w := range ws {
		recs[i] = w.rec
		recs[i].ID = w.s.stored
	}
	got, err := b.WriteSessions(ctx, recs)
	if err != nil {
		t.logger.Warn("boot sessions not stored as a batch; one by one", "sessions", len(ws), "error", err)
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, w := range ws {
		w.s.stored = got[i].ID
		w.s.ID = got[i].ID
	}
	return true
}

// store writes one session state; the caller holds wmu.
func (t *Tracker) store(ctx context.Context, w write) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, rec := w.s, w.rec
	if s.stored == 0 {
		got, err := t.sessions.CreateSession(ctx, rec)
		if err != nil {
			t.logger.Error("boot session not stored", "client", rec.Client, "error", err)
			return
		}
		s.stored = got.ID
		t.mu.Lock()
		s.ID = got.ID
		t.mu.Unlock()
		return
	}
	rec.ID = s.stored
	if err := t.sessions.UpdateSession(ctx, rec); err != nil {
		t.logger.Error("boot session not updated", "client", rec.Client, "id", rec.ID, "error", err)
	}
}

// Sweep fails the sessions whose next stage is overdue and forgets what
// no longer counts. Run calls it periodically; tests call it directly.
func (t *Tracker) Sweep(ctx context.Context) {
	defer t.flush(ctx)
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.active {
		if now.Sub(s.last) > t.timeout {
			t.fail(s, s.last.Add(t.timeout))
		}
	}
	for c, at := range t.done {
		if now.Sub(at) > t.timeout {
			delete(t.done, c)
		}
	}
	for c, p := range t.pending {
		if now.Sub(p.issued) > t.timeout {
			delete(t.pending, c)
		}
	}
}

// Run sweeps every tenth of the stage timeout (between 1 s and 30 s)
// until ctx ends.
func (t *Tracker) Run(ctx context.Context) {
	for {
		t.mu.Lock()
		every := min(max(t.timeout/10, time.Second), 30*time.Second)
		t.mu.Unlock()
		timer := time.NewTimer(every)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
			t.Sweep(ctx)
		}
	}
}

// Token returns the per-boot token of client's current boot, issuing it
// on first use: the token of its active session, or one the session that
// starts next adopts. The script renderer calls it for clients whose
// image confirms.
func (t *Tracker) Token(ctx context.Context, client string) (string, error) {
	defer t.flush(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if s := t.active[client]; s != nil {
		if s.token == "" {
			s.token, s.TokenHash = newToken()
			t.persist(s)
		}
		return s.token, nil
	}
	if p, ok := t.pending[client]; ok && now.Sub(p.issued) <= t.timeout {
		return p.raw, nil
	}
	raw, hash := newToken()
	t.pending[client] = token{raw: raw, hash: hash, issued: now}
	return raw, nil
}

func newToken() (raw, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand crashes the program instead)
	raw = base64.RawURLEncoding.EncodeToString(b)
	return raw, HashToken(raw)
}

// HashToken is the SHA-256 (hex) of a boot token, as Session.TokenHash.
func HashToken(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

// Confirm records that the OS of the session whose token is raw booted
// (POST /boot/done from remote). It returns nil, an error wrapping one of
// ErrTokenMissing, ErrTokenUnknown, ErrTokenReused, ErrTokenExpired, or a
// store error; every outcome is counted.
func (t *Tracker) Confirm(ctx context.Context, raw, remote string) error {
	result, err := t.confirm(ctx, raw, remote)
	t.flush(ctx)
	t.m.confirmations.WithLabelValues(result).Inc()
	if err != nil {
		t.logger.Info("boot confirmation refused", "result", result, "remote", remote, "error", err)
	}
	return err
}

// TokenClient returns the client whose boot session holds the token raw
// (active or stored), without using it; found is false for a token no
// session holds. /boot/done asks it first, to refuse a requester that is
// not bound to that client's boot before the token is spent.
func (t *Tracker) TokenClient(ctx context.Context, raw string) (client string, found bool, err error) {
	if raw == "" {
		return "", false, nil
	}
	hash := HashToken(raw)
	t.mu.Lock()
	for _, a := range t.active {
		if a.TokenHash == hash {
			t.mu.Unlock()
			return a.Client, true, nil
		}
	}
	t.mu.Unlock()
	st, err := t.sessions.SessionByToken(ctx, hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("boot token's session: %w", err)
	}
	return st.Client, true, nil
}

func (t *Tracker) confirm(ctx context.Context, raw, remote string) (string, error) {
	if raw == "" {
		return ResultMissing, ErrTokenMissing
	}
	hash := HashToken(raw)
	t.mu.Lock()
	defer t.mu.Unlock()
	var s *session
	for _, a := range t.active {
		if a.TokenHash == hash {
			s = a
			break
		}
	}
	if s == nil {
		st, err := t.sessions.SessionByToken(ctx, hash)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return ResultUnknown, ErrTokenUnknown
		case err != nil:
			return ResultError, fmt.Errorf("confirm boot: %w", err)
		case st.TokenUsed:
			return ResultReused, fmt.Errorf("%w (client %s, session %d)", ErrTokenReused, st.Client, st.ID)
		}
		return ResultExpired, fmt.Errorf("%w (client %s, session %d is %s)", ErrTokenExpired, st.Client, st.ID, st.State)
	}
	now := t.now()
	if now.Sub(s.last) > t.timeout {
		return ResultExpired, fmt.Errorf("%w (client %s, session %d waited since %s)", ErrTokenExpired, s.Client, s.ID, s.last.Format(time.RFC3339))
	}
	s.TokenUsed = true
	t.advance(ctx, s, StageBooted, now, remote)
	t.logger.Info("boot confirmed", "client", s.Client, "id", s.ID, "remote", remote)
	return ResultOK, nil
}

// LoaderFailed ends the active boot session holding the token raw as
// failed at stage, now: a boot loader of that boot (GRUB, whose kernel
// Secure Boot refused) reported that it cannot go on. Knowing the token
// is the proof that the report comes from that boot, and bound, the
// caller's check of the reporter's address, must accept the session's
// client too. Only active sessions are searched (no store lookup: the
// report arrives over an unauthenticated protocol). stage is the failure
// stage when the session has reached it, else the stage it waits for.
func (t *Tracker) LoaderFailed(ctx context.Context, raw, stage string, bound func(client string) bool) error {
	if raw == "" {
		return ErrTokenMissing
	}
	hash := HashToken(raw)
	find := func() *session {
		for _, a := range t.active {
			if a.TokenHash == hash {
				return a
			}
		}
		return nil
	}
	t.mu.Lock()
	s := find()
	t.mu.Unlock()
	if s == nil {
		return ErrTokenUnknown
	}
	client := s.Client
	if !bound(client) {
		return fmt.Errorf("boot failure of client %s reported from an address not bound to its boot", client)
	}
	t.mu.Lock()
	if s = find(); s == nil || s.Client != client {
		t.mu.Unlock()
		return ErrTokenUnknown
	}
	if _, reached := s.Stages[stage]; !reached {
		stage = s.next()
	}
	t.failAt(s, t.now(), stage)
	t.mu.Unlock()
	t.flush(ctx)
	return nil
}

// Active returns a copy of the active sessions, oldest first.
func (t *Tracker) Active() []store.Session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]store.Session, 0, len(t.active))
	for _, s := range t.active {
		c := s.Session
		c.Stages = maps.Clone(s.Stages)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out
}

// activeClients is dls_active_clients.
func (t *Tracker) activeClients() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	n := len(t.active)
	for c, at := range t.done {
		if _, busy := t.active[c]; !busy && now.Sub(at) <= t.timeout {
			n++
		}
	}
	return float64(n)
}

var _ host.Events = (*Tracker)(nil)
