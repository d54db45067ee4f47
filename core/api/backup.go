package api

// Backup and restore of the state store. GET backup answers one JSON
// document with every client, image and DHCP lease, the newest boot
// sessions and audit entries; POST restore takes such a document back into
// the store. Clients come with their CHAP secrets, the one place the API
// gives them out, so that a restore brings clients back as they were: the
// document is a secret, and only admins may read it. A client restored
// without a secret (a backup from before CHAP was on by default) gets one
// at the host's next start or reload (core/reconcile).
//
// Consistency: the store offers no read transaction across its tables, so
// each table is read with one query (consistent within itself) while this
// host's API writes are held off (writeMu), and the clients and images are
// read again at the end: if other writers (a config reload, another host on
// a shared database) changed them meanwhile, the whole read is retried.
// Leases, sessions and audit entries keep moving (DHCP, boots) and are as
// of their own read. A store method reading every table in one read
// transaction (SQLite: one BEGIN on a read connection; PostgreSQL:
// REPEATABLE READ, READ ONLY) would close that gap.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/core/supervisor"
	"github.com/dls-project/dls/sdk/storage"
)

// The backup document's format and version; POST restore refuses others.
const (
	BackupFormat  = "dls-backup"
	BackupVersion = 1
)

// MaxRestoreBytes is the largest document POST restore reads, and so the
// largest GET backup answers.
const MaxRestoreBytes = 64 << 20

// Audit entries GET backup includes: the newest defaultBackupAudit unless
// ?audit= says otherwise (0: none).
const (
	defaultBackupAudit = 100000
	maxBackupAudit     = 1000000
)

// backupAttempts bounds the reads of a backup whose clients or images
// changed while it was read.
const backupAttempts = 3

// restoreTimeout bounds a restore, which runs to the end even when the
// caller goes away (a restore cut in the middle is harmless, since a
// second one gives the same result, but confusing).
const restoreTimeout = 10 * time.Minute

// leaseBatch is how many leases one CommitLeases of a restore takes.
const leaseBatch = 500

// backupDoc is the backup document.
type backupDoc struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// Clients and Images by name; Leases by address.
	Clients []backupClient `json:"clients"`
	Images  []backupImage  `json:"images"`
	Leases  []backupLease  `json:"leases"`
	// Sessions are the newest boot sessions (at most
	// store.MaxSessionLimit), newest first.
	Sessions []sessionJSON `json:"sessions"`
	// Audit holds the newest entries, oldest first.
	Audit []auditEntry `json:"audit"`
}

// backupClient is a client with its CHAP secrets.
type backupClient struct {
	clientJSON
	CHAPSecret       string `json:"chap_secret,omitempty"`
	CHAPMutualSecret string `json:"chap_mutual_secret,omitempty"`
}

type backupImage struct {
	imageBody
	Origin    string    `json:"origin"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

type backupLease struct {
	Pool     string    `json:"pool"`
	Address  string    `json:"address"`
	MAC      string    `json:"mac"`
	Expires  time.Time `json:"expires"`
	State    string    `json:"state"`
	Hostname string    `json:"hostname,omitempty"`
}

// sessionCreator is the part of store.Sessions a restore needs to bring
// sessions back; stores without it restore none.
type sessionCreator interface {
	CreateSession(ctx context.Context, s store.Session) (store.Session, error)
}

// backup: GET backup[?audit=N].
func (a *API) backup(w http.ResponseWriter, r *http.Request) error {
	auditLimit := defaultBackupAudit
	if s := r.URL.Query().Get("audit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > maxBackupAudit {
			return fieldError("audit", "audit %q: want a number of audit entries from 0 to %d", s, maxBackupAudit)
		}
		auditLimit = n
	}
	leases, ok := a.deps.Store.(store.Leases)
	if !ok {
		return errorf(http.StatusNotImplemented, "this host's state store does not offer its DHCP leases: no backup")
	}
	ctx := r.Context()
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	var doc backupDoc
	for attempt := 1; ; attempt++ {
		var err error
		if doc, err = a.readBackup(ctx, leases, auditLimit); err != nil {
			return fmt.Errorf("back up the state store: %w", err)
		}
		same, err := a.sameClientsAndImages(ctx, doc)
		if err != nil {
			return fmt.Errorf("back up the state store: %w", err)
		}
		if same {
			break
		}
		if attempt == backupAttempts {
			return errorf(http.StatusServiceUnavailable, "clients or images kept changing while the backup was read (%d attempts); retry", attempt)
		}
		a.logger.Info("backup: clients or images changed during the read; reading again", "attempt", attempt)
	}
	body, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("encode backup: %w", err)
	}
	body = append(body, '\n')
	if len(body) > MaxRestoreBytes {
		return &apiError{status: http.StatusBadRequest, field: "audit",
			msg: fmt.Sprintf("the backup would be %d bytes, more than the %d a restore accepts; keep fewer audit entries (?audit=, now %d)", len(body), MaxRestoreBytes, auditLimit)}
	}
	a.auditReq(r, "store.backup", "store", backupCounts(doc))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="dls-backup-%s.json"`, doc.Created.Format("20060102T150405Z")))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

