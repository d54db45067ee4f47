package tftpd

import (
	"fmt"
	"io"
)

// source yields the blocks a transfer sends, by number, so that a
// window can be sent again from any of its blocks.
type source interface {
	// block fills buf (blksize bytes) with block n, counted from 1, and
	// returns its length. A length below len(buf) marks the last block.
	// n never goes back more than the transfer's window.
	block(n int64, buf []byte) (int, error)
}

// octetSource serves a file or a script as it is, each block read with
// ReadAt at its offset: nothing is buffered beyond the packet.
type octetSource struct {
	r    io.ReaderAt
	size int64 // fixed when opened: what tsize announced
}

func (s *octetSource) block(n int64, buf []byte) (int, error) {
	off := (n - 1) * int64(len(buf))
	if off >= s.size {
		return 0, nil
	}
	want := int(min(int64(len(buf)), s.size-off))
	got, err := s.r.ReadAt(buf[:want], off)
	if got == want {
		return got, nil
	}
	if err == nil || err == io.EOF {
		err = fmt.Errorf("file shrank to %d bytes while being sent", off+int64(got))
	}
	return got, err
}

// netasciiSource converts to netascii as it goes (RFC 764: LF becomes
// CR LF, CR becomes CR NUL). Output blocks do not line up with input
// offsets, so it remembers where each block of the current window began.
type netasciiSource struct {
	r    io.ReaderAt
	size int64
	raw  []byte
	ring []checkpoint // block n's start at ring[n%len(ring)]
}

// checkpoint is where a block starts: an input offset, and the second
// byte of a CR LF or CR NUL pair that did not fit the previous block.
type checkpoint struct {
	n       int64
	off     int64
	pending byte
	hasPend bool
}

func newNetasciiSource(r io.ReaderAt, size int64, blksize, window int) *netasciiSource {
	s := &netasciiSource{r: r, size: size, raw: make([]byte, blksize), ring: make([]checkpoint, window+2)}
	s.ring[1] = checkpoint{n: 1}
	return s
}

func (s *netasciiSource) block(n int64, buf []byte) (int, error) {
	cp := s.ring[n%int64(len(s.ring))]
	if cp.n != n {
		return 0, fmt.Errorf("netascii block %d is outside the window", n)
	}
	out := 0
	if cp.hasPend {
		buf[0] = cp.pending
		out, cp.hasPend = 1, false
	}
	// Each input byte makes one or two output bytes: reading what is
	// left of buf fills it unless the file ends.
	if want := int(min(int64(len(buf)-out), s.size-cp.off)); want > 0 {
		got, err := s.r.ReadAt(s.raw[:want], cp.off)
		if got < want {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("file shrank while being sent")
			}
			return 0, err
		}
		used := 0
		for _, c := range s.raw[:want] {
			if out == len(buf) {
				break
			}
			used++
			switch c {
			case '\n':
				buf[out] = '\r'
				cp.pending = '\n'
			case '\r':
				buf[out] = '\r'
				cp.pending = 0
			default:
				buf[out] = c
				out++
				continue
			}
			out++
			if out < len(buf) {
				buf[out] = cp.pending
				out++
			} else {
				cp.hasPend = true
			}
		}
		cp.off += int64(used)
	}
	cp.n = n + 1
	s.ring[cp.n%int64(len(s.ring))] = cp
	return out, nil
}
