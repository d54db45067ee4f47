package ifsocket

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Bind leaves fd on the wildcard address: FreeBSD has no
// SO_BINDTODEVICE, and a socket bound to the interface's own address
// would not receive the clients' broadcasts or multicasts. The caller
// drops the other interfaces' packets by Filter's index instead.
func Bind(int, string) error { return nil }

// Filter is the index of ifname, whose packets alone are served.
func Filter(ifname string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("interface %s: %w", ifname, err)
	}
	return ifi.Index, nil
}

// SetBuffers sizes socket fd's buffers: rcvbuf to receive, half of it to
// send, up to kern.ipc.maxsockbuf (FreeBSD has no FORCE variant).
func SetBuffers(fd, rcvbuf int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, rcvbuf/2)
}
