package preflight

import (
	"fmt"
	"net"
)

// bindToDevice checks that the interface device exists: FreeBSD has no
// SO_BINDTODEVICE, and the DHCP plugin binds the wildcard address there,
// keeping only the packets that arrived on device (IP_RECVIF).
func bindToDevice(_ int, device string) error {
	if _, err := net.InterfaceByName(device); err != nil {
		return fmt.Errorf("interface %s: %w", device, err)
	}
	return nil
}
