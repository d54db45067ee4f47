package storetest

// The control plane's part of the suite: CHAP secrets of clients, images,
// boot sessions and refresh tokens.

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
)

func testClientCHAP(t *testing.T, s store.Store) {
	put(t, s, store.Client{Name: "pc-01", MAC: macA, CHAPSecret: "in-s3cret-pc01", CHAPMutualSecret: "out-s3cret-pc01"})
	put(t, s, store.Client{Name: "pc-02", MAC: macB, CHAPSecret: "one-way-only"})

	check := func(how string, c store.Client, secret, mutual string) {
		t.Helper()
		if c.CHAPSecret != secret || c.CHAPMutualSecret != mutual {
			t.Errorf("%s: CHAP secrets %q, %q; want %q, %q", how, c.CHAPSecret, c.CHAPMutualSecret, secret, mutual)
		}
	}
	check("GetClient", get(t, s, "pc-01"), "in-s3cret-pc01", "out-s3cret-pc01")
	check("GetClient(one-way)", get(t, s, "pc-02"), "one-way-only", "")
	c, err := s.ClientByMAC(t.Context(), macA)
	if err != nil {
		t.Fatalf("ClientByMAC: %v", err)
	}
	check("ClientByMAC", c, "in-s3cret-pc01", "out-s3cret-pc01")
	cs, err := s.ListClients(t.Context())
	if err != nil || len(cs) != 2 {
		t.Fatalf("ListClients = %d clients, %v", len(cs), err)
	}
	check("ListClients", cs[0], "in-s3cret-pc01", "out-s3cret-pc01")

	// Replacing the client replaces its secrets, clearing them too.
	put(t, s, store.Client{Name: "pc-01", MAC: macA, CHAPSecret: "rotated-secret"})
	check("after update", get(t, s, "pc-01"), "rotated-secret", "")
	put(t, s, store.Client{Name: "pc-01", MAC: macA})
	check("after clearing", get(t, s, "pc-01"), "", "")
}

// testClientExtraAddresses: extra_addresses round-trip in order, unmapped
// and deduplicated, survive a lookup by MAC and a listing, and are
// replaced (cleared too) with the client.
func testClientExtraAddresses(t *testing.T, s store.Store) {
	put(t, s, store.Client{Name: "pc-01", MAC: macA, ExtraAddresses: []netip.Addr{
		netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("::ffff:10.0.0.4"),
		netip.MustParseAddr("fd00::7"), netip.MustParseAddr("10.0.0.5"),
	}})
	want := []netip.Addr{netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("10.0.0.4"), netip.MustParseAddr("fd00::7")}
	if c := get(t, s, "pc-01"); !slices.Equal(c.ExtraAddresses, want) {
		t.Errorf("GetClient: ExtraAddresses = %v, want %v", c.ExtraAddresses, want)
	}
	if c, err := s.ClientByMAC(t.Context(), macA); err != nil || !slices.Equal(c.ExtraAddresses, want) {
		t.Errorf("ClientByMAC: ExtraAddresses = %v, %v; want %v", c.ExtraAddresses, err, want)
	}
	put(t, s, store.Client{Name: "pc-02", MAC: macB})
	cs, err := s.ListClients(t.Context())
	if err != nil || len(cs) != 2 {
		t.Fatalf("ListClients = %d clients, %v", len(cs), err)
	}
	if !slices.Equal(cs[0].ExtraAddresses, want) || cs[1].ExtraAddresses != nil {
		t.Errorf("ListClients: ExtraAddresses %v and %v, want %v and nil", cs[0].ExtraAddresses, cs[1].ExtraAddresses, want)
	}
	put(t, s, store.Client{Name: "pc-01", MAC: macA, ExtraAddresses: []netip.Addr{netip.MustParseAddr("10.0.0.9")}})
	if c := get(t, s, "pc-01"); !slices.Equal(c.ExtraAddresses, []netip.Addr{netip.MustParseAddr("10.0.0.9")}) {
		t.Errorf("after update: ExtraAddresses = %v", c.ExtraAddresses)
	}
	put(t, s, store.Client{Name: "pc-01", MAC: macA})
	if c := get(t, s, "pc-01"); c.ExtraAddresses != nil {
		t.Errorf("after clearing: ExtraAddresses = %v, want nil", c.ExtraAddresses)
	}
	if err := s.PutClient(t.Context(), store.Client{Name: "pc-03", MAC: "52:54:00:aa:bb:03", ExtraAddresses: []netip.Addr{{}}}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutClient(zero extra address): err = %v, want ErrInvalid", err)
	}
}

