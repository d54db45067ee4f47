package main

import (
	"bytes"
	"errors"
	"os"
	osuser "os/user"
	"path/filepath"
	"slices"
	"testing"
)

func TestConfigFile(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "DLS_CONFIG" {
				return v
			}
			return ""
		}
	}
	yes := func(string) bool { return true }
	no := func(string) bool { return false }
	for _, tc := range []struct {
		flag, env string
		exists    func(string) bool
		want      string
	}{
		{"my.hcl", "/env.hcl", yes, "my.hcl"},
		{"", "/env.hcl", yes, "/env.hcl"},
		{"", "", yes, "/etc/dls/dls.hcl"},
		{"", "", no, "dls.hcl"},
	} {
		if got := configFile(tc.flag, env(tc.env), tc.exists); got != tc.want {
			t.Errorf("configFile(%q, DLS_CONFIG=%q): %q, want %q", tc.flag, tc.env, got, tc.want)
		}
	}
}

// TestDLSConfigIsRead: DLS_CONFIG reaches the host commands (validate
// names the file it read).
func TestDLSConfigIsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.hcl")
	if err := os.WriteFile(path, []byte("# nothing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	c := &cli{stdout: &o, stderr: &e, getenv: func(k string) string {
		if k == "DLS_CONFIG" {
			return path
		}
		return ""
	}}
	if code := c.dispatch(t.Context(), commands(), "dls", []string{"validate"}); code != 0 || o.String() != "site.hcl: ok (0 plugins)\n" {
		t.Errorf("DLS_CONFIG=%s dls validate: exit %d, %q %q", path, code, o.String(), e.String())
	}
}

func TestServiceOwner(t *testing.T) {
	lookup := func(name string) (*osuser.User, error) {
		if name != "dls" {
			t.Errorf("looked up %q", name)
		}
		return &osuser.User{Uid: "998", Gid: "997", Username: "dls"}, nil
	}
	none := func(string) (*osuser.User, error) { return nil, osuser.UnknownUserError("dls") }
	if o, ok := serviceOwner(0, lookup); !ok || o != (owner{998, 997}) {
		t.Errorf("root, user dls exists: %v %v", o, ok)
	}
	if _, ok := serviceOwner(0, none); ok {
		t.Error("root, no user dls (a source build): handed over")
	}
	if _, ok := serviceOwner(1000, lookup); ok {
		t.Error("not root: handed over (the caller cannot chown anyway)")
	}
	root := func(string) (*osuser.User, error) { return &osuser.User{Uid: "0", Gid: "0"}, nil }
	if _, ok := serviceOwner(0, root); ok {
		t.Error("a dls user with uid 0: handed over")
	}
}

// TestHandOver: what root owns among the paths and trees goes to the
// service user; other owners' files and missing paths are left alone; a
// chown that fails is reported, not fatal.
func TestHandOver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs files owned by root")
	}
	dir := t.TempDir()
	inst := filepath.Join(dir, "plugins", "admins")
	if err := os.MkdirAll(inst, 0o750); err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(inst, "users.json")
	other := filepath.Join(inst, "theirs")
	for _, f := range []string{users, other} {
		if err := os.WriteFile(f, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(other, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	var got []string
	chown := func(path string, uid, gid int) error {
		if uid != 998 || gid != 997 {
			t.Errorf("chown %s %d:%d", path, uid, gid)
		}
		got = append(got, path)
		if path == users {
			return errors.New("chown users.json: read-only file system")
		}
		return nil
	}
	errs := handOver(owner{998, 997}, []string{dir, filepath.Join(dir, "plugins"), filepath.Join(dir, "dls.db")},
		[]string{inst, filepath.Join(dir, "plugins", "missing")}, chown)
	want := []string{dir, filepath.Join(dir, "plugins"), inst, users}
	if !slices.Equal(got, want) {
		t.Errorf("chowned %v, want %v", got, want)
	}
	if len(errs) != 1 || errs[0].Error() != "chown users.json: read-only file system" {
		t.Errorf("errors %v", errs)
	}
}
