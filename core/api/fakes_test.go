package api

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dls-project/dls/core/store"
	"github.com/dls-project/dls/sdk/auth"
	"github.com/dls-project/dls/sdk/storage"
)

// memStore is an in-memory Store with the store package's rules (unique
// MACs, rotation refusing used tokens).
type memStore struct {
	mu       sync.Mutex
	clients  map[string]store.Client
	images   map[string]store.Image
	sessions map[int64]store.Session
	tokens   map[string]store.RefreshToken
	audit    []store.AuditEntry
	disc     map[string]store.DiscoveredMachine
	now      func() time.Time
}

var _ Store = (*memStore)(nil)

func newMemStore(now func() time.Time) *memStore {
	return &memStore{clients: map[string]store.Client{}, images: map[string]store.Image{}, sessions: map[int64]store.Session{},
		tokens: map[string]store.RefreshToken{}, disc: map[string]store.DiscoveredMachine{}, now: now}
}

func (s *memStore) PutClient(_ context.Context, c store.Client) error {
	c, err := c.Normalize()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.clients {
		if o.Name != c.Name && o.MAC == c.MAC {
			return fmt.Errorf("mac %s belongs to client %s: %w", c.MAC, o.Name, store.ErrConflict)
		}
		if o.Name != c.Name && c.Address.IsValid() && o.Address == c.Address {
			return fmt.Errorf("address %s belongs to client %s: %w", c.Address, o.Name, store.ErrConflict)
		}
	}
	now := s.now().UTC()
	c.CreatedAt, c.UpdatedAt = now, now
	if old, ok := s.clients[c.Name]; ok {
		c.CreatedAt = old.CreatedAt
	}
	s.clients[c.Name] = c
	return nil
}

func (s *memStore) GetClient(_ context.Context, name string) (store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[name]
	if !ok {
		return c, fmt.Errorf("client %s: %w", name, store.ErrNotFound)
	}
	return c, nil
}

func (s *memStore) ListClients(context.Context) ([]store.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.clients))
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *memStore) DeleteClient(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[name]; !ok {
		return fmt.Errorf("client %s: %w", name, store.ErrNotFound)
	}
	delete(s.clients, name)
	return nil
}

func (s *memStore) RenameClient(_ context.Context, old, new string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[old]
	if !ok {
		return fmt.Errorf("client %s: %w", old, store.ErrNotFound)
	}
	if _, taken := s.clients[new]; taken {
		return fmt.Errorf("client %s exists: %w", new, store.ErrConflict)
	}
	for _, o := range s.clients {
		if o.Volume == new {
			return fmt.Errorf("name %s is the volume of client %s: %w", new, o.Name, store.ErrConflict)
		}
	}
	if c.Volume == "" {
		c.Volume = old
	}
	if c.Volume == new {
		c.Volume = ""
	}
	delete(s.clients, old)
	c.Name = new
	s.clients[new] = c
	return nil
}

// discover records a discovered machine, as the host's discovery does.
func (s *memStore) discover(t *testing.T, m store.DiscoveredMachine) {
	t.Helper()
	m, err := m.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disc[m.MAC] = m
}

func (s *memStore) ListDiscovered(context.Context) ([]store.DiscoveredMachine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.disc))
	sort.Slice(out, func(i, j int) bool { return out[i].FirstSeen.Before(out[j].FirstSeen) })
	return out, nil
}

func (s *memStore) GetDiscovered(_ context.Context, mac string) (store.DiscoveredMachine, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.disc[mac]
	if !ok {
		return m, fmt.Errorf("discovered %s: %w", mac, store.ErrNotFound)
	}
	return m, nil
}

func (s *memStore) DeleteDiscovered(_ context.Context, mac string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.disc[mac]; !ok {
		return fmt.Errorf("discovered %s: %w", mac, store.ErrNotFound)
	}
	delete(s.disc, mac)
	return nil
}

func (s *memStore) PutImage(_ context.Context, img store.Image) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	img.CreatedAt, img.UpdatedAt = now, now
	if old, ok := s.images[img.Name]; ok {
		img.CreatedAt = old.CreatedAt
	}
	s.images[img.Name] = img
	return nil
}

func (s *memStore) GetImage(_ context.Context, name string) (store.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, ok := s.images[name]
	if !ok {
		return im, fmt.Errorf("image %s: %w", name, store.ErrNotFound)
	}
	return im, nil
}

func (s *memStore) ListImages(context.Context) ([]store.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Collect(maps.Values(s.images))
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *memStore) DeleteImage(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.images[name]; !ok {
		return fmt.Errorf("image %s: %w", name, store.ErrNotFound)
	}
	for _, c := range s.clients {
		if c.Image == name {
			return fmt.Errorf("image %s is booted by %s: %w", name, c.Name, store.ErrConflict)
		}
	}
	delete(s.images, name)
	return nil
}

func (s *memStore) GetSession(_ context.Context, id int64) (store.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.sessions[id]
	if !ok {
		return ss, fmt.Errorf("session %d: %w", id, store.ErrNotFound)
	}
	return ss, nil
}

