package tftpd

import (
	"net"

	"golang.org/x/sys/unix"
)

// setReadBuffer sizes a socket's receive buffer with SO_RCVBUF; FreeBSD
// refuses sizes past kern.ipc.maxsockbuf (ENOBUFS) and has no FORCE
// variant. It returns the size the kernel reports.
func setReadBuffer(c *net.UDPConn, size int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var got int
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if err == nil {
		err = serr
	}
	return got, err
}

// readBufferHint says how to allow a larger receive buffer.
const readBufferHint = "raise kern.ipc.maxsockbuf"
