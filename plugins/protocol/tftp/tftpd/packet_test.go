package tftpd

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func rrq(fields ...string) []byte {
	b := []byte{0, 1}
	for _, f := range fields {
		b = append(b, f...)
		b = append(b, 0)
	}
	return b
}

func TestParseRequest(t *testing.T) {
	long := strings.Repeat("a", MaxNameLen+1)
	for _, tc := range []struct {
		name   string
		pkt    []byte
		want   Request
		reason string
	}{
		{"plain", rrq("undionly.kpxe", "octet"), Request{Name: "undionly.kpxe", Mode: "octet"}, ""},
		{"mode case", rrq("a", "OCTET"), Request{Name: "a", Mode: "octet"}, ""},
		{"netascii", rrq("a", "NetASCII"), Request{Name: "a", Mode: "netascii"}, ""},
		{"options", rrq("a", "octet", "BLKSIZE", "1468", "tsize", "0"),
			Request{Name: "a", Mode: "octet", Options: []Option{{"blksize", "1468"}, {"tsize", "0"}}}, ""},
		{"padded with NULs", append(rrq("a", "octet", "tsize", "0"), 0, 0, 0),
			Request{Name: "a", Mode: "octet", Options: []Option{{"tsize", "0"}}}, ""},
		{"write", append([]byte{0, 2}, rrq("up", "octet")[2:]...), Request{Write: true, Name: "up", Mode: "octet"}, ""},
		{"longest name", rrq(long[:MaxNameLen], "octet"), Request{Name: long[:MaxNameLen], Mode: "octet"}, ""},

		{"short", []byte{0}, Request{}, reasonBadRequest},
		{"not a request", []byte{0, 4, 0, 1}, Request{}, reasonBadRequest},
		{"no terminator", []byte("\x00\x01a\x00octet"), Request{}, reasonBadRequest},
		{"no mode", rrq("a"), Request{}, reasonBadRequest},
		{"empty name", rrq("", "octet"), Request{}, reasonBadRequest},
		{"name too long", rrq(long, "octet"), Request{}, reasonBadRequest},
		{"mail mode", rrq("a", "mail"), Request{}, reasonBadRequest},
		{"NUL inside name", rrq("pxelinux.0", "../../etc/passwd", "octet"), Request{}, reasonBadRequest},
		{"NUL inside name, even fields", rrq("a", "b", "octet", "x"), Request{}, reasonBadRequest},
		{"option without value", rrq("a", "octet", "blksize"), Request{}, reasonBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest(tc.pkt)
			if tc.reason != "" {
				var re *requestError
				if !errors.As(err, &re) || re.reason != tc.reason {
					t.Fatalf("got %+v, %v; want a %s refusal", got, err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Write != tc.want.Write || got.Name != tc.want.Name || got.Mode != tc.want.Mode || !slices.Equal(got.Options, tc.want.Options) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLocalName(t *testing.T) {
	for _, tc := range []struct{ in, want, reason string }{
		{"undionly.kpxe", "undionly.kpxe", ""},
		{"/undionly.kpxe", "undionly.kpxe", ""}, // GRUB asks by absolute path
		{"//grub/grub.cfg", "grub/grub.cfg", ""},
		{"efi//x64/./ipxe.efi", "efi/x64/ipxe.efi", ""},
		{"dir/", "dir", ""},
		{"/", ".", ""}, // root itself: a directory, refused when opened
		{"/../etc/passwd", "", reasonAccessDenied},
		{".", ".", ""},
		{"a\\b", "a\\b", ""},
		{"../etc/passwd", "", reasonAccessDenied},
		{"a/../../etc/passwd", "", reasonAccessDenied},
		{"a/..", "", reasonAccessDenied},
		{"..", "", reasonAccessDenied},
		{"//etc/passwd", "etc/passwd", ""}, // under root
		{"a\x00b", "", reasonBadRequest},
		{"", "", reasonBadRequest},
		{strings.Repeat("x", MaxNameLen+1), "", reasonBadRequest},
	} {
		got, err := localName(tc.in)
		switch {
		case tc.reason != "" && (err == nil || err.reason != tc.reason):
			t.Errorf("localName(%q) = %q, %v; want a %s refusal", tc.in, got, err, tc.reason)
		case tc.reason == "" && (err != nil || got != tc.want):
			t.Errorf("localName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestScriptMAC(t *testing.T) {
	for _, tc := range []struct {
		rel, dir, want string
		ok             bool
	}{
		{"mac/52-54-00-12-34-56.ipxe", "mac", "52:54:00:12:34:56", true},
		{"mac/52:54:00:12:34:56.ipxe", "mac", "52:54:00:12:34:56", true},
		{"mac/52-54-00-AB-CD-EF.iPXE", "mac", "52:54:00:ab:cd:ef", true},
		{"boot/mac/52-54-00-12-34-56.ipxe", "boot/mac", "52:54:00:12:34:56", true},
		{"mac/52-54-00-12-34-56.ipxe", "", "", false},
		{"mac/default.ipxe", "mac", "", false},
		{"mac/52-54-00-12-34-56", "mac", "", false},
		{"mac/.ipxe", "mac", "", false},
		{"other/52-54-00-12-34-56.ipxe", "mac", "", false},
		{"mac/00-00-00-00-fe-80-00-00-00-00-00-00-02-00-5e-10-00-00-00-01.ipxe", "mac", "", false},
	} {
		got, ok := scriptMAC(tc.rel, tc.dir)
		if got != tc.want || ok != tc.ok {
			t.Errorf("scriptMAC(%q, %q) = %q, %v; want %q, %v", tc.rel, tc.dir, got, ok, tc.want, tc.ok)
		}
	}
}

func testSettings() Settings {
	return Settings{Tsize: true, BlksizeNegotiation: true, MaxBlksize: MaxBlksize, MaxWindowsize: 64, Timeout: time.Second, Retries: 5, MaxTransfers: 10}
}

func TestNegotiate(t *testing.T) {
	req := func(mode string, opts ...string) *Request {
		r := &Request{Name: "f", Mode: mode}
		for i := 0; i+1 < len(opts); i += 2 {
			r.Options = append(r.Options, Option{opts[i], opts[i+1]})
		}
		return r
	}
	for _, tc := range []struct {
		name    string
		set     func(*Settings)
		req     *Request
		blksize int
		window  int
		timeout time.Duration
		oack    []Option
	}{
		{"none", nil, req("octet"), 512, 1, time.Second, nil},
		{"all", nil, req("octet", "blksize", "1468", "tsize", "0", "timeout", "3", "windowsize", "16"),
			1468, 16, 3 * time.Second, []Option{{"blksize", "1468"}, {"tsize", "1000"}, {"timeout", "3"}, {"windowsize", "16"}}},
		{"blksize capped", nil, req("octet", "blksize", "70000"), MaxBlksize, 1, time.Second, []Option{{"blksize", "65464"}}},
		{"blksize too small", nil, req("octet", "blksize", "7"), 512, 1, time.Second, nil},
		{"blksize not a number", nil, req("octet", "blksize", "big"), 512, 1, time.Second, nil},
		{"blksize max configured", func(s *Settings) { s.MaxBlksize = 1432 }, req("octet", "blksize", "1468"), 1432, 1, time.Second, []Option{{"blksize", "1432"}}},
		{"blksize negotiation off", func(s *Settings) { s.BlksizeNegotiation = false }, req("octet", "blksize", "1468", "tsize", "0"),
			512, 1, time.Second, []Option{{"tsize", "1000"}}},
		{"tsize off", func(s *Settings) { s.Tsize = false }, req("octet", "tsize", "0"), 512, 1, time.Second, nil},
		{"tsize netascii", nil, req("netascii", "tsize", "0"), 512, 1, time.Second, nil},
		{"timeout out of range", nil, req("octet", "timeout", "0", "windowsize", "0"), 512, 1, time.Second, nil},
		{"timeout 255", nil, req("octet", "timeout", "255"), 512, 1, 255 * time.Second, []Option{{"timeout", "255"}}},
		{"windowsize capped", func(s *Settings) { s.MaxWindowsize = 8 }, req("octet", "windowsize", "16"), 512, 8, time.Second, []Option{{"windowsize", "8"}}},
		{"first of a repeated option", nil, req("octet", "blksize", "1024", "blksize", "2048"), 1024, 1, time.Second, []Option{{"blksize", "1024"}}},
		{"unknown option", nil, req("octet", "multicast", ""), 512, 1, time.Second, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := testSettings()
			if tc.set != nil {
				tc.set(&set)
			}
			p := negotiate(tc.req, &set, 1000)
			if p.blksize != tc.blksize || p.window != tc.window || p.timeout != tc.timeout || !slices.Equal(p.oack, tc.oack) {
				t.Fatalf("got %+v, want blksize %d window %d timeout %s oack %v", p, tc.blksize, tc.window, tc.timeout, tc.oack)
			}
		})
	}
}

// blocks reads every block of src at blksize, going back window blocks
// now and then as a retransmitting sender does.
func blocks(t *testing.T, src source, blksize, window int) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, blksize)
	for n := int64(1); ; n++ {
		if n > int64(window) && n%3 == 0 {
			// Re-read the window's first block: it must come out the same.
			back := n - int64(window) + 1
			k, err := src.block(back, buf)
			if err != nil {
				t.Fatalf("block %d again: %v", back, err)
			}
			if want := out[(back-1)*int64(blksize):]; !bytes.Equal(buf[:k], want[:min(len(want), k)]) {
				t.Fatalf("block %d differs when read again", back)
			}
			for m := back + 1; m < n; m++ {
				if _, err := src.block(m, buf); err != nil {
					t.Fatalf("block %d again: %v", m, err)
				}
			}
		}
		k, err := src.block(n, buf)
		if err != nil {
			t.Fatalf("block %d: %v", n, err)
		}
		out = append(out, buf[:k]...)
		if k < blksize {
			return out
		}
	}
}

func TestOctetSource(t *testing.T) {
	for _, size := range []int{0, 1, 511, 512, 513, 1024, 5000} {
		data := bytes.Repeat([]byte("0123456789abcdef"), size/16+1)[:size]
		got := blocks(t, &octetSource{r: bytes.NewReader(data), size: int64(size)}, 512, 4)
		if !bytes.Equal(got, data) {
			t.Errorf("size %d: got %d bytes back", size, len(got))
		}
	}
	// A file that shrinks under a transfer is an error, not a short block.
	_, err := (&octetSource{r: bytes.NewReader(make([]byte, 100)), size: 1000}).block(1, make([]byte, 512))
	if err == nil {
		t.Error("a shrunk file read without error")
	}
}

func TestNetasciiSource(t *testing.T) {
	for _, in := range []string{
		"", "plain", "a\nb\r\nc\rd\n", strings.Repeat("\n", 700), strings.Repeat("x\r", 300) + "\n",
		strings.Repeat("x", 511) + "\n" + strings.Repeat("y", 511) + "\r",
	} {
		want := strings.NewReplacer("\r", "\r\x00", "\n", "\r\n").Replace(in)
		for _, blksize := range []int{8, 512} {
			src := newNetasciiSource(strings.NewReader(in), int64(len(in)), blksize, 4)
			if got := blocks(t, src, blksize, 4); string(got) != want {
				t.Errorf("netascii of %q at blksize %d: got %q, want %q", truncate(in, 20), blksize, truncate(string(got), 40), truncate(want, 40))
			}
		}
	}
	// Going back further than the window is a bug in the caller.
	src := newNetasciiSource(strings.NewReader(strings.Repeat("x", 100)), 100, 8, 1)
	buf := make([]byte, 8)
	for n := int64(1); n <= 4; n++ {
		if _, err := src.block(n, buf); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.block(1, buf); err == nil {
		t.Error("a block outside the window came out")
	}
	var _ io.ReaderAt = strings.NewReader("")
}