func (s *memStore) ListSessions(_ context.Context, f store.SessionFilter) ([]store.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Session
	for _, ss := range s.sessions {
		if (f.Client == "" || ss.Client == f.Client) && (f.State == "" || ss.State == f.State) && !ss.Started.Before(f.Since) && (f.Before.IsZero() || ss.Started.Before(f.Before)) {
			out = append(out, ss)
		}
	}
	sort.Slice(out, func(i, j int) bool { // as the stores: newest Started first
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].ID > out[j].ID
	})
	if f.Latest {
		seen := map[string]bool{}
		out = slices.DeleteFunc(out, func(ss store.Session) bool {
			drop := ss.Client == "" || seen[ss.Client]
			seen[ss.Client] = true
			return drop
		})
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

func (s *memStore) PutRefreshToken(_ context.Context, t store.RefreshToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[t.Hash] = t
	return nil
}

func (s *memStore) RotateRefreshToken(_ context.Context, oldHash string, next store.RefreshToken) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.tokens[oldHash]
	if !ok {
		return store.ErrNotFound
	}
	if old.Used || old.Revoked {
		return store.ErrConflict
	}
	old.Used = true
	s.tokens[oldHash] = old
	s.tokens[next.Hash] = next
	return nil
}

func (s *memStore) GetRefreshToken(_ context.Context, hash string) (store.RefreshToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[hash]
	if !ok {
		return t, store.ErrNotFound
	}
	return t, nil
}

func (s *memStore) RevokeRefreshToken(_ context.Context, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[hash]
	if !ok {
		return store.ErrNotFound
	}
	t.Revoked = true
	s.tokens[hash] = t
	return nil
}

func (s *memStore) RevokeUserTokens(_ context.Context, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for h, t := range s.tokens {
		if t.User == user {
			t.Revoked = true
			s.tokens[h] = t
		}
	}
	return nil
}

func (s *memStore) CountActiveTokens(_ context.Context, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, t := range s.tokens {
		if !t.Used && !t.Revoked && now.Before(t.Expires) {
			n++
		}
	}
	return n, nil
}

func (s *memStore) AppendAudit(_ context.Context, e store.AuditEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Action == "" {
		return fmt.Errorf("audit entry without action: %w", store.ErrInvalid)
	}
	e.ID = int64(len(s.audit) + 1)
	s.audit = append(s.audit, e)
	return nil
}

func (s *memStore) ListAudit(_ context.Context, limit int) ([]store.AuditEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.audit)
	slices.Reverse(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// auditActions returns the audit log's actions, oldest first.
func (s *memStore) auditActions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.audit {
		out = append(out, e.Action)
	}
	return out
}

// snapshot is the store's objects, to check that a refused request
// changed nothing.
func (s *memStore) snapshot() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%v|%v|%d", s.clients, s.images, len(s.tokens))
}

// fakeAuth is an auth plugin with users in a map; tests change users
// (delete, disable, regroup) with set and remove.
type fakeAuth struct {
	calls atomic.Int64
	err   error // returned for every call when set

	mu        sync.Mutex
	users     map[string]fakeUser
	lookupErr error // returned by Lookup when set
	lookups   int
}

type fakeUser struct {
	password string
	groups   []string
	disabled bool
}

func (f *fakeAuth) Verify(_ context.Context, user, pass string) (auth.Identity, error) {
	f.calls.Add(1)
	if f.err != nil {
		return auth.Identity{}, f.err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[user]
	if !ok || u.disabled || u.password != pass {
		return auth.Identity{}, fmt.Errorf("verify %s: %w", user, auth.ErrInvalidCredentials)
	}
	return auth.Identity{Username: user, Groups: u.groups}, nil
}

func (f *fakeAuth) Lookup(_ context.Context, user string) (auth.Identity, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	switch {
	case f.err != nil:
		return auth.Identity{}, f.err
	case f.lookupErr != nil:
		return auth.Identity{}, f.lookupErr
	}
	u, ok := f.users[user]
	if !ok || u.disabled {
		return auth.Identity{}, fmt.Errorf("look up %s: %w", user, auth.ErrUserNotFound)
	}
	return auth.Identity{Username: user, Groups: u.groups}, nil
}

// set changes (or adds) a user.
func (f *fakeAuth) set(user string, change func(*fakeUser)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.users[user]
	change(&u)
	f.users[user] = u
}

func (f *fakeAuth) remove(user string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.users, user)
}

func (f *fakeAuth) failLookups(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookupErr = err
}

func (f *fakeAuth) lookupCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fakeStorage is one storage plugin holding images and volumes.
type fakeStorage struct {
	mu       sync.Mutex
	versions map[string][]storage.Version
	volumes  map[string]storage.Volume
	attached map[string]bool
	calls    []string
	now      func() time.Time
	// imported is, per image, what the last import read from its source
	// file, and importedMode the mode of that file when read.
	imported     map[string][]byte
	importedMode map[string]os.FileMode
	importedUID  map[string]uint32
	// importErr, when set, fails every import as storagerpc reports a
	// plugin's error: the operation named with the file it was given.
	importErr error
}

