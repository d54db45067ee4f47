package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

// leaseStore is a memStore with leases (the store's commit rule) and
// sessions that can be created; onLoad runs at every LoadLeases.
type leaseStore struct {
	*memStore
	lmu    sync.Mutex
	leases map[netip.Addr]store.Lease
	onLoad func()
	nextID int64
}

var _ store.Leases = (*leaseStore)(nil)

func withLeases(ls **leaseStore) func(*Deps, *Options) {
	return func(d *Deps, _ *Options) {
		*ls = &leaseStore{memStore: d.Store.(*memStore), leases: map[netip.Addr]store.Lease{}}
		d.Store = *ls
	}
}

func (s *leaseStore) LoadLeases(context.Context, string) ([]store.Lease, error) {
	if s.onLoad != nil {
		s.onLoad()
	}
	s.lmu.Lock()
	defer s.lmu.Unlock()
	var out []store.Lease
	for _, l := range s.leases {
		out = append(out, l)
	}
	return out, nil
}

func (s *leaseStore) CommitLeases(_ context.Context, ls []store.Lease) ([]store.LeaseResult, error) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	now := s.now()
	out := make([]store.LeaseResult, len(ls))
	for i, l := range ls {
		l, err := l.Normalize()
		if err != nil {
			return nil, err
		}
		if cur, ok := s.leases[l.Address]; ok && cur.MAC != l.MAC && cur.State != store.LeaseReleased && now.Before(cur.Expires) {
			out[i] = store.LeaseResult{Holder: cur.MAC}
			continue
		}
		s.leases[l.Address] = l
		out[i] = store.LeaseResult{OK: true}
	}
	return out, nil
}

func (s *leaseStore) CreateSession(_ context.Context, ss store.Session) (store.Session, error) {
	s.memStore.mu.Lock()
	defer s.memStore.mu.Unlock()
	s.nextID++
	ss.ID = s.nextID
	s.sessions[ss.ID] = ss
	return ss, nil
}

func lease(addr, mac string, expires time.Time, state store.LeaseState) store.Lease {
	return store.Lease{Pool: "lab", Address: netip.MustParseAddr(addr), MAC: mac, Expires: expires, State: state}
}

func TestBackupNeedsAdminAndLeases(t *testing.T) {
	e := newEnv(t)
	op := e.login("oscar").AccessToken
	e.wantError(e.do("GET", "/backup", op, nil), http.StatusForbidden, "role operator may not GET", "")
	e.wantError(e.do("POST", "/restore", op, `{"format":"dls-backup","version":1}`), http.StatusForbidden, "role operator may not POST", "")
	admin := e.login("alice").AccessToken
	// memStore keeps no leases: no backup rather than one without them.
	e.wantError(e.do("GET", "/backup", admin, nil), http.StatusNotImplemented, "does not offer its DHCP leases", "")
	e.wantError(e.do("POST", "/restore", admin, `{"format":"dls-backup","version":1,"leases":[{"address":"10.0.0.1","mac":"aa:bb:cc:dd:ee:01","state":"bound","expires":"2026-01-01T00:00:00Z"}]}`),
		http.StatusNotImplemented, "does not take DHCP leases", "")
}

func TestBackupHoldsSecretsAndRereadsChangedClients(t *testing.T) {
	var ls *leaseStore
	e := newEnv(t, withLeases(&ls))
	ctx := context.Background()
	if err := e.st.PutClient(ctx, store.Client{Name: "pc-01", MAC: "aa:bb:cc:dd:ee:01", Image: "win11", CHAPSecret: "s3cret-chap"}); err != nil {
		t.Fatal(err)
	}
	tok := e.login("alice").AccessToken
	// GET clients never shows the secret; the backup does.
	if w := e.do("GET", "/clients/pc-01", tok, nil); strings.Contains(w.Body.String(), "s3cret") {
		t.Fatalf("GET client shows the CHAP secret: %s", w.Body)
	}
	// A client appears during the first read (a config reload): the
	// backup is read again and holds it.
	loads := 0
	ls.onLoad = func() {
		if loads++; loads == 1 {
			if err := e.st.PutClient(ctx, store.Client{Name: "pc-02", MAC: "aa:bb:cc:dd:ee:02", Image: "win11"}); err != nil {
				t.Error(err)
			}
		}
	}
	var doc backupDoc
	w := e.do("GET", "/backup?audit=10", tok, nil)
	e.want(w, http.StatusOK, &doc)
	if loads != 2 || len(doc.Clients) != 2 || doc.Clients[0].CHAPSecret != "s3cret-chap" || doc.Format != BackupFormat || doc.Version != BackupVersion {
		t.Fatalf("loads %d, backup %+v", loads, doc)
	}
	if cd := w.Header().Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="dls-backup-`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	if len(doc.Audit) != 1 || doc.Audit[0].Action != "auth.login" {
		t.Errorf("audit in the backup: %+v", doc.Audit)
	}
	if got := e.st.auditActions(); got[len(got)-1] != "store.backup" {
		t.Errorf("audit %v", got)
	}
	// Clients that never stop changing: 503 after three reads.
	n := 0
	ls.onLoad = func() {
		n++
		if err := e.st.PutClient(ctx, store.Client{Name: fmt.Sprintf("pc-x%d", n), MAC: fmt.Sprintf("aa:bb:cc:dd:ff:%02x", n), Image: "win11"}); err != nil {
			t.Error(err)
		}
	}
	e.wantError(e.do("GET", "/backup", tok, nil), http.StatusServiceUnavailable, "kept changing", "")
	if n != backupAttempts {
		t.Errorf("%d reads, want %d", n, backupAttempts)
	}
	ls.onLoad = nil
	e.wantError(e.do("GET", "/backup?audit=-1", tok, nil), http.StatusBadRequest, "audit \"-1\"", "audit")
	var empty backupDoc
	e.want(e.do("GET", "/backup?audit=0", tok, nil), http.StatusOK, &empty)
	if empty.Audit == nil || len(empty.Audit) != 0 || empty.Leases == nil {
		t.Errorf("audit=0: %+v", empty)
	}
}