func backupCounts(doc backupDoc) map[string]int {
	return map[string]int{"clients": len(doc.Clients), "images": len(doc.Images), "leases": len(doc.Leases), "sessions": len(doc.Sessions), "audit": len(doc.Audit)}
}

// readBackup reads every table once.
func (a *API) readBackup(ctx context.Context, leases store.Leases, auditLimit int) (backupDoc, error) {
	doc := backupDoc{Format: BackupFormat, Version: BackupVersion, Created: a.clock.Now().UTC()}
	var err error
	if doc.Images, doc.Clients, err = a.readClientsAndImages(ctx); err != nil {
		return doc, err
	}
	ls, err := leases.LoadLeases(ctx, "")
	if err != nil {
		return doc, err
	}
	doc.Leases = make([]backupLease, len(ls))
	for i, l := range ls {
		doc.Leases[i] = backupLease{Pool: l.Pool, Address: l.Address.String(), MAC: l.MAC, Expires: l.Expires, State: string(l.State), Hostname: l.Hostname}
	}
	ss, err := a.deps.Store.ListSessions(ctx, store.SessionFilter{Limit: store.MaxSessionLimit})
	if err != nil {
		return doc, err
	}
	doc.Sessions = make([]sessionJSON, len(ss))
	for i, s := range ss {
		doc.Sessions[i] = toSessionJSON(s)
	}
	doc.Audit = []auditEntry{}
	if auditLimit > 0 {
		es, err := a.deps.Store.ListAudit(ctx, auditLimit)
		if err != nil {
			return doc, err
		}
		doc.Audit = make([]auditEntry, len(es))
		for i, e := range es {
			// Newest first from the store; oldest first in the document.
			doc.Audit[len(es)-1-i] = auditEntry{ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Object: e.Object, Detail: e.Detail, Source: e.Source}
		}
	}
	return doc, nil
}

func (a *API) readClientsAndImages(ctx context.Context) ([]backupImage, []backupClient, error) {
	ims, err := a.deps.Store.ListImages(ctx)
	if err != nil {
		return nil, nil, err
	}
	cs, err := a.deps.Store.ListClients(ctx)
	if err != nil {
		return nil, nil, err
	}
	images := make([]backupImage, len(ims))
	for i, im := range ims {
		images[i] = backupImage{imageBody: imageBody{Name: im.Name, Storage: im.Storage, Source: im.Source, Boot: im.Boot},
			Origin: im.Origin, CreatedAt: im.CreatedAt, UpdatedAt: im.UpdatedAt}
	}
	clients := make([]backupClient, len(cs))
	for i, c := range cs {
		clients[i] = backupClient{clientJSON: toClientJSON(c), CHAPSecret: c.CHAPSecret, CHAPMutualSecret: c.CHAPMutualSecret}
	}
	return images, clients, nil
}

// sameClientsAndImages reads the clients and images again and reports
// whether they are still those of doc.
func (a *API) sameClientsAndImages(ctx context.Context, doc backupDoc) (bool, error) {
	images, clients, err := a.readClientsAndImages(ctx)
	if err != nil {
		return false, err
	}
	before, err := json.Marshal([]any{doc.Images, doc.Clients})
	if err != nil {
		return false, err
	}
	after, err := json.Marshal([]any{images, clients})
	if err != nil {
		return false, err
	}
	return bytes.Equal(before, after), nil
}