func putImage(t *testing.T, s store.Store, img store.Image) {
	t.Helper()
	if err := s.PutImage(t.Context(), img); err != nil {
		t.Fatalf("PutImage(%s): %v", img.Name, err)
	}
}

func getImage(t *testing.T, s store.Store, name string) store.Image {
	t.Helper()
	img, err := s.GetImage(t.Context(), name)
	if err != nil {
		t.Fatalf("GetImage(%s): %v", name, err)
	}
	return img
}

// sameImage compares what the caller gives (not the store's times).
func sameImage(a, b store.Image) bool {
	return a.Name == b.Name && a.Storage == b.Storage && a.Source == b.Source &&
		a.Origin == b.Origin && reflect.DeepEqual(a.Boot, b.Boot)
}

func testImages(t *testing.T, s store.Store) {
	if imgs, err := s.ListImages(t.Context()); err != nil || len(imgs) != 0 {
		t.Fatalf("ListImages on an empty store = %v, %v", imgs, err)
	}
	lab := store.Image{Name: "lab", Storage: "tank", Source: "/srv/lab.raw", Origin: "config"}
	kiosk := store.Image{Name: "kiosk", Storage: "files", Origin: "api", Boot: &store.BootProfile{
		Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: "root=/dev/sda1 quiet", Confirm: true,
	}}
	before := time.Now().Add(-time.Second)
	putImage(t, s, lab)
	putImage(t, s, kiosk)
	after := time.Now().Add(time.Second)

	got := getImage(t, s, "lab")
	if !sameImage(got, lab) || got.Boot != nil {
		t.Errorf("GetImage(lab) = %+v, want %+v (no boot profile)", got, lab)
	}
	for name, ts := range map[string]time.Time{"CreatedAt": got.CreatedAt, "UpdatedAt": got.UpdatedAt} {
		if ts.Before(before) || ts.After(after) || ts.Location() != time.UTC {
			t.Errorf("%s = %v, want between %v and %v, in UTC", name, ts, before, after)
		}
	}
	if got := getImage(t, s, "kiosk"); !sameImage(got, kiosk) {
		t.Errorf("GetImage(kiosk) = %+v, boot %+v; want %+v, boot %+v", got, got.Boot, kiosk, kiosk.Boot)
	}

	imgs, err := s.ListImages(t.Context())
	if err != nil || len(imgs) != 2 || !sameImage(imgs[0], kiosk) || !sameImage(imgs[1], lab) {
		t.Errorf("ListImages = %+v, %v; want kiosk then lab", imgs, err)
	}

	// Replace: CreatedAt kept, UpdatedAt moves, a boot profile comes and goes.
	time.Sleep(5 * time.Millisecond)
	lab2 := lab
	lab2.Source = "/srv/lab-v2.raw"
	lab2.Boot = &store.BootProfile{Kernel: "k", Cmdline: "ro"}
	putImage(t, s, lab2)
	if got2 := getImage(t, s, "lab"); !sameImage(got2, lab2) || !got2.CreatedAt.Equal(got.CreatedAt) || !got2.UpdatedAt.After(got.UpdatedAt) {
		t.Errorf("after replace: %+v (created %v, updated %v); want %+v, created %v, updated later than %v",
			got2, got2.CreatedAt, got2.UpdatedAt, lab2, got.CreatedAt, got.UpdatedAt)
	}
	putImage(t, s, lab)
	if got := getImage(t, s, "lab"); got.Boot != nil {
		t.Errorf("boot profile not removed: %+v", got.Boot)
	}

	if _, err := s.GetImage(t.Context(), "nowhere"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetImage(unknown): err = %v, want ErrNotFound", err)
	}
	if err := s.PutImage(t.Context(), store.Image{Name: " ", Storage: "tank"}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PutImage(no name): err = %v, want ErrInvalid", err)
	}
}

