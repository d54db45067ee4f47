package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/dls-project/dls/core/api"
	"github.com/dls-project/dls/core/config"
)

// checkPluginUser refuses plugin.user when the host cannot switch users:
// only root can, and silently running plugins as the host's own user
// would keep the token key and the database within their reach.
func checkPluginUser(u config.PluginUser, euid int) error {
	if !u.Set() || euid == 0 {
		return nil
	}
	r := u.UserRange
	return fmt.Errorf("%s:%d:%d: plugin.user %q: dls serve runs as uid %d, not root, so it cannot start plugins as another user; run it as root (see examples/systemd) or remove the plugin block",
		r.Filename, r.Start.Line, r.Start.Column, u.User, euid)
}

// pluginCredential is what spec gives the supervisor for plugin.user.
func pluginCredential(u config.PluginUser, kind string) (*syscall.Credential, []uintptr) {
	if !u.Set() {
		return nil, nil
	}
	cred := &syscall.Credential{Uid: u.UID, Gid: u.GID} // no supplementary groups: not root's
	if kind == config.KindProtocol {
		return cred, protocolCaps()
	}
	return cred, nil
}

// preparePluginDirs makes the data dir passable (0711: enter, not list)
// for plugins under plugin.user, so each reaches its own
// <data_dir>/plugins/<instance> and nothing else: the database and the
// token key stay the host's, 0600.
func preparePluginDirs(dataDir string, u config.PluginUser) error {
	if !u.Set() {
		return nil
	}
	for _, dir := range []string{dataDir, filepath.Join(dataDir, "plugins")} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("plugin.user: create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o711); err != nil {
			return fmt.Errorf("plugin.user: %s: %w", dir, err)
		}
	}
	return nil
}

// ownPluginDir gives a plugin's data dir, and everything in it, to the
// user it runs as (0700): state a plugin left there while it ran as the
// host's user stays usable.
func ownPluginDir(dir string, uid, gid uint32) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("own data dir %s: %w", dir, err)
	}
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(uid), int(gid))
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("own data dir %s for uid %d: %w", dir, uid, err)
	}
	return nil
}

// uploadOwner is who owns the API's upload files: the plugins' user, so
// that a storage plugin running as it can import them; nil without one.
func uploadOwner(u config.PluginUser) *api.FileOwner {
	if !u.Set() {
		return nil
	}
	return &api.FileOwner{UID: u.UID, GID: u.GID}
}
