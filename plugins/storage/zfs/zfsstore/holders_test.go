package zfsstore

import (
	"slices"
	"testing"
)

func TestFuserPIDs(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want []int
	}{
		{"", nil},
		{"\n", nil},
		{" 643\n", []int{643}},
		{"  1202  1377\n", []int{1202, 1377}},
		{" 88c 91rw", []int{88, 91}}, // use letters beside the ids
	} {
		got, err := fuserPIDs(tc.out)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("fuserPIDs(%q) = %v, %v; want %v", tc.out, got, err, tc.want)
		}
	}
	for _, bad := range []string{"/dev/zvol/tank/v: 12", "x", "-4", "0"} {
		if got, err := fuserPIDs(bad); err == nil {
			t.Errorf("fuserPIDs(%q) = %v, want an error", bad, got)
		}
	}
}