func testImageDelete(t *testing.T, s store.Store) {
	putImage(t, s, store.Image{Name: "lab", Storage: "tank"})
	putImage(t, s, store.Image{Name: "kiosk", Storage: "tank"})
	put(t, s, store.Client{Name: "pc-01", MAC: macA, Image: "lab"})

	if err := s.DeleteImage(t.Context(), "lab"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("DeleteImage of a booted image: err = %v, want ErrConflict", err)
	}
	getImage(t, s, "lab") // still there

	if err := s.DeleteImage(t.Context(), "kiosk"); err != nil {
		t.Fatalf("DeleteImage(kiosk): %v", err)
	}
	if _, err := s.GetImage(t.Context(), "kiosk"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetImage after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.DeleteImage(t.Context(), "kiosk"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DeleteImage twice: err = %v, want ErrNotFound", err)
	}

	// Once its client moves on (even to an image the store does not
	// hold), the image can go.
	put(t, s, store.Client{Name: "pc-01", MAC: macA, Image: "kiosk"})
	if err := s.DeleteImage(t.Context(), "lab"); err != nil {
		t.Errorf("DeleteImage after its client moved: %v", err)
	}
}

// ms is t as stores return it: millisecond precision, UTC.
func ms(t time.Time) time.Time {
	return t.Truncate(time.Millisecond).UTC()
}

// sameSession compares sessions as stored (times at millisecond precision).
func sameSession(a, b store.Session) bool {
	return a.ID == b.ID && a.Client == b.Client && a.MAC == b.MAC && a.Address == b.Address &&
		maps.EqualFunc(a.Stages, b.Stages, time.Time.Equal) && (a.Stages == nil) == (b.Stages == nil) &&
		a.Expect == b.Expect && a.State == b.State && a.FailedStage == b.FailedStage &&
		a.TokenHash == b.TokenHash && a.TokenUsed == b.TokenUsed &&
		a.Started.Equal(b.Started) && a.Ended.Equal(b.Ended)
}

func createSession(t *testing.T, s store.Store, sess store.Session) store.Session {
	t.Helper()
	got, err := s.CreateSession(t.Context(), sess)
	if err != nil {
		t.Fatalf("CreateSession(%s): %v", sess.Client, err)
	}
	return got
}

func getSession(t *testing.T, s store.Store, id int64) store.Session {
	t.Helper()
	got, err := s.GetSession(t.Context(), id)
	if err != nil {
		t.Fatalf("GetSession(%d): %v", id, err)
	}
	return got
}

func testSessions(t *testing.T, s store.Store) {
	t0 := time.Now().Add(-time.Minute)
	before := time.Now().Add(-time.Second)
	in := store.Session{
		Client: "pc-01", MAC: "52-54-00-00-00-0A", Address: "10.0.0.5",
		Stages: map[string]time.Time{"dhcp": t0}, Expect: "booted", TokenHash: "9f86d081884c7d65",
	}
	got := createSession(t, s, in)
	after := time.Now().Add(time.Second)
	if got.ID <= 0 {
		t.Errorf("CreateSession: ID = %d", got.ID)
	}
	if got.MAC != macA || got.State != store.SessionActive {
		t.Errorf("CreateSession: MAC %q, State %q; want %q, %q", got.MAC, got.State, macA, store.SessionActive)
	}
	if got.Started.Before(before) || got.Started.After(after) || got.Started.Location() != time.UTC || !got.Ended.IsZero() {
		t.Errorf("CreateSession: Started %v, Ended %v; want Started now, in UTC, Ended zero", got.Started, got.Ended)
	}
	if st := got.Stages["dhcp"]; !st.Equal(ms(t0)) || st.Location() != time.UTC {
		t.Errorf("CreateSession: dhcp stage at %v, want %v", st, ms(t0))
	}
	if read := getSession(t, s, got.ID); !sameSession(read, got) {
		t.Errorf("GetSession =\n%+v\nCreateSession returned\n%+v", read, got)
	}

	// The next stages, then the end.
	upd := got
	upd.Stages = maps.Clone(got.Stages)
	upd.Stages["script"] = time.Now()
	upd.Stages["booted"] = time.Now().Add(time.Second)
	upd.State = store.SessionDone
	upd.TokenUsed = true
	upd.Ended = time.Now().Add(2 * time.Second)
	if err := s.UpdateSession(t.Context(), upd); err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	want := upd
	want.Stages = map[string]time.Time{}
	for k, v := range upd.Stages {
		want.Stages[k] = ms(v)
	}
	want.Ended = ms(upd.Ended)
	if read := getSession(t, s, got.ID); !sameSession(read, want) {
		t.Errorf("after UpdateSession:\n%+v\nwant\n%+v", read, want)
	}
	if byTok, err := s.SessionByToken(t.Context(), in.TokenHash); err != nil || !sameSession(byTok, want) {
		t.Errorf("SessionByToken = %+v, %v; want %+v", byTok, err, want)
	}

	// A failed session without token or stages.
	f := createSession(t, s, store.Session{Client: "pc-02", Expect: "handoff"})
	f.State, f.FailedStage, f.Ended = store.SessionFailed, "iscsi_login", time.Now()
	if err := s.UpdateSession(t.Context(), f); err != nil {
		t.Fatalf("UpdateSession(failed): %v", err)
	}
	if read := getSession(t, s, f.ID); read.State != store.SessionFailed || read.FailedStage != "iscsi_login" ||
		read.Stages != nil || read.TokenHash != "" || read.MAC != "" {
		t.Errorf("failed session read back as %+v", read)
	}

	for _, h := range []string{"", "unknown"} {
		if _, err := s.SessionByToken(t.Context(), h); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("SessionByToken(%q): err = %v, want ErrNotFound", h, err)
		}
	}
	if _, err := s.GetSession(t.Context(), got.ID+1000); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSession(unknown): err = %v, want ErrNotFound", err)
	}
	if err := s.UpdateSession(t.Context(), store.Session{ID: got.ID + 1000}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateSession(unknown): err = %v, want ErrNotFound", err)
	}
}

