package supervisor

import "syscall"

// setAmbientCaps makes the plugin keep caps under its credential.
func setAmbientCaps(attr *syscall.SysProcAttr, caps []uintptr) error {
	attr.AmbientCaps = append([]uintptr(nil), caps...)
	return nil
}
