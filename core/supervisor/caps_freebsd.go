package supervisor

import (
	"errors"
	"syscall"
)

// setAmbientCaps refuses capabilities: ambient capabilities are Linux's.
// On FreeBSD a plugin under another user gets its privileged ports from
// mac_portacl(4) or net.inet.ip.portrange.reservedhigh instead, outside
// DLS.
func setAmbientCaps(_ *syscall.SysProcAttr, caps []uintptr) error {
	if len(caps) > 0 {
		return errors.New("ambient capabilities are Linux-only, not available on freebsd")
	}
	return nil
}