func testSessionConflictsInvalid(t *testing.T, s store.Store) {
	a := createSession(t, s, store.Session{Client: "pc-01", TokenHash: "tok-a"})
	b := createSession(t, s, store.Session{Client: "pc-02"})
	createSession(t, s, store.Session{Client: "pc-03"}) // any number without token

	if _, err := s.CreateSession(t.Context(), store.Session{Client: "pc-04", TokenHash: "tok-a"}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateSession with a token hash in use: err = %v, want ErrConflict", err)
	}
	b.TokenHash = "tok-a"
	if err := s.UpdateSession(t.Context(), b); !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateSession to a token hash in use: err = %v, want ErrConflict", err)
	}
	if read := getSession(t, s, b.ID); read.TokenHash != "" {
		t.Errorf("refused update stored token hash %q", read.TokenHash)
	}
	if byTok, err := s.SessionByToken(t.Context(), "tok-a"); err != nil || byTok.ID != a.ID {
		t.Errorf("SessionByToken(tok-a) = %d, %v; want %d", byTok.ID, err, a.ID)
	}

	for _, bad := range []store.Session{
		{Client: "pc-05", State: "lost"},
		{Client: "pc-05", MAC: "52:54:00:zz:00:01"},
	} {
		if _, err := s.CreateSession(t.Context(), bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CreateSession(%+v): err = %v, want ErrInvalid", bad, err)
		}
		bad.ID = a.ID
		if err := s.UpdateSession(t.Context(), bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("UpdateSession(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
}

func testSessionList(t *testing.T, s store.Store) {
	if ss, err := s.ListSessions(t.Context(), store.SessionFilter{}); err != nil || len(ss) != 0 {
		t.Fatalf("ListSessions on an empty store = %v, %v", ss, err)
	}
	base := time.Now().Add(-time.Hour)
	ids := map[string]int64{}
	for _, x := range []struct {
		key, client, state string
		minute             int
	}{
		// Created out of start order; two start at the same time.
		{"p1-active", "pc-01", store.SessionActive, 1},
		{"p1-done", "pc-01", store.SessionDone, 4},
		{"p2-done", "pc-02", store.SessionDone, 2},
		{"p1-failed", "pc-01", store.SessionFailed, 3},
		{"p2-active", "pc-02", store.SessionActive, 5},
		{"p3-active", "pc-03", store.SessionActive, 5},
	} {
		got := createSession(t, s, store.Session{Client: x.client, State: x.state,
			Started: base.Add(time.Duration(x.minute) * time.Minute)})
		ids[x.key] = got.ID
	}
	list := func(f store.SessionFilter, want ...string) {
		t.Helper()
		ss, err := s.ListSessions(t.Context(), f)
		if err != nil {
			t.Fatalf("ListSessions(%+v): %v", f, err)
		}
		var got, wantIDs []int64
		for _, sess := range ss {
			got = append(got, sess.ID)
		}
		for _, k := range want {
			wantIDs = append(wantIDs, ids[k])
		}
		if !slices.Equal(got, wantIDs) {
			t.Errorf("ListSessions(%+v) = ids %v, want %v (%q)", f, got, wantIDs, want)
		}
	}
	// Newest first; of two started together, the later created first.
	list(store.SessionFilter{}, "p3-active", "p2-active", "p1-done", "p1-failed", "p2-done", "p1-active")
	list(store.SessionFilter{Client: "pc-01"}, "p1-done", "p1-failed", "p1-active")
	list(store.SessionFilter{State: store.SessionActive}, "p3-active", "p2-active", "p1-active")
	list(store.SessionFilter{Client: "pc-02", State: store.SessionDone}, "p2-done")
	list(store.SessionFilter{Limit: 2}, "p3-active", "p2-active")
	list(store.SessionFilter{Client: "pc-09"})
	list(store.SessionFilter{Since: base.Add(4 * time.Minute)}, "p3-active", "p2-active", "p1-done")
	list(store.SessionFilter{Since: base.Add(4 * time.Minute), Client: "pc-01"}, "p1-done")
	list(store.SessionFilter{Before: base.Add(4 * time.Minute)}, "p1-failed", "p2-done", "p1-active")
	list(store.SessionFilter{Since: base.Add(2 * time.Minute), Before: base.Add(5 * time.Minute)}, "p1-done", "p1-failed", "p2-done")
	// Each client's newest; the other fields narrow first.
	list(store.SessionFilter{Latest: true}, "p3-active", "p2-active", "p1-done")
	list(store.SessionFilter{Latest: true, Limit: 2}, "p3-active", "p2-active")
	list(store.SessionFilter{Latest: true, State: store.SessionActive}, "p3-active", "p2-active", "p1-active")
	list(store.SessionFilter{Latest: true, Client: "pc-01"}, "p1-done")
	createSession(t, s, store.Session{State: store.SessionActive, Started: base.Add(9 * time.Minute)})
	list(store.SessionFilter{Latest: true}, "p3-active", "p2-active", "p1-done")
}

func testSessionListLimit(t *testing.T, s store.Store) {
	const n = store.DefaultSessionLimit + 1
	for i := range n {
		createSession(t, s, store.Session{Client: fmt.Sprintf("pc-%03d", i)})
	}
	for _, tc := range []struct{ limit, want int }{
		{0, store.DefaultSessionLimit},
		{-1, store.DefaultSessionLimit},
		{n + 50, n},
		{store.MaxSessionLimit + 1, n}, // clamped, not an error
	} {
		ss, err := s.ListSessions(t.Context(), store.SessionFilter{Limit: tc.limit})
		if err != nil || len(ss) != tc.want {
			t.Errorf("ListSessions(Limit %d) = %d sessions, %v; want %d", tc.limit, len(ss), err, tc.want)
		}
	}
}

// testSessionPages: store.ListAllSessions reads past one answer's limit,
// through bursts of sessions started in one millisecond, and says
// truncated when more than a page share one.
func testSessionPages(t *testing.T, s store.Store) {
	b, ok := s.(store.SessionBatcher)
	if !ok {
		t.Skip("the store has no store.SessionBatcher to write many sessions at once")
	}
	base := ms(time.Now().Add(-time.Hour))
	write := func(n int, started func(i int) time.Time) {
		t.Helper()
		ss := make([]store.Session, n)
		for i := range ss {
			ss[i] = store.Session{Client: fmt.Sprintf("pc-%04d", i), State: store.SessionActive, Started: started(i)}
		}
		if _, err := b.WriteSessions(t.Context(), ss); err != nil {
			t.Fatal(err)
		}
	}
	const n = 2*store.MaxSessionLimit + 300
	write(n, func(i int) time.Time { return base.Add(time.Duration(i/250) * time.Second) }) // bursts of 250
	all, truncated, err := store.ListAllSessions(t.Context(), s, store.SessionFilter{State: store.SessionActive}, 0)
	if err != nil || truncated || len(all) != n {
		t.Fatalf("ListAllSessions = %d sessions, truncated %v, %v; want %d", len(all), truncated, err, n)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Started.After(all[i-1].Started) {
			t.Fatalf("session %d started after the one before it: not newest first", i)
		}
	}
	if got, truncated, err := store.ListAllSessions(t.Context(), s, store.SessionFilter{State: store.SessionActive}, 1500); err != nil || !truncated || len(got) < 1500 {
		t.Errorf("ListAllSessions(max 1500) = %d sessions, truncated %v, %v; want at least 1500, truncated", len(got), truncated, err)
	}
	write(store.MaxSessionLimit+1, func(int) time.Time { return base.Add(-time.Minute) })
	if _, truncated, err := store.ListAllSessions(t.Context(), s, store.SessionFilter{}, 0); err != nil || !truncated {
		t.Errorf("ListAllSessions with %d sessions in one millisecond: truncated %v, %v; want truncated", store.MaxSessionLimit+1, truncated, err)
	}
}

// token builds a refresh token of user, issued now, expiring at expires
// (both truncated to the precision stores keep).
func token(hash, user string, expires time.Time) store.RefreshToken {
	return store.RefreshToken{
		Hash: hash, User: user, Role: "operator", Groups: []string{"lab", "ops"},
		Issued: ms(time.Now()), Expires: ms(expires),
		Backend: "admins", SessionStart: ms(time.Now().Add(-time.Minute)),
	}
}

func putToken(t *testing.T, s store.Store, tok store.RefreshToken) {
	t.Helper()
	if err := s.PutRefreshToken(t.Context(), tok); err != nil {
		t.Fatalf("PutRefreshToken(%s): %v", tok.Hash, err)
	}
}

func getToken(t *testing.T, s store.Store, hash string) store.RefreshToken {
	t.Helper()
	tok, err := s.GetRefreshToken(t.Context(), hash)
	if err != nil {
		t.Fatalf("GetRefreshToken(%s): %v", hash, err)
	}
	return tok
}

func sameToken(a, b store.RefreshToken) bool {
	return a.Hash == b.Hash && a.User == b.User && a.Role == b.Role && slices.Equal(a.Groups, b.Groups) &&
		(a.Groups == nil) == (b.Groups == nil) && a.Issued.Equal(b.Issued) && a.Expires.Equal(b.Expires) &&
		a.Used == b.Used && a.Revoked == b.Revoked && a.Backend == b.Backend && a.SessionStart.Equal(b.SessionStart)
}

func countActive(t *testing.T, s store.Store, now time.Time) int {
	t.Helper()
	n, err := s.CountActiveTokens(t.Context(), now)
	if err != nil {
		t.Fatalf("CountActiveTokens: %v", err)
	}
	return n
}

func testTokens(t *testing.T, s store.Store) {
	hour := time.Now().Add(time.Hour)
	a := token("h-alice-1", "alice", hour)
	putToken(t, s, a)
	got := getToken(t, s, a.Hash)
	if !sameToken(got, a) || got.Issued.Location() != time.UTC || got.Expires.Location() != time.UTC {
		t.Errorf("GetRefreshToken = %+v, want %+v (times in UTC)", got, a)
	}
	if err := s.PutRefreshToken(t.Context(), token(a.Hash, "bob", hour)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("PutRefreshToken with a hash in use: err = %v, want ErrConflict", err)
	}
	if got := getToken(t, s, a.Hash); got.User != "alice" {
		t.Errorf("refused put replaced the token: %+v", got)
	}

	// Zero Issued is now; no groups read back as nil.
	before := time.Now().Add(-time.Second)
	putToken(t, s, store.RefreshToken{Hash: "h-bare", User: "carol", Groups: []string{}, Expires: hour})
	bare := getToken(t, s, "h-bare")
	if bare.Issued.Before(before) || bare.Issued.After(time.Now().Add(time.Second)) || bare.Groups != nil || bare.Role != "" ||
		!bare.SessionStart.Equal(bare.Issued) || bare.Backend != "" {
		t.Errorf("token without Issued, groups, role, backend and session start read back as %+v", bare)
	}

	for _, bad := range []store.RefreshToken{
		{User: "alice", Expires: hour},
		{Hash: "h-x", Expires: hour},
		{Hash: "h-x", User: "alice"},
	} {
		if err := s.PutRefreshToken(t.Context(), bad); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("PutRefreshToken(%+v): err = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.GetRefreshToken(t.Context(), "h-x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRefreshToken(unknown): err = %v, want ErrNotFound", err)
	}
}

func testTokenRotate(t *testing.T, s store.Store) {
	hour := time.Now().Add(time.Hour)
	a1 := token("h-a1", "alice", hour)
	putToken(t, s, a1)
	a2 := token("h-a2", "alice", hour.Add(time.Minute))
	a2.Role = "admin" // the role may change on rotation
	if err := s.RotateRefreshToken(t.Context(), a1.Hash, a2); err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	if got := getToken(t, s, a1.Hash); !got.Used || got.Revoked {
		t.Errorf("rotated token: Used %v, Revoked %v; want used, not revoked", got.Used, got.Revoked)
	}
	if got := getToken(t, s, a2.Hash); !sameToken(got, a2) {
		t.Errorf("next token = %+v, want %+v", got, a2)
	}

	// Replay of the used token: refused, and nothing stored.
	if err := s.RotateRefreshToken(t.Context(), a1.Hash, token("h-a3", "alice", hour)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replay of a used token: err = %v, want ErrConflict", err)
	}
	if _, err := s.GetRefreshToken(t.Context(), "h-a3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replay stored its next token: err = %v", err)
	}

	if err := s.RotateRefreshToken(t.Context(), "h-none", token("h-a4", "alice", hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotation of an unknown token: err = %v, want ErrNotFound", err)
	}

	// Refused rotations leave the old token as it was.
	for what, tc := range map[string]struct {
		next store.RefreshToken
		want error
	}{
		"next of another user":  {token("h-b1", "bob", hour), store.ErrInvalid},
		"next without expiry":   {store.RefreshToken{Hash: "h-a5", User: "alice"}, store.ErrInvalid},
		"next with a used hash": {token(a1.Hash, "alice", hour), store.ErrConflict},
	} {
		if err := s.RotateRefreshToken(t.Context(), a2.Hash, tc.next); !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", what, err, tc.want)
		}
		if got := getToken(t, s, a2.Hash); got.Used {
			t.Fatalf("%s: old token marked used by a refused rotation", what)
		}
	}
	if _, err := s.GetRefreshToken(t.Context(), "h-b1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused rotation stored its next token: err = %v", err)
	}

	// A revoked token does not rotate.
	if err := s.RevokeRefreshToken(t.Context(), a2.Hash); err != nil {
		t.Fatalf("RevokeRefreshToken: %v", err)
	}
	if err := s.RotateRefreshToken(t.Context(), a2.Hash, token("h-a6", "alice", hour)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rotation of a revoked token: err = %v, want ErrConflict", err)
	}

	// Nor does an expired one.
	e := token("h-e1", "erin", time.Now().Add(-time.Second))
	putToken(t, s, e)
	if err := s.RotateRefreshToken(t.Context(), e.Hash, token("h-e2", "erin", hour)); !errors.Is(err, store.ErrConflict) {
		t.Errorf("rotation of an expired token: err = %v, want ErrConflict", err)
	}
	if got := getToken(t, s, e.Hash); got.Used {
		t.Errorf("expired token marked used")
	}
}

func testTokenRevoke(t *testing.T, s store.Store) {
	hour := time.Now().Add(time.Hour)
	for _, tok := range []store.RefreshToken{
		token("h-a1", "alice", hour), token("h-a2", "alice", hour), token("h-b1", "bob", hour),
	} {
		putToken(t, s, tok)
	}
	if err := s.RevokeRefreshToken(t.Context(), "h-a1"); err != nil {
		t.Fatalf("RevokeRefreshToken: %v", err)
	}
	if !getToken(t, s, "h-a1").Revoked || getToken(t, s, "h-a2").Revoked {
		t.Errorf("RevokeRefreshToken(h-a1) revoked the wrong tokens")
	}
	if err := s.RevokeRefreshToken(t.Context(), "h-a1"); err != nil {
		t.Errorf("RevokeRefreshToken twice: %v", err)
	}
	if err := s.RevokeRefreshToken(t.Context(), "h-none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeRefreshToken(unknown): err = %v, want ErrNotFound", err)
	}

	if err := s.RevokeUserTokens(t.Context(), "alice"); err != nil {
		t.Fatalf("RevokeUserTokens: %v", err)
	}
	for hash, want := range map[string]bool{"h-a1": true, "h-a2": true, "h-b1": false} {
		if got := getToken(t, s, hash).Revoked; got != want {
			t.Errorf("after RevokeUserTokens(alice): %s revoked = %v, want %v", hash, got, want)
		}
	}
	if err := s.RevokeUserTokens(t.Context(), "nobody"); err != nil {
		t.Errorf("RevokeUserTokens(no tokens): %v", err)
	}
	if n := countActive(t, s, time.Now()); n != 1 {
		t.Errorf("active tokens after revoking alice's = %d, want 1", n)
	}
}