// restoreSummary is what POST restore answers.
type restoreSummary struct {
	Clients  restoreCount `json:"clients"`
	Images   restoreCount `json:"images"`
	Leases   restoreCount `json:"leases"`
	Sessions restoreCount `json:"sessions"`
	Audit    restoreCount `json:"audit"`
	// Conflicts are objects the store refused: a client whose MAC,
	// address or initiator belongs to another client here, a lease whose
	// address another MAC holds live here.
	Conflicts []restoreConflict `json:"conflicts"`
	// Warnings are restored objects that may not work as they are.
	Warnings []string `json:"warnings,omitempty"`
}

// restoreCount counts one kind of object: in the backup, written,
// already so in the store, and left out (conflicts, or kept as the store
// has them).
type restoreCount struct {
	InBackup  int `json:"in_backup"`
	Restored  int `json:"restored"`
	Unchanged int `json:"unchanged"`
	Skipped   int `json:"skipped"`
}

type restoreConflict struct {
	Kind   string `json:"kind"`
	Object string `json:"object"`
	Error  string `json:"error"`
	// Holder is, for a lease, the MAC that holds the address.
	Holder string `json:"holder,omitempty"`
}

// restore: POST restore takes a backup document: images and clients are
// upserted, leases committed (never over another MAC's live lease),
// finished sessions and audit entries missing here added, then a
// store.restore audit entry. The whole document is checked before
// anything is written.
func (a *API) restore(w http.ResponseWriter, r *http.Request) error {
	doc, err := decodeBackup(w, r)
	if err != nil {
		return err
	}
	leases, ok := a.deps.Store.(store.Leases)
	if !ok && len(doc.Leases) > 0 {
		return errorf(http.StatusNotImplemented, "this host's state store does not take DHCP leases: no restore")
	}
	plan, err := checkBackup(doc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), restoreTimeout)
	defer cancel()
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	sum := restoreSummary{Conflicts: []restoreConflict{}}
	if err := a.restoreImages(ctx, plan.images, &sum); err != nil {
		return err
	}
	if err := a.restoreClients(ctx, plan.clients, &sum); err != nil {
		return err
	}
	if err := restoreLeases(ctx, leases, plan.leases, a.clock.Now(), &sum); err != nil {
		return err
	}
	if err := a.restoreSessions(ctx, plan.sessions, &sum); err != nil {
		return err
	}
	if err := a.restoreAudit(ctx, plan.audit, &sum); err != nil {
		return err
	}
	a.auditReq(r, "store.restore", "store", map[string]any{
		"backup_created": doc.Created, "clients": sum.Clients, "images": sum.Images, "leases": sum.Leases,
		"sessions": sum.Sessions, "audit": sum.Audit, "conflicts": len(sum.Conflicts),
	})
	writeJSON(w, http.StatusOK, sum)
	return nil
}

// decodeBackup reads a backup document: at most MaxRestoreBytes, JSON,
// format and version known, no unknown fields.
func decodeBackup(w http.ResponseWriter, r *http.Request) (backupDoc, error) {
	var doc backupDoc
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRestoreBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return doc, errorf(http.StatusRequestEntityTooLarge, "backup document is larger than %d bytes", mbe.Limit)
		}
		return doc, errorf(http.StatusBadRequest, "read request body: %v", err)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return doc, errorf(http.StatusBadRequest, "request body is empty; want a backup document (GET %s/backup)", Prefix)
	}
	if ct := r.Header.Get("Content-Type"); ct == "" {
		return doc, errorf(http.StatusUnsupportedMediaType, "Content-Type is missing; want application/json")
	} else if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return doc, errorf(http.StatusUnsupportedMediaType, "Content-Type %q is not supported; want application/json", ct)
	}
	// Format and version first, so that another document is named as
	// such rather than by its first unknown field. Unmarshal also refuses
	// anything after the value.
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return doc, jsonError(err)
	}
	if head.Format != BackupFormat {
		return doc, fieldError("format", "format %q: not a DLS backup (want %q, from GET %s/backup)", head.Format, BackupFormat, Prefix)
	}
	if head.Version != BackupVersion {
		return doc, fieldError("version", "backup version %d: this host restores version %d", head.Version, BackupVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return doc, jsonError(err)
	}
	return doc, nil
}

