package plugintest

import "testing"

func TestMedianIOPerPattern(t *testing.T) {
	xs := []IOStats{
		{SeqRead1M: 3, SeqWrite1M: 10, RandRead4K: 0.7, RandWrite4K: 5},
		{SeqRead1M: 1, SeqWrite1M: 30, RandRead4K: 0.9, RandWrite4K: 4},
		{SeqRead1M: 2, SeqWrite1M: 20, RandRead4K: 0.8, RandWrite4K: 6},
	}
	want := IOStats{SeqRead1M: 2, SeqWrite1M: 20, RandRead4K: 0.8, RandWrite4K: 5}
	if got := medianIO(xs); got != want {
		t.Errorf("medianIO = %+v, want %+v (each pattern on its own)", got, want)
	}
	if got := medianIO(xs[:1]); got != xs[0] {
		t.Errorf("median of one = %+v, want it", got)
	}
}

func TestRatioIsGotOverRaw(t *testing.T) {
	raw := IOStats{SeqRead1M: 100, SeqWrite1M: 50, RandRead4K: 10, RandWrite4K: 4}
	got := IOStats{SeqRead1M: 80, SeqWrite1M: 100, RandRead4K: 10, RandWrite4K: 1}
	want := IOStats{SeqRead1M: 0.8, SeqWrite1M: 2, RandRead4K: 1, RandWrite4K: 0.25}
	if r := ratio(got, raw); r != want {
		t.Errorf("ratio = %+v, want %+v", r, want)
	}
}
