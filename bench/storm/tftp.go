//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

// TFTP opcodes (RFC 1350, 2347).
const (
	tftpRRQ   = 1
	tftpDATA  = 3
	tftpACK   = 4
	tftpERROR = 5
	tftpOACK  = 6
)

// tftpResult is one fetched file.
type tftpResult struct {
	Size        int
	SHA256      [32]byte
	Retransmits int
}

// rrq is a read request for file with the options iPXE's undionly sends
// (blksize, tsize; no windowsize: firmware is lock-step).
func rrq(file string, blksize int) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, tftpRRQ})
	for _, s := range []string{file, "octet", "blksize", strconv.Itoa(blksize), "tsize", "0"} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	return b.Bytes()
}

func tftpAck(block uint16) []byte {
	return []byte{0, tftpACK, byte(block >> 8), byte(block)}
}

// parseOACK returns the options of an OACK packet.
func parseOACK(p []byte) map[string]string {
	opts := map[string]string{}
	fields := bytes.Split(p[2:], []byte{0})
	for i := 0; i+1 < len(fields); i += 2 {
		opts[string(bytes.ToLower(fields[i]))] = string(fields[i+1])
	}
	return opts
}

// fetchTFTP reads file from server lock-step, as boot firmware does,
// from the address local (the machine's lease): each packet is resent
// after timeout, at most retries times in a row.
func fetchTFTP(ctx context.Context, local net.IP, server *net.UDPAddr, file string, blksize int, timeout time.Duration, retries int) (tftpResult, error) {
	var res tftpResult
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: local})
	if err != nil {
		return res, fmt.Errorf("tftp socket: %w", err)
	}
	defer conn.Close()
	// A canceled storm ends the wait at once rather than after timeout.
	defer context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })()

	h := sha256.New()
	last, dest := rrq(file, blksize), server
	var peer *net.UDPAddr // the server's transfer id, from its first answer
	want, size, tries := uint16(1), 0, 0
	buf := make([]byte, 65536+4)
	send := func() error {
		_, err := conn.WriteToUDP(last, dest)
		return err
	}
	if err := send(); err != nil {
		return res, fmt.Errorf("tftp %s from %s: %w", file, server, err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				if tries++; tries > retries {
					return res, fmt.Errorf("tftp %s from %s: no answer after %d retransmissions (block %d)", file, server, retries, want)
				}
				res.Retransmits++
				if err := send(); err != nil {
					return res, fmt.Errorf("tftp %s: %w", file, err)
				}
				continue
			}
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("tftp %s: %w", file, err)
		}
		if n < 4 || !from.IP.Equal(server.IP) || (peer != nil && from.Port != peer.Port) {
			continue // not our server's transfer
		}
		if peer == nil {
			peer, dest = from, from
		}
		p := buf[:n]
		switch binary.BigEndian.Uint16(p) {
		case tftpOACK:
			if v, ok := parseOACK(p)["blksize"]; ok {
				if b, err := strconv.Atoi(v); err == nil && b > 0 {
					blksize = b
				}
			}
			last, tries = tftpAck(0), 0
		case tftpDATA:
			block := binary.BigEndian.Uint16(p[2:])
			if block != want {
				// A duplicate of the block before: our ACK was lost, send
				// it again (RFC 1350; never for other blocks, the
				// Sorcerer's Apprentice bug).
				if block == want-1 {
					res.Retransmits++
					if err := send(); err != nil {
						return res, fmt.Errorf("tftp %s: %w", file, err)
					}
				}
				continue
			}
			data := p[4:]
			h.Write(data)
			size += len(data)
			last, tries = tftpAck(block), 0
			want++
			if len(data) < blksize {
				_ = send() // the final ACK; the server stops on it or on its own timeout
				res.Size = size
				copy(res.SHA256[:], h.Sum(nil))
				return res, nil
			}
		case tftpERROR:
			return res, fmt.Errorf("tftp %s from %s: error %d: %s", file, server, binary.BigEndian.Uint16(p[2:]), bytes.TrimRight(p[4:], "\x00"))
		default:
			continue
		}
		if err := send(); err != nil {
			return res, fmt.Errorf("tftp %s: %w", file, err)
		}
	}
}