func testTokenCount(t *testing.T, s store.Store) {
	now := time.Now()
	if n := countActive(t, s, now); n != 0 {
		t.Fatalf("CountActiveTokens on an empty store = %d", n)
	}
	active := token("h-active", "alice", now.Add(time.Hour))
	later := token("h-later", "bob", now.Add(2*time.Hour))
	used := token("h-used", "alice", now.Add(time.Hour))
	used.Used = true
	revoked := token("h-revoked", "alice", now.Add(time.Hour))
	revoked.Revoked = true
	for _, tok := range []store.RefreshToken{
		active, later, used, revoked, token("h-expired", "alice", now.Add(-time.Minute)),
	} {
		putToken(t, s, tok)
	}
	for _, tc := range []struct {
		at   time.Time
		want int
	}{
		{now, 2},
		{active.Expires.Add(-time.Millisecond), 2},
		{active.Expires, 1}, // expired at its Expires
		{now.Add(3 * time.Hour), 0},
	} {
		if n := countActive(t, s, tc.at); n != tc.want {
			t.Errorf("CountActiveTokens(%v) = %d, want %d", tc.at, n, tc.want)
		}
	}
	// Rotation swaps one active token for another.
	if err := s.RotateRefreshToken(t.Context(), active.Hash, token("h-next", "alice", now.Add(time.Hour))); err != nil {
		t.Fatalf("RotateRefreshToken: %v", err)
	}
	if n := countActive(t, s, now); n != 2 {
		t.Errorf("CountActiveTokens after rotation = %d, want 2", n)
	}
}

