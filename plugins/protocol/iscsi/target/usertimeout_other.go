//go:build !linux

package target

import (
	"net"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT is Linux's: there a
// peer that vanished with data in flight is dropped when retransmission
// gives up.
func setUserTimeout(*net.TCPConn, time.Duration) error { return nil }