func TestRestoreRefusesBadDocuments(t *testing.T) {
	var ls *leaseStore
	e := newEnv(t, withLeases(&ls))
	tok := e.login("alice").AccessToken
	before := e.st.snapshot()
	big := append([]byte(`{"format":"dls-backup","version":1,"audit":[`), bytes.Repeat([]byte(" "), MaxRestoreBytes)...)
	e.wantError(e.do("POST", "/restore", tok, big), http.StatusRequestEntityTooLarge, "larger than 67108864 bytes", "")
	e.wantError(e.do("POST", "/restore", tok, `{"format":"dls-backup","version":1}`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "want application/json", "")
	e.wantError(e.do("POST", "/restore", tok, ""), http.StatusBadRequest, "request body is empty", "")
	e.wantError(e.do("POST", "/restore", tok, `[1,2]`), http.StatusBadRequest, "want a JSON object", "")
	e.wantError(e.do("POST", "/restore", tok, `{"format":"dls-backup","version":1,"images":[{"name":"Bad/Name","storage":"tank"}]}`), http.StatusBadRequest, "images[0]: name \"Bad/Name\"", "images")
	e.wantError(e.do("POST", "/restore", tok, `{"format":"dls-backup","version":1,"clients":[{"name":"pc-01","mac":"aa:bb:cc:dd:ee:01","image":"win11"},{"name":"pc-02","mac":"aa:bb:cc:dd:ee:02","image":"win11","address":"fe80::1"}]}`),
		http.StatusBadRequest, "clients[1] (pc-02): address \"fe80::1\"", "clients")
	e.wantError(e.do("POST", "/restore", tok, `{"format":"dls-backup","version":1,"audit":[{"id":1,"time":"2026-01-01T00:00:00Z","actor":"x","action":"","object":"y"}]}`), http.StatusBadRequest, "audit[0]: action is empty", "audit")
	e.wantError(e.do("POST", "/restore", tok, `{"format":"dls-backup","version":1} {}`), http.StatusBadRequest, "malformed JSON", "")
	if after := e.st.snapshot(); after != before {
		t.Errorf("a refused restore changed the store:\n%s\n%s", before, after)
	}
	if len(ls.leases) != 0 {
		t.Errorf("leases written: %v", ls.leases)
	}
}

// TestRestoreLeaseRules: a backup lease fills a gap or extends the same
// MAC's lease; it never takes a live lease of another MAC (conflict), and
// an ended one leaves the store's record alone.
func TestRestoreLeaseRules(t *testing.T) {
	var ls *leaseStore
	e := newEnv(t, withLeases(&ls))
	now := e.clock.Now()
	later, soon, past := now.Add(2*time.Hour), now.Add(time.Hour), now.Add(-time.Hour)
	ctx := context.Background()
	if _, err := ls.CommitLeases(ctx, []store.Lease{
		lease("10.0.0.2", "aa:bb:cc:dd:ee:02", later, store.LeaseBound),   // same MAC, newer here
		lease("10.0.0.3", "aa:bb:cc:dd:ee:03", soon, store.LeaseBound),    // same MAC, older here
		lease("10.0.0.4", "aa:bb:cc:dd:ee:99", soon, store.LeaseBound),    // another MAC, live
		lease("10.0.0.5", "aa:bb:cc:dd:ee:98", past, store.LeaseBound),    // another MAC, expired
		lease("10.0.0.6", "aa:bb:cc:dd:ee:97", soon, store.LeaseReleased), // another MAC, released
	}); err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"format": BackupFormat, "version": BackupVersion, "leases": []backupLease{
		{Pool: "lab", Address: "10.0.0.1", MAC: "aa:bb:cc:dd:ee:01", Expires: soon, State: "bound"},
		{Pool: "lab", Address: "10.0.0.2", MAC: "aa:bb:cc:dd:ee:02", Expires: soon, State: "bound"},
		{Pool: "lab", Address: "10.0.0.3", MAC: "aa:bb:cc:dd:ee:03", Expires: later, State: "bound"},
		{Pool: "lab", Address: "10.0.0.4", MAC: "aa:bb:cc:dd:ee:04", Expires: soon, State: "bound"},
		{Pool: "lab", Address: "10.0.0.5", MAC: "aa:bb:cc:dd:ee:05", Expires: soon, State: "bound"},
		{Pool: "lab", Address: "10.0.0.6", MAC: "aa:bb:cc:dd:ee:06", Expires: past, State: "bound"},
	}}
	tok := e.login("alice").AccessToken
	var sum restoreSummary
	e.want(e.do("POST", "/restore", tok, doc), http.StatusOK, &sum)
	if sum.Leases != (restoreCount{InBackup: 6, Restored: 3, Unchanged: 1, Skipped: 2}) {
		t.Errorf("leases %+v", sum.Leases)
	}
	if len(sum.Conflicts) != 1 || sum.Conflicts[0].Object != "10.0.0.4" || sum.Conflicts[0].Holder != "aa:bb:cc:dd:ee:99" {
		t.Errorf("conflicts %+v", sum.Conflicts)
	}
	want := map[string]string{"10.0.0.1": "aa:bb:cc:dd:ee:01", "10.0.0.2": "aa:bb:cc:dd:ee:02", "10.0.0.3": "aa:bb:cc:dd:ee:03",
		"10.0.0.4": "aa:bb:cc:dd:ee:99", "10.0.0.5": "aa:bb:cc:dd:ee:05", "10.0.0.6": "aa:bb:cc:dd:ee:97"}
	for addr, mac := range want {
		if got := ls.leases[netip.MustParseAddr(addr)]; got.MAC != mac {
			t.Errorf("%s leased to %s, want %s", addr, got.MAC, mac)
		}
	}
	if got := ls.leases[netip.MustParseAddr("10.0.0.2")].Expires; !got.Equal(later) {
		t.Errorf("10.0.0.2 expires %s: the store's newer lease was shortened", got)
	}
	if got := ls.leases[netip.MustParseAddr("10.0.0.3")].Expires; !got.Equal(later) {
		t.Errorf("10.0.0.3 expires %s: not extended", got)
	}
}

