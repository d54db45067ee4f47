package main

import "golang.org/x/sys/unix"

// The termios requests: the BSD names for them.
const (
	ioctlGetTermios = unix.TIOCGETA
	ioctlSetTermios = unix.TIOCSETA
)
