package volume

import "sync"

// cowBufs holds the cluster-sized buffers of copy-on-write, one pool per
// cluster size (indexed by its log2) shared by every overlay of the
// process: a target with a thousand volumes open, each written once, must
// not keep a thousand idle buffers (64 MiB at the default size). A pool
// per process is the usual sync.Pool (as the standard library keeps for
// fmt's and encoding/json's buffers): it only caches, it holds no state.
var cowBufs [maxClusterShift + 1]sync.Pool

// maxClusterShift is log2(MaxClusterSize): a map with a larger cluster
// size does not open (ErrBadMap).
const maxClusterShift = 20

// getCOWBuf returns a buffer of 1<<shift bytes.
func getCOWBuf(shift uint) *[]byte {
	if bp, ok := cowBufs[shift].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 1<<shift)
	return &b
}

// putCOWBuf gives a buffer from getCOWBuf(shift) back.
func putCOWBuf(shift uint, bp *[]byte) {
	cowBufs[shift].Put(bp)
}