// restorePlan is a checked document in the store's types.
type restorePlan struct {
	images   []store.Image
	clients  []store.Client
	leases   []store.Lease
	sessions []store.Session
	audit    []store.AuditEntry
}

// checkBackup converts doc, refusing (400, nothing written) any object
// the API would not accept.
func checkBackup(doc backupDoc) (restorePlan, error) {
	var p restorePlan
	for i, b := range doc.Images {
		if err := storage.ValidName(b.Name); err != nil {
			return p, fieldError("images", "images[%d]: name %q: want 1-64 of a-z 0-9 . _ -, starting with a letter or digit", i, b.Name)
		}
		if b.Storage == "" {
			return p, fieldError("images", "images[%d] (%s): storage is empty", i, b.Name)
		}
		if b.Boot != nil && b.Boot.Kernel == "" {
			return p, fieldError("images", "images[%d] (%s): boot.kernel is required in a boot profile", i, b.Name)
		}
		if b.Boot != nil && b.Boot.Loader != "" && b.Boot.Loader != store.LoaderIPXE && b.Boot.Loader != store.LoaderShim {
			return p, fieldError("images", "images[%d] (%s): boot.loader must be %q or %q, not %q", i, b.Name, store.LoaderIPXE, store.LoaderShim, b.Boot.Loader)
		}
		origin := b.Origin
		if origin == "" {
			origin = originAPI
		}
		p.images = append(p.images, store.Image{Name: b.Name, Storage: b.Storage, Source: b.Source, Boot: b.Boot, Origin: origin})
	}
	for i, b := range doc.Clients {
		if !clientNameRE.MatchString(b.Name) {
			return p, fieldError("clients", "clients[%d]: name %q: want 1-64 of a-z 0-9 . -, starting with a letter or digit", i, b.Name)
		}
		c := store.Client{Name: b.Name, MAC: b.MAC, Image: b.Image, Initiators: b.Initiators, Persistent: b.Persistent, Labels: b.Labels,
			CHAPSecret: b.CHAPSecret, CHAPMutualSecret: b.CHAPMutualSecret, Volume: b.Volume}
		if b.Address != "" {
			addr, err := netip.ParseAddr(b.Address)
			if err != nil || !addr.Is4() {
				return p, fieldError("clients", "clients[%d] (%s): address %q is not an IPv4 address", i, b.Name, b.Address)
			}
			c.Address = addr
		}
		for _, s := range b.ExtraAddresses {
			addr, err := netip.ParseAddr(s)
			if err != nil || addr.Zone() != "" {
				return p, fieldError("clients", "clients[%d] (%s): extra address %q is not an IP address", i, b.Name, s)
			}
			c.ExtraAddresses = append(c.ExtraAddresses, addr)
		}
		if b.Image == "" {
			return p, fieldError("clients", "clients[%d] (%s): image is empty", i, b.Name)
		}
		n, err := c.Normalize()
		if err != nil {
			return p, fieldError("clients", "clients[%d]: %v", i, err)
		}
		p.clients = append(p.clients, n)
	}
	for i, b := range doc.Leases {
		addr, err := netip.ParseAddr(b.Address)
		if err != nil {
			return p, fieldError("leases", "leases[%d]: address %q is not an IPv4 address", i, b.Address)
		}
		l, err := store.Lease{Pool: b.Pool, Address: addr, MAC: b.MAC, Expires: b.Expires, State: store.LeaseState(b.State), Hostname: b.Hostname}.Normalize()
		if err != nil {
			return p, fieldError("leases", "leases[%d]: %v", i, err)
		}
		p.leases = append(p.leases, l)
	}
	for i, b := range doc.Sessions {
		s, err := store.Session{Client: b.Client, MAC: b.MAC, Address: b.Address, Stages: b.Stages, Expect: b.Expect, State: b.State,
			FailedStage: b.FailedStage, TokenUsed: b.TokenUsed, Started: b.Started, Ended: b.Ended}.Normalize()
		if err != nil {
			return p, fieldError("sessions", "sessions[%d]: %v", i, err)
		}
		p.sessions = append(p.sessions, s)
	}
	for i, b := range doc.Audit {
		if b.Action == "" {
			return p, fieldError("audit", "audit[%d]: action is empty", i)
		}
		p.audit = append(p.audit, store.AuditEntry{Time: b.Time, Actor: b.Actor, Action: b.Action, Object: b.Object, Detail: b.Detail, Source: b.Source})
	}
	return p, nil
}

