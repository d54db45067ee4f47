package tftpd

import (
	"net"

	"golang.org/x/sys/unix"
)

// setReadBuffer sizes a socket's receive buffer: SO_RCVBUFFORCE when the
// process may (CAP_NET_ADMIN), else SO_RCVBUF, which the kernel caps at
// net.core.rmem_max. It returns the size the kernel reports.
func setReadBuffer(c *net.UDPConn, size int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var got int
	var serr error
	err = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if err == nil {
		err = serr
	}
	return got, err
}

// readBufferHint says how to allow a larger receive buffer.
const readBufferHint = "raise net.core.rmem_max or grant CAP_NET_ADMIN"
