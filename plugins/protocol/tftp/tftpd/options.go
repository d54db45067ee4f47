package tftpd

import (
	"strconv"
	"time"
)

// params are one transfer's parameters after option negotiation.
type params struct {
	blksize int
	window  int
	timeout time.Duration
	// oack holds the options accepted, in request order; empty means no
	// OACK: data starts at once with block 1 (RFC 2347).
	oack []Option
}

// negotiate answers the RFC 2347 options of req (blksize RFC 2348,
// timeout and tsize RFC 2349, windowsize RFC 7440) for content of size
// bytes. Unknown options, repeated ones and values out of range are
// left out of the OACK, which the RFCs allow: the client then uses the
// default.
func negotiate(req *Request, set *Settings, size int64) params {
	p := params{blksize: DefaultBlksize, window: 1, timeout: set.Timeout}
	seen := map[string]bool{}
	for _, o := range req.Options {
		if seen[o.Name] {
			continue
		}
		seen[o.Name] = true
		v, err := strconv.Atoi(o.Value)
		switch o.Name {
		case "blksize":
			if !set.BlksizeNegotiation || err != nil || v < MinBlksize {
				continue
			}
			p.blksize = min(v, set.MaxBlksize)
			p.oack = append(p.oack, Option{o.Name, strconv.Itoa(p.blksize)})
		case "tsize":
			// The size of netascii content is not known before it is
			// converted; RFC 2349 lets the server leave the option out.
			if !set.Tsize || req.Mode != modeOctet {
				continue
			}
			p.oack = append(p.oack, Option{o.Name, strconv.FormatInt(size, 10)})
		case "timeout":
			if err != nil || v < 1 || v > MaxTimeout {
				continue
			}
			p.timeout = time.Duration(v) * time.Second
			p.oack = append(p.oack, Option{o.Name, strconv.Itoa(v)})
		case "windowsize":
			if err != nil || v < 1 || v > MaxWindowsize {
				continue
			}
			p.window = min(v, set.MaxWindowsize)
			p.oack = append(p.oack, Option{o.Name, strconv.Itoa(p.window)})
		}
	}
	return p
}