func (a *API) restoreImages(ctx context.Context, images []store.Image, sum *restoreSummary) error {
	sum.Images.InBackup = len(images)
	for _, im := range images {
		old, err := a.deps.Store.GetImage(ctx, im.Name)
		switch {
		case err == nil && old.Storage == im.Storage && old.Source == im.Source && old.Origin == im.Origin && reflect.DeepEqual(old.Boot, im.Boot):
			sum.Images.Unchanged++
			continue
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("restore image %s: %w", im.Name, err)
		}
		if err := a.deps.Store.PutImage(ctx, im); err != nil {
			return fmt.Errorf("restore image %s: %w", im.Name, err)
		}
		sum.Images.Restored++
		if a.listsPlugins && !slices.ContainsFunc(a.deps.Plugins(), func(p supervisor.Status) bool { return p.Kind == "storage" && p.Name == im.Storage }) {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("image %s lives on storage %s, which this host does not run", im.Name, im.Storage))
		}
	}
	return nil
}

// restoreClients upserts clients. One refused because another client here
// holds its MAC, address or initiator is tried again once the others are
// in (that client may have been restored with other ones meanwhile).
func (a *API) restoreClients(ctx context.Context, clients []store.Client, sum *restoreSummary) error {
	sum.Clients.InBackup = len(clients)
	refused, err := a.putClients(ctx, clients, sum, false)
	if err != nil || len(refused) == 0 {
		return err
	}
	_, err = a.putClients(ctx, refused, sum, true)
	return err
}

