package tftpd

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// ackLink acknowledges every DATA packet at once: the sender's own cost
// per block, without a network.
type ackLink struct {
	acks []uint16
}

func (l *ackLink) send(b []byte) error {
	if b[1] == byte(opDATA) {
		l.acks = append(l.acks, uint16(b[2])<<8|uint16(b[3]))
	} else {
		l.acks = append(l.acks, 0)
	}
	return nil
}

func (l *ackLink) recv(time.Time) (reply, error) {
	// One ACK per window: the last block sent.
	r := reply{op: opACK, block: l.acks[len(l.acks)-1]}
	l.acks = l.acks[:0]
	return r, nil
}

func (l *ackLink) abort() {}
func (l *ackLink) close() {}

// BenchmarkSender measures the engine per 64 MiB file at blksize 1468,
// lock-step and with a window of 16; it must not allocate per block.
func BenchmarkSender(b *testing.B) {
	data := bytes.Repeat([]byte{1, 2, 3, 4}, 16<<20)
	for _, window := range []int64{1, 16} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				l := &ackLink{acks: make([]uint16, 0, 64)}
				s := &sender{
					link: l, src: &octetSource{r: bytes.NewReader(data), size: int64(len(data))},
					blksize: 1468, window: window, timeout: time.Second, retries: 5, pkt: make([]byte, 4+1468),
				}
				if err := s.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
