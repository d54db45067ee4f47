package ifsocket

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Bind binds socket fd to the interface ifname (SO_BINDTODEVICE): the
// kernel delivers only that interface's packets to it.
func Bind(fd int, ifname string) error {
	if err := unix.BindToDevice(fd, ifname); err != nil {
		return fmt.Errorf("bind to interface %s (SO_BINDTODEVICE): %w", ifname, err)
	}
	return nil
}

// Filter is 0 on Linux: Bind already keeps other interfaces' packets
// away.
func Filter(string) (int, error) { return 0, nil }

// SetBuffers sizes socket fd's buffers: rcvbuf to receive, half of it to
// send. FORCE passes net.core.rmem_max with CAP_NET_ADMIN; without it,
// take what the kernel allows.
func SetBuffers(fd, rcvbuf int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, rcvbuf/2) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, rcvbuf/2)
	}
}
