package sessions_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/dls-project/dls/core/store"
)

// fakeStore is an in-memory store.Sessions, store.Clients and store.Images.
type fakeStore struct {
	mu       sync.Mutex
	clients  map[string]store.Client
	images   map[string]store.Image
	sessions map[int64]store.Session
	nextID   int64
	failNext error // the next session write fails with it
	failRead error // SessionByToken fails with it
	// stall, when set, holds every UpdateSession until it is closed (a
	// busy disk).
	stall chan struct{}
}

func newFakeStore() *fakeStore {
	return &fakeStore{clients: map[string]store.Client{}, images: map[string]store.Image{}, sessions: map[int64]store.Session{}}
}

func copySession(s store.Session) store.Session {
	s.Stages = maps.Clone(s.Stages)
	return s
}

func (f *fakeStore) writeErr() error {
	err := f.failNext
	f.failNext = nil
	return err
}

func (f *fakeStore) CreateSession(_ context.Context, s store.Session) (store.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writeErr(); err != nil {
		return store.Session{}, err
	}
	s, err := s.Normalize()
	if err != nil {
		return store.Session{}, err
	}
	f.nextID++
	s.ID = f.nextID
	f.sessions[s.ID] = copySession(s)
	return copySession(s), nil
}

func (f *fakeStore) UpdateSession(_ context.Context, s store.Session) error {
	f.mu.Lock()
	stall := f.stall
	f.mu.Unlock()
	if stall != nil {
		<-stall
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writeErr(); err != nil {
		return err
	}
	if _, ok := f.sessions[s.ID]; !ok {
		return fmt.Errorf("update session %d: %w", s.ID, store.ErrNotFound)
	}
	s, err := s.Normalize()
	if err != nil {
		return err
	}
	f.sessions[s.ID] = copySession(s)
	return nil
}

func (f *fakeStore) GetSession(_ context.Context, id int64) (store.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sessions[id]
	if !ok {
		return store.Session{}, store.ErrNotFound
	}
	return copySession(s), nil
}

func (f *fakeStore) SessionByToken(_ context.Context, hash string) (store.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRead != nil {
		return store.Session{}, f.failRead
	}
	for _, s := range f.sessions {
		if hash != "" && s.TokenHash == hash {
			return copySession(s), nil
		}
	}
	return store.Session{}, store.ErrNotFound
}

func (f *fakeStore) ListSessions(_ context.Context, flt store.SessionFilter) ([]store.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	flt = flt.Normalize()
	var out []store.Session
	for _, s := range f.sessions {
		if (flt.Client == "" || s.Client == flt.Client) && (flt.State == "" || s.State == flt.State) &&
			(flt.Before.IsZero() || s.Started.Before(flt.Before)) {
			out = append(out, copySession(s))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].ID > out[j].ID
	})
	if len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, nil
}

// all returns every stored session, by ID.
func (f *fakeStore) all() []store.Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Session
	for _, s := range f.sessions {
		out = append(out, copySession(s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeStore) PutClient(_ context.Context, c store.Client) error {
	c, err := c.Normalize()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clients[c.Name] = c
	return nil
}

func (f *fakeStore) GetClient(ctx context.Context, name string) (store.Client, error) {
	// Like database/sql: a query on an ended context fails.
	if err := ctx.Err(); err != nil {
		return store.Client{}, fmt.Errorf("get client %s: %w", name, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.clients[name]
	if !ok {
		return store.Client{}, fmt.Errorf("get client %s: %w", name, store.ErrNotFound)
	}
	return c, nil
}

func (f *fakeStore) ClientByMAC(ctx context.Context, mac string) (store.Client, error) {
	if err := ctx.Err(); err != nil {
		return store.Client{}, fmt.Errorf("client by mac %s: %w", mac, err)
	}
	m, err := store.CanonicalMAC(mac)
	if err != nil {
		return store.Client{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.clients {
		if c.MAC == m {
			return c, nil
		}
	}
	return store.Client{}, fmt.Errorf("client by mac %s: %w", m, store.ErrNotFound)
}

func (f *fakeStore) ClientByInitiator(context.Context, string) (store.Client, error) {
	return store.Client{}, store.ErrNotFound
}

func (f *fakeStore) ListClients(context.Context) ([]store.Client, error) {
	return nil, errors.New("not implemented")
}

func (f *fakeStore) DeleteClient(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.clients, name)
	return nil
}

func (f *fakeStore) RenameClient(context.Context, string, string) error {
	return errors.New("not implemented")
}

func (f *fakeStore) PutImage(_ context.Context, img store.Image) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[img.Name] = img
	return nil
}

func (f *fakeStore) GetImage(_ context.Context, name string) (store.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, ok := f.images[name]
	if !ok {
		return store.Image{}, fmt.Errorf("get image %s: %w", name, store.ErrNotFound)
	}
	return img, nil
}

func (f *fakeStore) ListImages(context.Context) ([]store.Image, error) {
	return nil, errors.New("not implemented")
}

func (f *fakeStore) DeleteImage(context.Context, string) error { return errors.New("not implemented") }

var (
	_ store.Sessions = (*fakeStore)(nil)
	_ store.Clients  = (*fakeStore)(nil)
	_ store.Images   = (*fakeStore)(nil)
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}
