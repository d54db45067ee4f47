package zfsstore

import (
	"context"
	"fmt"
	"sync"
)

// keyLock is a set of mutexes by name (one per image, one per volume),
// made as they are needed. Waiting for one ends with the caller's context.
type keyLock struct {
	mu    sync.Mutex
	locks map[string]*keyEntry
}

type keyEntry struct {
	ch   chan struct{} // holds one token while locked
	refs int           // holders and waiters
}

func newKeyLock() *keyLock { return &keyLock{locks: map[string]*keyEntry{}} }

// lock takes the lock of key, waiting at most as long as ctx, and returns
// its unlock function.
func (k *keyLock) lock(ctx context.Context, key string) (func(), error) {
	k.mu.Lock()
	e := k.locks[key]
	if e == nil {
		e = &keyEntry{ch: make(chan struct{}, 1)}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()

	release := func() {
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("wait for another operation on %s: %w", key, ctx.Err())
	}
}

// versionRef names one version of one image; version 0 is the whole image.
type versionRef struct {
	image   string
	version uint64
}

// pins keep versions from being deleted between the moment an operation
// chose them and the moment its clone exists (from then on ZFS itself
// refuses to destroy a snapshot with clones). Deletions mark what they
// delete so that a pin cannot be taken on it meanwhile.
type pins struct {
	mu       sync.Mutex
	pinned   map[versionRef]int
	deleting map[versionRef]bool
}

func newPins() *pins {
	return &pins{pinned: map[versionRef]int{}, deleting: map[versionRef]bool{}}
}

// pin keeps a version from deletion until the returned function is
// called. It fails with false when the version or its image is being
// deleted.
func (p *pins) pin(ref versionRef) (func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.deleting[ref] || p.deleting[versionRef{ref.image, 0}] {
		return nil, false
	}
	p.pinned[ref]++
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.pinned[ref]--; p.pinned[ref] <= 0 {
			delete(p.pinned, ref)
		}
	}, true
}

// startDelete marks a version (or with version 0 a whole image) as being
// deleted, unless it is pinned (for an image: any of its versions). The
// returned function ends the mark.
func (p *pins) startDelete(ref versionRef) (func(), bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for r := range p.pinned {
		if r == ref || ref.version == 0 && r.image == ref.image {
			return nil, false
		}
	}
	p.deleting[ref] = true
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.deleting, ref)
	}, true
}
