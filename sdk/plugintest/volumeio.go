package plugintest

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/volume"
)

// IOStats is what VolumeIO measured: bytes per second for each pattern.
type IOStats struct {
	SeqRead1M, SeqWrite1M, RandRead4K, RandWrite4K float64
}

// VolumeIO measures sequential 1 MiB and random 4 KiB reads and writes
// through v, moving about total bytes per pattern (and at most size bytes
// sequentially), ending each write pattern with a Flush. Storage plugins
// use it in benchmarks to report their volumes as a ratio to a raw file
// on the same disk, measured in the same run:
//
//	raw, cow := plugintest.VolumeIO(b, rawVol, n), plugintest.VolumeIO(b, cloneVol, n)
//	b.ReportMetric(cow.SeqRead1M/raw.SeqRead1M, "seqread-x-raw")
func VolumeIO(tb testing.TB, v volume.Volume, total int64) IOStats {
	tb.Helper()
	size := v.Size()
	seq := min(total, size) &^ (1<<20 - 1)
	rnd := rand.New(rand.NewPCG(7, 11))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*31 + 7)
	}
	rate := func(bytes int64, start time.Time) float64 {
		return float64(bytes) / time.Since(start).Seconds()
	}
	check := func(what string, err error) {
		if err != nil {
			tb.Fatalf("volume I/O (%s): %v", what, err)
		}
	}
	var s IOStats
	start := time.Now()
	for off := int64(0); off < seq; off += 1 << 20 {
		_, err := v.WriteAt(buf, off)
		check("sequential write", err)
	}
	check("flush", v.Flush())
	s.SeqWrite1M = rate(seq, start)

	start = time.Now()
	for off := int64(0); off < seq; off += 1 << 20 {
		_, err := v.ReadAt(buf, off)
		check("sequential read", err)
	}
	s.SeqRead1M = rate(seq, start)

	blocks := size / 4096
	n := total / 4096
	start = time.Now()
	for i := int64(0); i < n; i++ {
		_, err := v.WriteAt(buf[:4096], rnd.Int64N(blocks)*4096)
		check("random write", err)
	}
	check("flush", v.Flush())
	s.RandWrite4K = rate(n*4096, start)

	start = time.Now()
	for i := int64(0); i < n; i++ {
		_, err := v.ReadAt(buf[:4096], rnd.Int64N(blocks)*4096)
		check("random read", err)
	}
	s.RandRead4K = rate(n*4096, start)
	return s
}

// ReportIORatios reports got as ratios to raw on b (metrics named
// "<pattern>-x-raw"), and raw's own rates in MB/s, from one measurement
// each. CompareVolumeIO, which takes medians over rounds, is steadier on
// a shared machine.
func ReportIORatios(b *testing.B, raw, got IOStats) {
	reportIO(b, ratio(got, raw), raw)
}

// CompareVolumeIO runs VolumeIO on raw and on got alternately, rounds
// times each, and reports on b what ReportIORatios does, from the median
// of each pattern's ratio. One noisy moment on a shared machine then
// cannot decide the figure, and the rounds show how far it moves.
func CompareVolumeIO(b *testing.B, raw, got volume.Volume, total int64, rounds int) {
	b.Helper()
	rounds = max(rounds, 1)
	ratios := make([]IOStats, rounds)
	raws := make([]IOStats, rounds)
	for i := range rounds {
		raws[i] = VolumeIO(b, raw, total)
		ratios[i] = ratio(VolumeIO(b, got, total), raws[i])
	}
	reportIO(b, medianIO(ratios), medianIO(raws))
}

func reportIO(b *testing.B, ratio, raw IOStats) {
	b.ReportMetric(ratio.SeqRead1M, "seqread1M-x-raw")
	b.ReportMetric(ratio.SeqWrite1M, "seqwrite1M-x-raw")
	b.ReportMetric(ratio.RandRead4K, "randread4K-x-raw")
	b.ReportMetric(ratio.RandWrite4K, "randwrite4K-x-raw")
	b.ReportMetric(raw.SeqRead1M/1e6, "raw-seqread-MB/s")
	b.ReportMetric(raw.RandWrite4K/1e6, "raw-randwrite-MB/s")
}

// ratio is got/raw, pattern by pattern.
func ratio(got, raw IOStats) IOStats {
	return IOStats{
		SeqRead1M:   got.SeqRead1M / raw.SeqRead1M,
		SeqWrite1M:  got.SeqWrite1M / raw.SeqWrite1M,
		RandRead4K:  got.RandRead4K / raw.RandRead4K,
		RandWrite4K: got.RandWrite4K / raw.RandWrite4K,
	}
}

// medianIO is the median of each pattern on its own (the upper one of an
// even count).
func medianIO(xs []IOStats) IOStats {
	med := func(f func(IOStats) float64) float64 {
		v := make([]float64, len(xs))
		for i, x := range xs {
			v[i] = f(x)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return IOStats{
		SeqRead1M:   med(func(s IOStats) float64 { return s.SeqRead1M }),
		SeqWrite1M:  med(func(s IOStats) float64 { return s.SeqWrite1M }),
		RandRead4K:  med(func(s IOStats) float64 { return s.RandRead4K }),
		RandWrite4K: med(func(s IOStats) float64 { return s.RandWrite4K }),
	}
}