// TestRestoreClients: clients come back with their CHAP secrets; one whose
// MAC a client here holds until that client is restored too gets in on
// the second try; a MAC held by a client the backup does not know is a
// conflict.
func TestRestoreClients(t *testing.T) {
	var ls *leaseStore
	e := newEnv(t, withLeases(&ls))
	ctx := context.Background()
	for _, c := range []store.Client{
		{Name: "pc-01", MAC: "aa:bb:cc:dd:ee:01", Image: "win11"},
		{Name: "lab-9", MAC: "aa:bb:cc:dd:ee:09", Image: "win11"},
	} {
		if err := e.st.PutClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	doc := map[string]any{"format": BackupFormat, "version": BackupVersion, "clients": []backupClient{
		{clientJSON: clientJSON{clientBody: clientBody{Name: "pc-00", MAC: "aa:bb:cc:dd:ee:01", Image: "win11"}}, CHAPSecret: "chap-00", CHAPMutualSecret: "mutual-00"},
		{clientJSON: clientJSON{clientBody: clientBody{Name: "pc-01", MAC: "aa:bb:cc:dd:ee:11", Image: "win11", Persistent: true}}},
		{clientJSON: clientJSON{clientBody: clientBody{Name: "pc-02", MAC: "aa:bb:cc:dd:ee:09", Image: "gone"}}},
	}}
	tok := e.login("alice").AccessToken
	var sum restoreSummary
	e.want(e.do("POST", "/restore", tok, doc), http.StatusOK, &sum)
	if sum.Clients != (restoreCount{InBackup: 3, Restored: 2, Skipped: 1}) {
		t.Errorf("clients %+v", sum.Clients)
	}
	if len(sum.Conflicts) != 1 || sum.Conflicts[0].Kind != "client" || sum.Conflicts[0].Object != "pc-02" || !strings.Contains(sum.Conflicts[0].Error, "lab-9") {
		t.Errorf("conflicts %+v", sum.Conflicts)
	}
	c, err := e.st.GetClient(ctx, "pc-00")
	if err != nil || c.MAC != "aa:bb:cc:dd:ee:01" || c.CHAPSecret != "chap-00" || c.CHAPMutualSecret != "mutual-00" {
		t.Errorf("pc-00: %+v %v", c, err)
	}
	if got := e.st.auditActions(); got[len(got)-1] != "store.restore" {
		t.Errorf("audit %v", got)
	}
	// The restore entry holds counts, never secrets.
	if es, _ := e.st.ListAudit(ctx, 1); strings.Contains(es[0].Detail, "chap") {
		t.Errorf("restore audit detail: %s", es[0].Detail)
	}
}
