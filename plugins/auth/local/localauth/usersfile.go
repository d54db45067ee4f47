package localauth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// fileVersion is the version of the users file format this plugin writes
// and reads.
const fileVersion = 1

// fileMode is the users file's permission: it holds password hashes.
const fileMode = 0o600

// maxFileSize bounds how much of a users file is read.
const maxFileSize = 16 << 20

// document is the users file as stored: JSON, users sorted by name.
type document struct {
	Version int          `json:"version"`
	Users   []storedUser `json:"users"`
}

type storedUser struct {
	Name    string    `json:"name"`
	Hash    string    `json:"hash"`
	Groups  []string  `json:"groups"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// user is one parsed entry of the users file. Values are never changed
// once loaded: a change makes a new user.
type user struct {
	name    string
	hash    Hash
	groups  []string
	created time.Time
	updated time.Time
}

// userSet is a loaded users file, by name. It is never modified once
// published: readers share it without locks.
type userSet map[string]user

// fileKey identifies one version of the users file cheaply: a rewrite
// (rename) changes the inode, an edit in place the size or mtime.
type fileKey struct {
	exists bool
	dev    uint64
	ino    uint64
	size   int64
	mtime  time.Time
}

func keyOf(fi fs.FileInfo) fileKey {
	k := fileKey{exists: true, size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.dev, k.ino = uint64(st.Dev), uint64(st.Ino)
	}
	return k
}

// usersFile is the users file on disk and the last version of it read.
// current() rereads it when it changed, so that a user added by another
// process (`dls user add` while the host runs) takes effect at the next
// Verify. Changes are made under an exclusive flock on a lock file beside
// it, and written atomically, so two processes never lose each other's
// changes and a reader never sees half a file.
type usersFile struct {
	path   string
	lock   string
	logger hclog.Logger

	mu    sync.Mutex // guards key and users
	key   fileKey
	users userSet

	writeMu sync.Mutex // one change at a time in this process
}

// openUsersFile prepares path's directory, removes what an interrupted
// write left there and reads the file, if it exists.
func openUsersFile(path string, logger hclog.Logger) (*usersFile, error) {
	f := &usersFile{path: path, lock: path + ".lock", logger: logger}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create directory of users file: %w", err)
	}
	unlock, err := f.flock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	f.removeTemps()
	if _, err := f.current(); err != nil {
		return nil, err
	}
	return f, nil
}

// current returns the users as the file holds them now.
func (f *usersFile) current() (userSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if f.users == nil || f.key.exists {
			f.key, f.users = fileKey{}, userSet{}
		}
		return f.users, nil
	case err != nil:
		return nil, fmt.Errorf("users file: %w", err)
	}
	if f.users != nil && keyOf(fi) == f.key {
		return f.users, nil
	}
	key, users, err := f.read()
	if err != nil {
		return nil, err
	}
	if f.users != nil {
		f.logger.Info("users file changed on disk; reloaded", "file", f.path, "users", len(users))
	}
	f.key, f.users = key, users
	return users, nil
}

// read reads and checks the file. The key comes from the open file, so it
// matches what was read even if the file is replaced meanwhile.
func (f *usersFile) read() (fileKey, userSet, error) {
	fh, err := os.Open(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileKey{}, userSet{}, nil
	}
	if err != nil {
		return fileKey{}, nil, fmt.Errorf("users file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return fileKey{}, nil, fmt.Errorf("users file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fileKey{}, nil, fmt.Errorf("users file %s: not a regular file", f.path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		f.logger.Warn("users file is readable or writable by others; it holds password hashes: chmod 600 it",
			"file", f.path, "mode", fi.Mode().Perm().String())
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return fileKey{}, nil, fmt.Errorf("users file %s: %w", f.path, err)
	}
	if len(data) > maxFileSize {
		return fileKey{}, nil, fmt.Errorf("users file %s: larger than %d bytes", f.path, maxFileSize)
	}
	users, err := decode(data)
	if err != nil {
		return fileKey{}, nil, fmt.Errorf("users file %s: %w", f.path, err)
	}
	return keyOf(fi), users, nil
}

// decode parses and checks a users file's content. An empty file holds no
// users.
func decode(data []byte) (userSet, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return userSet{}, nil
	}
	var doc document
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not a users file: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a users file: data after the JSON object")
	}
	if doc.Version != fileVersion {
		return nil, fmt.Errorf("format version %d: this plugin reads version %d", doc.Version, fileVersion)
	}
	users := make(userSet, len(doc.Users))
	for i, su := range doc.Users {
		if err := checkName(su.Name); err != nil {
			return nil, fmt.Errorf("users[%d]: name: %w", i, err)
		}
		if _, dup := users[su.Name]; dup {
			return nil, fmt.Errorf("user %q is listed twice", su.Name)
		}
		h, err := ParseHash(su.Hash)
		if err != nil {
			return nil, fmt.Errorf("user %q: password hash: %w", su.Name, err)
		}
		groups, err := cleanGroups(su.Groups)
		if err != nil {
			return nil, fmt.Errorf("user %q: %w", su.Name, err)
		}
		users[su.Name] = user{name: su.Name, hash: h, groups: groups, created: su.Created, updated: su.Updated}
	}
	return users, nil
}

// encode is the file content for users.
func encode(users userSet) ([]byte, error) {
	doc := document{Version: fileVersion, Users: make([]storedUser, 0, len(users))}
	for _, u := range users {
		doc.Users = append(doc.Users, storedUser{
			Name: u.name, Hash: u.hash.String(), Groups: u.groups, Created: u.created.UTC(), Updated: u.updated.UTC(),
		})
	}
	slices.SortFunc(doc.Users, func(a, b storedUser) int { return strings.Compare(a.Name, b.Name) })
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// update applies change to the users as they are on disk now and writes
// the result. It holds the lock file across read, change and write, so a
// change made by another process in between is never lost. change gets a
// copy it may modify; an error from it leaves the file as it was.
func (f *usersFile) update(change func(userSet) error) error {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	unlock, err := f.flock()
	if err != nil {
		return err
	}
	defer unlock()

	_, users, err := f.read()
	if err != nil {
		return err
	}
	next := make(userSet, len(users))
	for name, u := range users {
		next[name] = u
	}
	if err := change(next); err != nil {
		return err
	}
	data, err := encode(next)
	if err != nil {
		return fmt.Errorf("encode users file: %w", err)
	}
	if err := writeAtomic(f.path, data); err != nil {
		return err
	}
	fi, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	f.mu.Lock()
	f.key, f.users = keyOf(fi), next
	f.mu.Unlock()
	return nil
}

// flock takes the exclusive lock on the lock file and returns its release.
func (f *usersFile) flock() (func(), error) {
	fh, err := os.OpenFile(f.lock, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for {
		err = unix.Flock(int(fh.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("lock %s: %w", f.lock, err)
	}
	// Closing the file releases the lock.
	return func() { fh.Close() }, nil
}

// tempPrefix starts the names of files being written beside path.
func tempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// removeTemps deletes temporary files an interrupted write left. The
// caller holds the lock, so no write of another process is under way.
func (f *usersFile) removeTemps() {
	dir := filepath.Dir(f.path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix(f.path)) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err == nil {
				f.logger.Info("removed a users file an interrupted write left", "file", e.Name())
			}
		}
	}
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, mode 0600, synced, renamed over path, directory synced.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(fileMode); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write users file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory of users file: %w", err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync directory of users file: %w", err)
	}
	return nil
}
