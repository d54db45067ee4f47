package volume_test

import (
	"math/rand/v2"
	"testing"

	"github.com/dls-project/dls/sdk/volume"
)

// benchSize is the volume the benchmarks use: large enough that random
// 4 KiB offsets spread out, small enough to fill quickly. The file sits in
// the test's temp dir, so the numbers are mostly page-cache speed.
const benchSize = 256 << 20

// benchVolume opens a volume whose every block has been written, so reads
// hit data rather than holes.
func benchVolume(b *testing.B) volume.Volume {
	b.Helper()
	v, _ := openTemp(b, benchSize)
	chunk := pattern(1<<20, 1)
	for off := int64(0); off < benchSize; off += int64(len(chunk)) {
		if _, err := v.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	return v
}

// randomOffsets returns n block-aligned offsets for size-byte requests.
func randomOffsets(n int, size int64) []int64 {
	r := rand.New(rand.NewPCG(1, 2))
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = r.Int64N(benchSize/size) * size
	}
	return offs
}

func BenchmarkRandom4KiB(b *testing.B) {
	const size = 4 << 10
	v := benchVolume(b)
	offs := randomOffsets(1<<16, size)
	b.Run("ReadAt", func(b *testing.B) {
		buf := make([]byte, size)
		b.SetBytes(size)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := v.ReadAt(buf, offs[i%len(offs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("WriteAt", func(b *testing.B) {
		buf := pattern(size, 2)
		b.SetBytes(size)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := v.WriteAt(buf, offs[i%len(offs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("ReadAtParallel", func(b *testing.B) {
		b.SetBytes(size)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, size)
			r := rand.New(rand.NewPCG(rand.Uint64(), 0))
			for pb.Next() {
				if _, err := v.ReadAt(buf, r.Int64N(benchSize/size)*size); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

func BenchmarkSequential1MiB(b *testing.B) {
	const size = 1 << 20
	v := benchVolume(b)
	b.Run("ReadAt", func(b *testing.B) {
		buf := make([]byte, size)
		b.SetBytes(size)
		b.ReportAllocs()
		var off int64
		for b.Loop() {
			if _, err := v.ReadAt(buf, off); err != nil {
				b.Fatal(err)
			}
			off = (off + size) % benchSize
		}
	})
	b.Run("WriteAt", func(b *testing.B) {
		buf := pattern(size, 3)
		b.SetBytes(size)
		b.ReportAllocs()
		var off int64
		for b.Loop() {
			if _, err := v.WriteAt(buf, off); err != nil {
				b.Fatal(err)
			}
			off = (off + size) % benchSize
		}
	})
}
