package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// credentials are what `dls login` keeps for the other API commands: the
// server and a token pair. The file is the user's only, mode 0600.
type credentials struct {
	Server       string    `json:"server"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Expiry       time.Time `json:"expiry"`
	User         string    `json:"user,omitempty"`
	Role         string    `json:"role,omitempty"`
	// TLSCA and Insecure are the --tls-ca and --insecure given at login,
	// used again by later commands.
	TLSCA    string `json:"tls_ca,omitempty"`
	Insecure bool   `json:"insecure,omitempty"`
}

// tokenPair is what auth/login and auth/refresh answer.
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	Role         string `json:"role"`
}

// set stores pair, received at now.
func (c *credentials) set(pair tokenPair, now time.Time) {
	c.AccessToken, c.RefreshToken, c.Role = pair.AccessToken, pair.RefreshToken, pair.Role
	c.Expiry = now.Add(time.Duration(pair.ExpiresIn) * time.Second).UTC()
}

// credentialsPath is $XDG_CONFIG_HOME/dls/credentials.json, or
// ~/.config/dls/credentials.json.
func credentialsPath(getenv func(string) string) (string, error) {
	if d := getenv("XDG_CONFIG_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "dls", "credentials.json"), nil
	}
	home := getenv("HOME")
	if home == "" {
		return "", errors.New("neither $XDG_CONFIG_HOME nor $HOME is set: nowhere to keep the credentials")
	}
	return filepath.Join(home, ".config", "dls", "credentials.json"), nil
}

// loadCredentials reads path; a missing file is (nil, nil). warn gets a
// line when the file is readable by others.
func loadCredentials(path string, warn func(string)) (*credentials, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 && warn != nil {
		warn(fmt.Sprintf("warning: %s is readable by others (mode %04o): chmod 600 it, or log in again", path, fi.Mode().Perm()))
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("read credentials %s: %w (log in again)", path, err)
	}
	if c.Server == "" || c.RefreshToken == "" {
		return nil, nil
	}
	return &c, nil
}

// saveCredentials writes c to path atomically, mode 0600, in a directory
// of mode 0700.
func saveCredentials(path string, c *credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	if err := writeFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it over path, so that a reader sees the old content or the new, whole;
// the file has mode perm from its creation on.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
