package main

// Which config file the host commands read, and who owns what a root CLI
// writes for the service.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	osuser "os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// packagedConfig is where the Debian package keeps the config.
const packagedConfig = "/etc/dls/dls.hcl"

// configUsage is the --config flag's usage for every command that reads
// the config.
const configUsage = "`FILE` config file (default $DLS_CONFIG, else " + packagedConfig + " when it exists, else ./dls.hcl)"

// configFile is the config a command reads: --config when given, else
// $DLS_CONFIG, else the package's /etc/dls/dls.hcl when it exists, else
// dls.hcl in the current folder (a source checkout).
func configFile(flagValue string, getenv func(string) string, exists func(string) bool) string {
	switch {
	case flagValue != "":
		return flagValue
	case getenv("DLS_CONFIG") != "":
		return getenv("DLS_CONFIG")
	case exists(packagedConfig):
		return packagedConfig
	}
	return "dls.hcl"
}

// fileExists reports whether path names something (for configFile).
func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// serviceUser is the account the packaged service runs as.
const serviceUser = "dls"

// owner is a uid and gid to hand files over to.
type owner struct{ uid, gid int }

// serviceOwner is who files that the CLI writes for the service should
// belong to: the service user when the CLI runs as root and that user
// exists (a package install). Otherwise, ok is false and files keep the
// caller's ownership (a source build, or a CLI run by the service user
// itself).
func serviceOwner(euid int, lookup func(name string) (*osuser.User, error)) (o owner, ok bool) {
	if euid != 0 {
		return owner{}, false
	}
	u, err := lookup(serviceUser)
	if err != nil {
		return owner{}, false
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil || uid == 0 {
		return owner{}, false
	}
	return owner{uid, gid}, true
}

// fileOwner answers the uid owning info's file, or -1.
func fileOwner(info fs.FileInfo) int {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// handOver gives o what root (uid 0) owns among paths, and below those of
// them listed in trees: what `dls user add` run as root wrote for the
// service, which runs as o and must read and write it. Files owned by
// anyone else are left alone; paths that do not exist are skipped. It
// answers what it could not change: a warning, never a failed command
// (the change itself is done).
func handOver(o owner, paths, trees []string, chown func(path string, uid, gid int) error) []error {
	var errs []error
	give := func(path string, info fs.FileInfo) {
		if fileOwner(info) != 0 {
			return
		}
		if err := chown(path, o.uid, o.gid); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range paths {
		if info, err := os.Lstat(p); err == nil {
			give(p, info)
		}
	}
	for _, t := range trees {
		err := filepath.WalkDir(t, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			give(path, info)
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("walk %s: %w", t, err))
		}
	}
	return errs
}