var _ ImageStorage = (*fakeStorage)(nil)

func newFakeStorage(now func() time.Time) *fakeStorage {
	return &fakeStorage{versions: map[string][]storage.Version{}, volumes: map[string]storage.Volume{}, attached: map[string]bool{}, now: now,
		imported: map[string][]byte{}, importedMode: map[string]os.FileMode{}, importedUID: map[string]uint32{}}
}

// ImageStorage implements Storage: one storage for every image.
func (f *fakeStorage) ImageStorage(context.Context, string) (ImageStorage, error) { return f, nil }

func (f *fakeStorage) record(call string) {
	f.calls = append(f.calls, call)
}

func (f *fakeStorage) addVersion(image string) storage.Version {
	vs := f.versions[image]
	for i := range vs {
		vs[i].Current = false
	}
	v := storage.Version{Image: image, Number: uint64(len(vs) + 1), Size: 1 << 20, Created: f.now(), Current: true}
	if len(vs) > 0 {
		v.Number = vs[len(vs)-1].Number + 1
	}
	f.versions[image] = append(vs, v)
	return v
}

func (f *fakeStorage) ImportImage(_ context.Context, req storage.ImportRequest) (storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("import " + req.Image)
	if f.importErr != nil {
		return storage.Version{}, fmt.Errorf("import image %s from %s: %w", req.Image, req.Source, f.importErr)
	}
	if !strings.HasPrefix(req.Source, "/img/") { // /img/: the env's own images
		// Read the file as a plugin does: the host must hand over a file
		// it made, readable, holding what the caller sent.
		fi, err := os.Stat(req.Source)
		if err != nil {
			return storage.Version{}, fmt.Errorf("open %s: %w", req.Source, storage.ErrNotFound)
		}
		b, err := os.ReadFile(req.Source)
		if err != nil {
			return storage.Version{}, fmt.Errorf("read %s: %w", req.Source, err)
		}
		f.imported[req.Image], f.importedMode[req.Image] = b, fi.Mode()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			f.importedUID[req.Image] = st.Uid
		}
	}
	return f.addVersion(req.Image), nil
}

func (f *fakeStorage) DeleteImage(_ context.Context, image string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("delete " + image)
	if _, ok := f.versions[image]; !ok {
		return storage.ErrNotFound
	}
	delete(f.versions, image)
	return nil
}

func (f *fakeStorage) CreateVersion(_ context.Context, image string) (storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("snapshot " + image)
	if _, ok := f.versions[image]; !ok {
		return storage.Version{}, fmt.Errorf("image %s: %w", image, storage.ErrNotFound)
	}
	return f.addVersion(image), nil
}

func (f *fakeStorage) ListVersions(_ context.Context, image string) ([]storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vs, ok := f.versions[image]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", image, storage.ErrNotFound)
	}
	return slices.Clone(vs), nil
}

func (f *fakeStorage) DeleteVersion(_ context.Context, image string, version uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(fmt.Sprintf("delete-version %s %d", image, version))
	vs := f.versions[image]
	i := slices.IndexFunc(vs, func(v storage.Version) bool { return v.Number == version })
	if i < 0 {
		return fmt.Errorf("version %d of %s: %w", version, image, storage.ErrNotFound)
	}
	if vs[i].Current {
		return fmt.Errorf("version %d of %s is current: %w", version, image, storage.ErrInUse)
	}
	f.versions[image] = slices.Delete(vs, i, i+1)
	return nil
}

func (f *fakeStorage) SetCurrentVersion(_ context.Context, image string, version uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(fmt.Sprintf("set-current %s %d", image, version))
	vs := f.versions[image]
	if !slices.ContainsFunc(vs, func(v storage.Version) bool { return v.Number == version }) {
		return fmt.Errorf("version %d of %s: %w", version, image, storage.ErrNotFound)
	}
	for i := range vs {
		vs[i].Current = vs[i].Number == version
	}
	return nil
}

func (f *fakeStorage) ResetVolume(_ context.Context, req storage.VolumeRequest) (storage.Volume, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(fmt.Sprintf("reset %s %d", req.Volume, req.Version))
	if f.attached[req.Volume] {
		return storage.Volume{}, fmt.Errorf("volume %s is attached: %w", req.Volume, storage.ErrInUse)
	}
	v := storage.Volume{Name: req.Volume, Image: req.Image, Version: req.Version, Size: 1 << 20}
	if v.Version == 0 {
		for _, iv := range f.versions[req.Image] {
			if iv.Current {
				v.Version = iv.Number
			}
		}
	}
	f.volumes[req.Volume] = v
	return v, nil
}

func (f *fakeStorage) Promote(_ context.Context, vol, image string) (storage.Version, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("promote " + vol + " " + image)
	if f.attached[vol] {
		return storage.Version{}, fmt.Errorf("volume %s is attached: %w", vol, storage.ErrInUse)
	}
	return f.addVersion(image), nil
}

func (f *fakeStorage) storageCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}
