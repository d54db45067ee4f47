package volume_test

import (
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

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

// The overlay benchmarks use the raw ones' sizes, so that each can be read
// as a ratio to its raw twin: BenchmarkOverlayRandom4KiB/Full/ReadAt
// against BenchmarkRandom4KiB/ReadAt, and so on. "Fresh" is an overlay
// nothing was written to (reads come from the base; every write is the
// first into its cluster, a copy-on-write), "Full" one whose every cluster
// was written (reads and writes go to the delta, in place).

// benchOverlay makes a benchSize base full of data and an overlay over it
// with the given cluster size (0: default); full writes every cluster.
func benchOverlay(b *testing.B, clusterSize uint32, full bool) *overlayBench {
	b.Helper()
	dir := b.TempDir()
	base := filepath.Join(dir, "base.raw")
	f, err := os.Create(base)
	if err != nil {
		b.Fatal(err)
	}
	chunk := pattern(1<<20, 1)
	for off := int64(0); off < benchSize; off += int64(len(chunk)) {
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	d, err := volume.CreateOverlay(base, filepath.Join(dir, "delta"), filepath.Join(dir, "map"), clusterSize)
	if err != nil {
		b.Fatal(err)
	}
	o := &overlayBench{b: b, d: d}
	o.open()
	b.Cleanup(func() { o.v.Close() })
	if full {
		chunk := pattern(1<<20, 4)
		for off := int64(0); off < benchSize; off += int64(len(chunk)) {
			if _, err := o.v.WriteAt(chunk, off); err != nil {
				b.Fatal(err)
			}
		}
		if err := o.v.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	return o
}

// overlayBench holds an open overlay that a benchmark can reset to empty.
type overlayBench struct {
	b *testing.B
	d volume.Descriptor
	v volume.Volume
}

func (o *overlayBench) open() {
	v, err := volume.Open(o.d)
	if err != nil {
		o.b.Fatal(err)
	}
	o.v = v
}

// reset empties the overlay, off the clock.
func (o *overlayBench) reset() {
	o.b.StopTimer()
	if err := o.v.Close(); err != nil {
		o.b.Fatal(err)
	}
	if err := volume.ResetOverlay(o.d); err != nil {
		o.b.Fatal(err)
	}
	o.open()
	o.b.StartTimer()
}

// clusterSize returns the overlay's cluster size, from the map's header.
func (o *overlayBench) clusterSize() int64 {
	h := make([]byte, 20)
	f, err := os.Open(o.d.Paths[1])
	if err != nil {
		o.b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadAt(h, 0); err != nil {
		o.b.Fatal(err)
	}
	return int64(binary.LittleEndian.Uint32(h[16:]))
}

// firstWrites returns an endless supply of offsets of size-byte writes,
// each into a cluster not written before, resetting the overlay when all
// have been.
func (o *overlayBench) firstWrites(size int64) func() int64 {
	cs := o.clusterSize()
	r := rand.New(rand.NewPCG(3, 4))
	order := r.Perm(int(benchSize / cs))
	i := 0
	return func() int64 {
		if i == len(order) {
			o.reset()
			i = 0
		}
		off := int64(order[i])*cs + r.Int64N(cs/size)*size
		i++
		return off
	}
}

func BenchmarkOverlayRandom4KiB(b *testing.B) {
	const size = 4 << 10
	for _, full := range []bool{false, true} {
		b.Run(map[bool]string{false: "Fresh", true: "Full"}[full], func(b *testing.B) {
			o := benchOverlay(b, 0, full)
			offs := randomOffsets(1<<16, size)
			b.Run("ReadAt", func(b *testing.B) {
				buf := make([]byte, size)
				b.SetBytes(size)
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if _, err := o.v.ReadAt(buf, offs[i%len(offs)]); err != nil {
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
						if _, err := o.v.ReadAt(buf, r.Int64N(benchSize/size)*size); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("WriteAt", func(b *testing.B) {
				buf := pattern(size, 2)
				next := func() func() int64 { // in place: the raw benchmark's offsets
					i := 0
					return func() int64 { i++; return offs[i%len(offs)] }
				}()
				if !full {
					next = o.firstWrites(size)
				}
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := o.v.WriteAt(buf, next()); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func BenchmarkOverlaySequential1MiB(b *testing.B) {
	const size = 1 << 20
	for _, full := range []bool{false, true} {
		b.Run(map[bool]string{false: "Fresh", true: "Full"}[full], func(b *testing.B) {
			o := benchOverlay(b, 0, full)
			b.Run("ReadAt", func(b *testing.B) {
				buf := make([]byte, size)
				b.SetBytes(size)
				b.ReportAllocs()
				var off int64
				for b.Loop() {
					if _, err := o.v.ReadAt(buf, off); err != nil {
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
					if _, err := o.v.WriteAt(buf, off); err != nil {
						b.Fatal(err)
					}
					if off = (off + size) % benchSize; off == 0 && !full {
						o.reset() // keep every write a first write
					}
				}
			})
		})
	}
}

// BenchmarkRawFirstWrite is the baseline for an overlay's first writes:
// writes into the holes of a fresh sparse raw file of benchSize, each of
// which costs the kernel new pages and blocks, unlike the raw benchmarks
// above, which overwrite pages already cached. The file is emptied (off
// the clock) when every block has been written.
func BenchmarkRawFirstWrite(b *testing.B) {
	for _, size := range []int64{4 << 10, 1 << 20} {
		b.Run(map[int64]string{4 << 10: "Random4KiB", 1 << 20: "Sequential1MiB"}[size], func(b *testing.B) {
			v, path := openTemp(b, benchSize)
			order := rand.New(rand.NewPCG(3, 4)).Perm(int(benchSize / size))
			if size == 1<<20 {
				slices.Sort(order)
			}
			buf := pattern(int(size), 2)
			b.SetBytes(size)
			i := 0
			for b.Loop() {
				if i == len(order) {
					b.StopTimer()
					if err := os.Truncate(path, 0); err != nil {
						b.Fatal(err)
					}
					if err := os.Truncate(path, benchSize); err != nil {
						b.Fatal(err)
					}
					i = 0
					b.StartTimer()
				}
				if _, err := v.WriteAt(buf, int64(order[i])*size); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkOverlayClusterSize is the evidence for DefaultClusterSize: the
// cost of a first 4 KiB write into a cluster (a copy-on-write of the whole
// cluster), of sequential 1 MiB first writes, and of sequential 1 MiB
// reads from an overlay whose clusters are half written, at random (so
// reads alternate between delta and base).
func BenchmarkOverlayClusterSize(b *testing.B) {
	for _, cs := range []uint32{4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		b.Run(byteSize(int64(cs)), func(b *testing.B) {
			o := benchOverlay(b, cs, false)
			b.Run("FirstWrite4KiB", func(b *testing.B) {
				buf := pattern(4<<10, 2)
				next := o.firstWrites(4 << 10)
				b.SetBytes(4 << 10)
				for b.Loop() {
					if _, err := o.v.WriteAt(buf, next()); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("FirstWrite1MiB", func(b *testing.B) {
				o.reset()
				buf := pattern(1<<20, 3)
				b.SetBytes(1 << 20)
				var off int64
				for b.Loop() {
					if _, err := o.v.WriteAt(buf, off); err != nil {
						b.Fatal(err)
					}
					if off = (off + 1<<20) % benchSize; off == 0 {
						o.reset()
					}
				}
			})
			b.Run("Read1MiBHalfWritten", func(b *testing.B) {
				o.reset()
				b.StopTimer()
				r := rand.New(rand.NewPCG(5, 6))
				p := pattern(int(cs), 7)
				for c := int64(0); c < benchSize/int64(cs); c++ {
					if r.IntN(2) == 0 {
						if _, err := o.v.WriteAt(p, c*int64(cs)); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StartTimer()
				buf := make([]byte, 1<<20)
				b.SetBytes(1 << 20)
				var off int64
				for b.Loop() {
					if _, err := o.v.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
					off = (off + 1<<20) % benchSize
				}
			})
		})
	}
}

// BenchmarkCreateOverlay clones sparse bases of growing size: the time
// must not grow with them (no data is copied; the map is a hole). The time
// is that of the fsyncs that make the pair durable: back to back, each
// call also waits for the previous one's journal commit, so "Spaced" lets
// the filesystem settle (off the clock) between calls, and "tmpfs" shows
// the cost without a disk.
func BenchmarkCreateOverlay(b *testing.B) {
	sparse := func(b *testing.B, dir string, size int64) string {
		base := filepath.Join(dir, "base.raw")
		f, err := os.Create(base)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			b.Fatal(err)
		}
		f.Close()
		return base
	}
	run := func(b *testing.B, dir string, size int64, spacing time.Duration) {
		base := sparse(b, dir, size)
		i := 0
		for b.Loop() {
			if spacing > 0 {
				b.StopTimer()
				time.Sleep(spacing)
				b.StartTimer()
			}
			name := filepath.Join(dir, strconv.Itoa(i))
			if _, err := volume.CreateOverlay(base, name+".delta", name+".map", 0); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	for _, size := range []int64{1 << 30, 10 << 30, 1 << 40} {
		b.Run(byteSize(size), func(b *testing.B) { run(b, b.TempDir(), size, 0) })
	}
	b.Run("10240MiB/Spaced", func(b *testing.B) { run(b, b.TempDir(), 10<<30, 5*time.Millisecond) })
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		b.Run("10240MiB/tmpfs", func(b *testing.B) {
			dir, err := os.MkdirTemp("/dev/shm", "dls-volume-bench-")
			if err != nil {
				b.Skip(err)
			}
			defer os.RemoveAll(dir)
			run(b, dir, 10<<30, 0)
		})
	}
}
