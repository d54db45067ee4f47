//go:build linux || freebsd

package main

import (
	"context"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// noTerminal says why login cannot ask for the password.
const noTerminal = "standard input is not a terminal: give the password on standard input with --password-stdin"

// terminal returns r as a terminal, if it is one.
func terminal(r io.Reader) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok {
		return nil, false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), ioctlGetTermios)
	return f, err == nil
}

// readPassword reads a line from the terminal with echo off. The echo
// comes back when the line is read, and when ctx ends (Ctrl-C) first.
func readPassword(ctx context.Context, tty *os.File) (string, error) {
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
	if err != nil {
		return "", err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	quiet.Iflag |= unix.ICRNL
	if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &quiet); err != nil {
		return "", err
	}
	restore := sync.OnceFunc(func() { _ = unix.IoctlSetTermios(fd, ioctlSetTermios, old) })
	defer restore()
	type result struct {
		line string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		line, err := readLine(tty)
		done <- result{line, err}
	}()
	select {
	case r := <-done:
		return r.line, r.err
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
