//go:build linux

package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Plugins are the plugin binaries the lab's host runs, by the package they
// are built from.
var Plugins = map[string]string{
	"dls-protocol-dhcp":  "./plugins/protocol/dhcp",
	"dls-protocol-dhcp6": "./plugins/protocol/dhcp6",
	"dls-protocol-tftp":  "./plugins/protocol/tftp",
	"dls-protocol-iscsi": "./plugins/protocol/iscsi",
	"dls-storage-dir":    "./plugins/storage/dir",
	"dls-auth-local":     "./plugins/auth/local",
}

// RepoRoot is the module's root (the folder holding go.mod), found from
// this file's folder or the working directory.
func RepoRoot() (string, error) {
	dirs := []string{}
	if _, file, _, ok := runtime.Caller(0); ok {
		dirs = append(dirs, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	for _, d := range dirs {
		for dir := d; ; dir = filepath.Dir(dir) {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/dls-project/dls\n") {
				return dir, nil
			}
			if dir == filepath.Dir(dir) {
				break
			}
		}
	}
	return "", fmt.Errorf("module root (go.mod of github.com/dls-project/dls) not found")
}

// Build builds bin/dls and the plugins into dir (dir/dls,
// dir/plugins/dls-...), from the repository at root.
func Build(root, dir string) error {
	targets := map[string]string{filepath.Join(dir, "dls"): "./core/cmd/dls"}
	for name, pkg := range Plugins {
		targets[filepath.Join(dir, "plugins", name)] = pkg
	}
	for out, pkg := range targets {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	return nil
}

// Image assembles the boot sector image (e2e/testdata/boot.asm, see there)
// into out with nasm.
func Image(root, out string) error {
	src := filepath.Join(root, "e2e", "testdata", "boot.asm")
	if b, err := exec.Command("nasm", "-f", "bin", "-o", out, src).CombinedOutput(); err != nil {
		return fmt.Errorf("nasm %s: %v\n%s", src, err, b)
	}
	return nil
}