// testTokenRotateRace has 16 goroutines rotate one token at once through a
// and b (the same store, or two sharing a database): exactly one may win,
// the others must be told ErrConflict, and only the winner's next token
// may be stored.
func testTokenRotateRace(t *testing.T, a, b store.Store) {
	const racers = 16
	hour := time.Now().Add(time.Hour)
	putToken(t, a, token("h-old", "alice", hour))

	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [racers]error
	)
	for i := range racers {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			<-start
			errs[i] = s.RotateRefreshToken(t.Context(), "h-old", token(fmt.Sprintf("h-next-%d", i), "alice", hour))
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("rotations %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrConflict):
			t.Errorf("rotation %d: err = %v, want ErrConflict", i, err)
		}
	}
	if winner < 0 {
		t.Fatalf("no rotation succeeded")
	}
	for i := range racers {
		_, err := b.GetRefreshToken(t.Context(), fmt.Sprintf("h-next-%d", i))
		switch {
		case i == winner && err != nil:
			t.Errorf("winner's next token: %v", err)
		case i != winner && !errors.Is(err, store.ErrNotFound):
			t.Errorf("loser %d's next token stored (err = %v)", i, err)
		}
	}
	if n := countActive(t, a, time.Now()); n != 1 {
		t.Errorf("active tokens after the race = %d, want 1", n)
	}
}

