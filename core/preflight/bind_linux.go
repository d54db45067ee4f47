package preflight

import "golang.org/x/sys/unix"

// bindToDevice binds socket fd to the interface device, as the DHCP
// plugin does.
func bindToDevice(fd int, device string) error { return unix.BindToDevice(fd, device) }
