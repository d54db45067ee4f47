package tftpd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// link carries one transfer's packets to and from its peer: its own
// connected UDP socket (the default), or the shared listen socket in
// single-port mode.
type link interface {
	send(b []byte) error
	// recv returns the peer's next ACK or ERROR, waiting until deadline
	// at most (then an error matching os.ErrDeadlineExceeded).
	recv(deadline time.Time) (reply, error)
	// abort makes a recv in progress, and later ones, return
	// net.ErrClosed; any goroutine may call it.
	abort()
	// close releases the link; the transfer's goroutine calls it last.
	close()
}

// transferError ends a transfer early, with the reason counted.
type transferError struct {
	reason string
	err    error
}

func (e *transferError) Error() string { return e.reason + ": " + e.err.Error() }

// sender runs one transfer's packet loop: the OACK if options were
// accepted, then the data in windows of window blocks (one block per
// round trip when window is 1, RFC 1350 lock-step), each window sent
// again after a timeout that doubles on every retry.
type sender struct {
	link    link
	src     source
	blksize int
	window  int64
	timeout time.Duration
	retries int
	oack    []byte
	pkt     []byte // one DATA packet, 4+blksize bytes, reused for every block

	sent        int64                     // payload bytes sent, retransmissions included
	bytes       interface{ Add(float64) } // counts sent as it goes (may be nil)
	retransmits interface{ Inc() }        // counts packets sent again (may be nil)
	answered    func()                    // called at the peer's first ACK or ERROR (may be nil)
}

// maxBackoff caps the doubling retransmission timeout, unless the
// negotiated timeout is longer.
const maxBackoff = 10 * time.Second

func (s *sender) backoff(wait time.Duration) time.Duration {
	return min(2*wait, max(s.timeout, maxBackoff))
}

func (s *sender) run() *transferError {
	if len(s.oack) > 0 {
		if err := s.negotiate(); err != nil {
			return err
		}
	}
	return s.data()
}

// negotiate sends the OACK until the client acknowledges it with block 0.
func (s *sender) negotiate() *transferError {
	wait := s.timeout
	for try := 0; ; try++ {
		if try > 0 {
			s.retransmitted()
		}
		if err := s.link.send(s.oack); err != nil {
			return linkError(fmt.Errorf("send OACK: %w", err))
		}
		deadline := time.Now().Add(wait)
		for {
			r, err := s.link.recv(deadline)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return linkError(err)
			}
			s.gotReply()
			if r.op == opERROR {
				return peerError(r)
			}
			if r.block == 0 {
				return nil
			}
		}
		if try >= s.retries {
			return &transferError{reasonTimeout, fmt.Errorf("OACK not acknowledged after %d tries", try+1)}
		}
		wait = s.backoff(wait)
	}
}

// data sends the blocks. Block numbers are counted in 64 bits here and
// wrap to 0 after 65535 on the wire, as tftp-hpa, curl and atftp expect
// of files past 65535 blocks.
func (s *sender) data() *transferError {
	var (
		acked int64      // every block up to this one is acknowledged
		next  int64 = 1  // the next block to send
		high  int64      // the highest block sent so far
		last  int64 = -1 // the final (short) block, once read
		wait        = s.timeout
		tries int
	)
	for {
		before := s.sent
		for next <= acked+s.window && (last < 0 || next <= last) {
			n, err := s.src.block(next, s.pkt[4:])
			if err != nil {
				return &transferError{reasonInternal, fmt.Errorf("read block %d: %w", next, err)}
			}
			if n < s.blksize {
				last = next
			}
			binary.BigEndian.PutUint16(s.pkt[0:], opDATA)
			binary.BigEndian.PutUint16(s.pkt[2:], uint16(next))
			if err := s.link.send(s.pkt[:4+n]); err != nil {
				return linkError(fmt.Errorf("send block %d: %w", next, err))
			}
			s.sent += int64(n)
			if next <= high {
				s.retransmitted()
			}
			high = max(high, next)
			next++
		}
		if s.bytes != nil && s.sent > before {
			s.bytes.Add(float64(s.sent - before))
		}
		deadline := time.Now().Add(wait)
		for {
			r, err := s.link.recv(deadline)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				tries++
				if tries > s.retries {
					return &transferError{reasonTimeout, fmt.Errorf("block %d not acknowledged after %d tries", acked+1, tries)}
				}
				wait = s.backoff(wait)
				next = acked + 1
				break
			}
			if err != nil {
				return linkError(err)
			}
			s.gotReply()
			if r.op == opERROR {
				return peerError(r)
			}
			// How many more blocks this ACK covers. 0 is a duplicate,
			// which must not trigger a resend (RFC 1123, the Sorcerer's
			// Apprentice); more than was sent is a stray.
			d := int64(r.block - uint16(acked))
			if d == 0 || d > next-1-acked {
				continue
			}
			acked += d
			tries, wait = 0, s.timeout
			if acked == last {
				return nil
			}
			// An ACK short of the window's end means the client lost the
			// block after it: send again from there (RFC 7440).
			if acked < next-1 {
				next = acked + 1
			}
			break
		}
	}
}

func (s *sender) retransmitted() {
	if s.retransmits != nil {
		s.retransmits.Inc()
	}
}

func (s *sender) gotReply() {
	if s.answered != nil {
		s.answered()
		s.answered = nil
	}
}

func linkError(err error) *transferError {
	if errors.Is(err, net.ErrClosed) {
		return &transferError{reasonShutdown, err}
	}
	if isRefused(err) {
		return &transferError{reasonAborted, fmt.Errorf("client port closed: %w", err)}
	}
	return &transferError{reasonInternal, err}
}

func peerError(r reply) *transferError {
	return &transferError{reasonAborted, fmt.Errorf("client sent error %d: %q", r.code, r.msg)}
}