// putClients writes clients; with final, a refusal is a conflict,
// otherwise the client is returned to be tried again.
func (a *API) putClients(ctx context.Context, clients []store.Client, sum *restoreSummary, final bool) ([]store.Client, error) {
	var refused []store.Client
	for _, c := range clients {
		old, err := a.deps.Store.GetClient(ctx, c.Name)
		if err == nil {
			old.CreatedAt, old.UpdatedAt = time.Time{}, time.Time{}
			if reflect.DeepEqual(old, c) {
				sum.Clients.Unchanged++
				continue
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("restore client %s: %w", c.Name, err)
		}
		err = a.deps.Store.PutClient(ctx, c)
		switch {
		case errors.Is(err, store.ErrConflict) && !final:
			refused = append(refused, c)
			continue
		case errors.Is(err, store.ErrConflict), errors.Is(err, store.ErrInvalid):
			sum.Clients.Skipped++
			sum.Conflicts = append(sum.Conflicts, restoreConflict{Kind: "client", Object: c.Name, Error: err.Error()})
			continue
		case err != nil:
			return nil, fmt.Errorf("restore client %s: %w", c.Name, err)
		}
		sum.Clients.Restored++
		if _, err := a.deps.Store.GetImage(ctx, c.Image); errors.Is(err, store.ErrNotFound) {
			sum.Warnings = append(sum.Warnings, fmt.Sprintf("client %s boots image %s, which this store does not hold", c.Name, c.Image))
		}
	}
	return refused, nil
}

// restoreLeases commits the backup's leases where the store knows nothing
// newer: an address it does not hold, or holds for the same MAC with an
// earlier expiry. A live backup lease of an address another MAC holds is
// committed too, and the store refuses it while that MAC's lease is live
// (a conflict); an ended one (released, expired) is left out, the store's
// record being the newer.
func restoreLeases(ctx context.Context, leases store.Leases, in []store.Lease, now time.Time, sum *restoreSummary) error {
	sum.Leases.InBackup = len(in)
	if len(in) == 0 {
		return nil
	}
	current, err := leases.LoadLeases(ctx, "")
	if err != nil {
		return fmt.Errorf("restore leases: %w", err)
	}
	held := make(map[netip.Addr]store.Lease, len(current))
	for _, l := range current {
		held[l.Address] = l
	}
	var batch []store.Lease
	for _, l := range in {
		cur, ok := held[l.Address]
		switch {
		case !ok:
		case cur.MAC == l.MAC && !cur.Expires.Before(l.Expires):
			sum.Leases.Unchanged++
			continue
		case cur.MAC != l.MAC && (l.State == store.LeaseReleased || !now.Before(l.Expires)):
			sum.Leases.Skipped++
			continue
		}
		batch = append(batch, l)
	}
	for len(batch) > 0 {
		n := min(len(batch), leaseBatch)
		rs, err := leases.CommitLeases(ctx, batch[:n])
		if err != nil {
			return fmt.Errorf("restore leases: %w", err)
		}
		for i, res := range rs {
			l := batch[i]
			if res.OK {
				sum.Leases.Restored++
				continue
			}
			sum.Leases.Skipped++
			sum.Conflicts = append(sum.Conflicts, restoreConflict{Kind: "lease", Object: l.Address.String(), Holder: res.Holder,
				Error: fmt.Sprintf("address %s (backup: %s) is leased to %s here", l.Address, l.MAC, res.Holder)})
		}
		batch = batch[n:]
	}
	return nil
}

// restoreSessions adds the backup's finished sessions the store does not
// hold (by client, MAC and start), oldest first, with new IDs. Active
// sessions are left out: that boot went on without this store.
func (a *API) restoreSessions(ctx context.Context, in []store.Session, sum *restoreSummary) error {
	sum.Sessions.InBackup = len(in)
	if len(in) == 0 {
		return nil
	}
	sc, ok := a.deps.Store.(sessionCreator)
	if !ok {
		sum.Sessions.Skipped = len(in)
		sum.Warnings = append(sum.Warnings, "this host's state store does not take boot sessions: none restored")
		return nil
	}
	have, err := a.deps.Store.ListSessions(ctx, store.SessionFilter{Limit: store.MaxSessionLimit})
	if err != nil {
		return fmt.Errorf("restore sessions: %w", err)
	}
	key := func(s store.Session) string {
		return s.Client + "|" + s.MAC + "|" + strconv.FormatInt(s.Started.UnixMilli(), 10)
	}
	known := make(map[string]bool, len(have))
	for _, s := range have {
		known[key(s)] = true
	}
	in = slices.Clone(in)
	slices.SortStableFunc(in, func(x, y store.Session) int { return x.Started.Compare(y.Started) })
	for _, s := range in {
		switch {
		case s.State == store.SessionActive:
			sum.Sessions.Skipped++
			continue
		case known[key(s)]:
			sum.Sessions.Unchanged++
			continue
		}
		if _, err := sc.CreateSession(ctx, s); err != nil {
			return fmt.Errorf("restore session of %s started %s: %w", s.Client, s.Started.Format(time.RFC3339), err)
		}
		known[key(s)] = true
		sum.Sessions.Restored++
	}
	return nil
}

// restoreAudit appends the backup's entries the log does not hold (same
// time, actor, action, object, detail and source), oldest first.
func (a *API) restoreAudit(ctx context.Context, in []store.AuditEntry, sum *restoreSummary) error {
	sum.Audit.InBackup = len(in)
	if len(in) == 0 {
		return nil
	}
	have, err := a.deps.Store.ListAudit(ctx, 0)
	if err != nil {
		return fmt.Errorf("restore audit log: %w", err)
	}
	key := func(e store.AuditEntry) string {
		b, _ := json.Marshal([]any{e.Time.UnixMilli(), e.Actor, e.Action, e.Object, e.Detail, e.Source})
		return string(b)
	}
	known := make(map[string]bool, len(have))
	for _, e := range have {
		known[key(e)] = true
	}
	in = slices.Clone(in)
	slices.SortStableFunc(in, func(x, y store.AuditEntry) int { return x.Time.Compare(y.Time) })
	for _, e := range in {
		if known[key(e)] {
			sum.Audit.Unchanged++
			continue
		}
		if err := a.deps.Store.AppendAudit(ctx, e); err != nil {
			return fmt.Errorf("restore audit entry %s %s: %w", e.Action, e.Object, err)
		}
		known[key(e)] = true
		sum.Audit.Restored++
	}
	return nil
}
