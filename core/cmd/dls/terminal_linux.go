package main

import "golang.org/x/sys/unix"

// The termios requests: Linux's names for them.
const (
	ioctlGetTermios = unix.TCGETS
	ioctlSetTermios = unix.TCSETS
)