// testSessionBatch: store.SessionBatcher, when the store has it, creates
// and updates in one transaction, all or none.
func testSessionBatch(t *testing.T, s store.Store) {
	st, ok := s.(store.SessionBatcher)
	if !ok {
		t.Skip("the store has no store.SessionBatcher")
	}
	ctx := t.Context()
	at := time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC)
	sess := func(client string) store.Session {
		return store.Session{Client: client, MAC: "52:54:00:00:00:01", State: store.SessionActive, Expect: "handoff",
			Started: at, Stages: map[string]time.Time{"dhcp": at}}
	}
	got, err := st.WriteSessions(ctx, []store.Session{sess("pc-01"), sess("pc-02")})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID == 0 || got[1].ID == 0 || got[0].ID == got[1].ID {
		t.Fatalf("created %+v", got)
	}
	upd := got[0]
	upd.Stages["script"] = at.Add(time.Second)
	got2, err := st.WriteSessions(ctx, []store.Session{upd, sess("pc-03")})
	if err != nil {
		t.Fatal(err)
	}
	if got2[0].ID != upd.ID || got2[1].ID == 0 {
		t.Fatalf("written %+v", got2)
	}
	if s, err := s.GetSession(ctx, upd.ID); err != nil || s.Stages["script"].IsZero() {
		t.Errorf("updated session %+v, %v", s, err)
	}

	// All or none: an update of a missing session fails the batch, and
	// the session created beside it is not there.
	gone := sess("pc-04")
	gone.ID = 9999
	if _, err := st.WriteSessions(ctx, []store.Session{sess("pc-05"), gone}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("batch with a missing session: %v", err)
	}
	all, err := s.ListSessions(ctx, store.SessionFilter{Limit: store.MaxSessionLimit})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		if s.Client == "pc-05" {
			t.Errorf("pc-05 stored by a failed batch: %+v", s)
		}
	}
	if len(all) != 3 {
		t.Errorf("%d sessions stored, want 3", len(all))
	}
}

