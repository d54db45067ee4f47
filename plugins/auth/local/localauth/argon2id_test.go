package localauth

import (
	"errors"
	"strings"
	"testing"
)

// fast are parameters cheap enough for tests; never use them for real.
var fast = Params{Memory: 64, Iterations: 1, Parallelism: 1}

// referenceHash was made by the reference implementation (the argon2 CLI of
// phc-winner-argon2, Debian package argon2):
//
//	echo -n "correct horse battery staple" | argon2 dls-test-salt-16 -id -t 2 -m 10 -p 2 -l 32 -e
const referenceHash = "$argon2id$v=19$m=1024,t=2,p=2$ZGxzLXRlc3Qtc2FsdC0xNg$mrLBb5v8YM/GgBv07FsCm6VamsIvI4O8RnotM7fT45s"

func TestReferenceHash(t *testing.T) {
	h, err := ParseHash(referenceHash)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Params{Memory: 1024, Iterations: 2, Parallelism: 2}); h.Params != want {
		t.Errorf("params = %+v, want %+v", h.Params, want)
	}
	if string(h.Salt) != "dls-test-salt-16" {
		t.Errorf("salt = %q", h.Salt)
	}
	if err := h.Compare("correct horse battery staple"); err != nil {
		t.Errorf("reference password: %v", err)
	}
	if err := h.Compare("correct horse battery stapl"); !errors.Is(err, errMismatch) {
		t.Errorf("other password: got %v, want errMismatch", err)
	}
	if got := h.String(); got != referenceHash {
		t.Errorf("String() = %s, want %s", got, referenceHash)
	}
}

func TestHashRoundTrip(t *testing.T) {
	h, err := NewHash("s3cret-passphrase", fast)
	if err != nil {
		t.Fatal(err)
	}
	s := h.String()
	if !strings.HasPrefix(s, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("PHC string %q", s)
	}
	back, err := ParseHash(s)
	if err != nil {
		t.Fatal(err)
	}
	if back.String() != s {
		t.Errorf("round trip: %s != %s", back.String(), s)
	}
	if err := back.Compare("s3cret-passphrase"); err != nil {
		t.Error(err)
	}
	if err := back.Compare("S3cret-passphrase"); err == nil {
		t.Error("a different password matched")
	}
	other, _ := NewHash("s3cret-passphrase", fast)
	if other.String() == s {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestParseHashRefuses(t *testing.T) {
	const salt, key = "ZGxzLXRlc3Qtc2FsdC0xNg", "mrLBb5v8YM/GgBv07FsCm6VamsIvI4O8RnotM7fT45s"
	for _, tc := range []struct{ name, hash, want string }{
		{"empty", "", "not a PHC string"},
		{"plain text", "hunter2", "not a PHC string"},
		{"bcrypt", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW", "not a PHC string"},
		{"argon2i", "$argon2i$v=19$m=1024,t=2,p=2$" + salt + "$" + key, "only argon2id"},
		{"argon2d", "$argon2d$v=19$m=1024,t=2,p=2$" + salt + "$" + key, "only argon2id"},
		{"no version", "$argon2id$m=1024,t=2,p=2$" + salt + "$" + key, "not a PHC string"},
		{"version 16", "$argon2id$v=16$m=1024,t=2,p=2$" + salt + "$" + key, "only v=19"},
		{"params order", "$argon2id$v=19$t=2,m=1024,p=2$" + salt + "$" + key, "want m="},
		{"params missing", "$argon2id$v=19$m=1024,t=2$" + salt + "$" + key, "want m="},
		{"params extra", "$argon2id$v=19$m=1024,t=2,p=2,x=1$" + salt + "$" + key, "want m="},
		{"negative", "$argon2id$v=19$m=-1,t=2,p=2$" + salt + "$" + key, "not a number"},
		{"leading zero", "$argon2id$v=19$m=01024,t=2,p=2$" + salt + "$" + key, "not a number"},
		{"overflow", "$argon2id$v=19$m=99999999999,t=2,p=2$" + salt + "$" + key, "not a number"},
		{"huge memory", "$argon2id$v=19$m=4294967295,t=2,p=2$" + salt + "$" + key, "limit"},
		{"zero passes", "$argon2id$v=19$m=1024,t=0,p=2$" + salt + "$" + key, "iterations"},
		{"many passes", "$argon2id$v=19$m=1024,t=1000000,p=2$" + salt + "$" + key, "iterations"},
		{"zero lanes", "$argon2id$v=19$m=1024,t=2,p=0$" + salt + "$" + key, "parallelism"},
		{"too many lanes", "$argon2id$v=19$m=1024,t=2,p=256$" + salt + "$" + key, "255"},
		{"memory below 8p", "$argon2id$v=19$m=8,t=2,p=2$" + salt + "$" + key, "8 KiB per lane"},
		{"padded salt", "$argon2id$v=19$m=1024,t=2,p=2$" + salt + "==$" + key, "salt"},
		{"url base64", "$argon2id$v=19$m=1024,t=2,p=2$" + salt + "$" + strings.ReplaceAll(key, "/", "_"), "hash"},
		{"short salt", "$argon2id$v=19$m=1024,t=2,p=2$YWJj$" + key, "salt of 3 bytes"},
		{"empty salt", "$argon2id$v=19$m=1024,t=2,p=2$$" + key, "salt of 0 bytes"},
		{"empty hash", "$argon2id$v=19$m=1024,t=2,p=2$" + salt + "$", "hash of 0 bytes"},
		{"short hash", "$argon2id$v=19$m=1024,t=2,p=2$" + salt + "$YWJjZGVmZ2g", "hash of 8 bytes"},
		{"trailing field", "$argon2id$v=19$m=1024,t=2,p=2$" + salt + "$" + key + "$", "not a PHC string"},
		{"no leading $", "argon2id$v=19$m=1024,t=2,p=2$" + salt + "$" + key + "$x", "not a PHC string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHash(tc.hash)
			if err == nil {
				t.Fatalf("ParseHash(%q) accepted it", tc.hash)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseHash(%q) = %v, want an error containing %q", tc.hash, err, tc.want)
			}
		})
	}
}

func TestParamsWeak(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		weak bool
	}{
		{DefaultParams, false},
		{Params{Memory: 19456, Iterations: 2, Parallelism: 1}, false}, // OWASP
		{Params{Memory: 47104, Iterations: 1, Parallelism: 1}, false}, // OWASP
		{Params{Memory: 7168, Iterations: 5, Parallelism: 1}, false},  // OWASP
		{Params{Memory: 19456, Iterations: 1, Parallelism: 1}, true},
		{fast, true},
	} {
		if got := tc.p.weak(); got != tc.weak {
			t.Errorf("%s: weak = %v, want %v", tc.p, got, tc.weak)
		}
	}
}

func FuzzParseHash(f *testing.F) {
	f.Add(referenceHash)
	f.Add("$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHash(s)
		if err != nil {
			return
		}
		if h.Params.check() != nil || len(h.Salt) < minSaltLen || len(h.Key) < minKeyLen {
			t.Fatalf("ParseHash(%q) accepted %+v", s, h)
		}
		if _, err := ParseHash(h.String()); err != nil {
			t.Fatalf("re-parse of %q: %v", h.String(), err)
		}
	})
}

// BenchmarkHash measures one hash with the default parameters, the cost
// of every login (see README.md, "Why these argon2id parameters").
func BenchmarkHash(b *testing.B) {
	h, err := NewHash("correct horse battery", DefaultParams)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		_ = h.Compare("correct horse battery")
	}
}
