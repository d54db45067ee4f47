package chapsecret

import (
	"strings"
	"testing"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		s, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(s) != GeneratedLength || len(s) < 16 {
			t.Fatalf("secret %q: %d characters, want %d (>= 16)", s, len(s), GeneratedLength)
		}
		for _, r := range s {
			if !strings.ContainsRune(alphabet, r) {
				t.Fatalf("secret %q holds %q, outside [A-Za-z0-9]", s, r)
			}
			counts[r]++
		}
		if seen[s] {
			t.Fatalf("secret %q generated twice", s)
		}
		seen[s] = true
		if Check("secret", s) != nil {
			t.Fatalf("a generated secret fails Check: %v", Check("secret", s))
		}
	}
	// 48,000 symbols over 62: about 774 each; every symbol must turn up,
	// none wildly more often than the others (a biased modulo would give
	// the first 8 symbols ~1.3 times their share).
	if len(counts) != len(alphabet) {
		t.Errorf("%d distinct symbols, want %d", len(counts), len(alphabet))
	}
	for r, n := range counts {
		if n < 600 || n > 950 {
			t.Errorf("symbol %q: %d times in 48000, want about 774", r, n)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		secret string
		ok     bool
	}{
		{"", false},
		{"elevenchars", false},
		{"twelve-chars", true},
		{strings.Repeat("x", MaxLength), true},
		{strings.Repeat("x", MaxLength+1), false},
	} {
		err := Check("secret", tc.secret)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%d chars) = %v, want ok=%v", len(tc.secret), err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "secret") {
			t.Errorf("Check error %q does not name what", err)
		}
	}
}
