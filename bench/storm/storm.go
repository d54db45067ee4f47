//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dls-project/dls/internal/iscsi/initiator"
)

// makeMachines names n machines m0001… with locally administered MACs
// 02:53:00:00:hi:lo.
func makeMachines(n int) []machine {
	out := make([]machine, n)
	for i := range out {
		out[i] = machine{
			Name: fmt.Sprintf("m%04d", i+1),
			MAC:  []byte{0x02, 0x53, 0x00, byte(i >> 16), byte(i >> 8), byte(i)},
		}
	}
	return out
}

// storm boots every machine, all at once (ramp 0) or spread evenly over
// ramp, and returns their outcomes when all are done or ctx ends. done
// counts machines through.
func storm(ctx context.Context, c *chain, machines []machine, ramp time.Duration, done *atomic.Int64) []*outcome {
	outs := make([]*outcome, len(machines))
	var wg sync.WaitGroup
	start := time.Now()
	for i, m := range machines {
		if ramp > 0 {
			at := start.Add(ramp * time.Duration(i) / time.Duration(len(machines)))
			if !sleep(ctx, time.Until(at)) {
				outs[i] = &outcome{Machine: m.Name, MAC: m.MAC.String(), Err: "not started: " + ctx.Err().Error(), Started: time.Now(), Ended: time.Now(), Stages: map[string]time.Duration{}}
				continue
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = c.boot(ctx, m)
			if outs[i].Done {
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return outs
}

// verifyWrites logs in to every machine that had a write acknowledged and
// reads the block back. It returns how many were checked and what did
// not match.
func verifyWrites(ctx context.Context, runID string, outs []*outcome) (int, []string) {
	var (
		mu      sync.Mutex
		checked int
		lost    []string
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 16)
	)
	for _, o := range outs {
		if !o.Acked {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := readBack(ctx, runID, o)
			mu.Lock()
			defer mu.Unlock()
			checked++
			if err != nil {
				lost = append(lost, fmt.Sprintf("%s: %v", o.Machine, err))
			}
		}()
	}
	wg.Wait()
	sort.Strings(lost)
	return checked, lost
}

func readBack(ctx context.Context, runID string, o *outcome) error {
	var err error
	for try := 0; try < 5; try++ {
		if try > 0 && !sleep(ctx, time.Second) {
			return ctx.Err()
		}
		var s *initiator.Session
		s, err = initiator.Dial(ctx, loginConfig(o.Addr, o.Portal, o.InitiatorIQN, o.TargetIQN, o.CHAP))
		if err != nil {
			continue
		}
		buf := make([]byte, writeSize)
		if err = unitReady(ctx, s, o.WriteLUN); err != nil {
			_ = s.Logout(ctx)
			continue
		}
		err = s.ReadLUN(ctx, samLUN(o.WriteLUN), o.WriteLBA, buf, o.BlockSize)
		_ = s.Logout(ctx)
		if err != nil {
			continue
		}
		if want := writeBlock(runID, o.MAC, o.WriteNonce); !bytes.Equal(buf, want) {
			head, _, _ := bytes.Cut(buf[:128], []byte("\n"))
			return fmt.Errorf("acknowledged write lost: LUN %d LBA %d holds %q, not nonce %016x", o.WriteLUN, o.WriteLBA, head, o.WriteNonce)
		}
		return nil
	}
	return fmt.Errorf("read back: %w", err)
}

// duplicateLeases is every address ACKed to more than one MAC.
func duplicateLeases(outs []*outcome) map[string][]string {
	byAddr := map[string]map[string]bool{}
	for _, o := range outs {
		for _, a := range o.Acks {
			if byAddr[a.Addr] == nil {
				byAddr[a.Addr] = map[string]bool{}
			}
			byAddr[a.Addr][a.MAC] = true
		}
	}
	dup := map[string][]string{}
	for addr, macs := range byAddr {
		if len(macs) > 1 {
			dup[addr] = sortedKeys(macs)
		}
	}
	return dup
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