func testClientBatch(t *testing.T, s store.Store) {
	b, ok := s.(store.ClientBatcher)
	if !ok {
		t.Skip("the store has no store.ClientBatcher")
	}
	ctx := t.Context()
	entry := func(name string) store.AuditEntry {
		return store.AuditEntry{Actor: "host", Action: "client.register", Object: "client/" + name, Source: "boot"}
	}
	if err := b.PutClientsAudited(ctx,
		[]store.Client{{Name: "reg-1", MAC: "52:54:00:00:01:01", Image: "lab"}, {Name: "reg-2", MAC: "52-54-00-00-01-02", Image: "lab"}},
		[]store.AuditEntry{entry("reg-1"), entry("reg-2")}); err != nil {
		t.Fatal(err)
	}
	if c, err := s.ClientByMAC(ctx, "52:54:00:00:01:02"); err != nil || c.Name != "reg-2" {
		t.Fatalf("batched client: %+v, %v", c, err)
	}

	// All or none: a MAC another client holds fails the batch; the client
	// beside it and both entries are not there.
	err := b.PutClientsAudited(ctx,
		[]store.Client{{Name: "reg-3", MAC: "52:54:00:00:01:03", Image: "lab"}, {Name: "reg-4", MAC: "52:54:00:00:01:01", Image: "lab"}},
		[]store.AuditEntry{entry("reg-3"), entry("reg-4")})
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), "reg-1") {
		t.Fatalf("batch with a taken MAC: %v, want ErrConflict naming reg-1", err)
	}
	if _, err := s.GetClient(ctx, "reg-3"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("reg-3 written by a failed batch: %v", err)
	}
	log, err := s.ListAudit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 {
		t.Errorf("%d audit entries, want the first batch's 2: %+v", len(log), log)
	}
}
