//go:build linux

// Command load is bench/tftp's boot-storm client: n TFTP clients start at
// once, each fetching the same file, and it prints how many succeeded,
// the total time and per-transfer percentiles. The client is
// github.com/pin/tftp/v3's, an implementation independent of both servers
// compared.
//
//	load -addr 127.0.0.1:6970 -file 1m.bin -want root/1m.bin -n 200 -blksize 1468
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/pin/tftp/v3"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:69", "TFTP server host:port")
	file := flag.String("file", "1m.bin", "file to fetch")
	want := flag.String("want", "", "local copy of the file: every fetch must be identical")
	n := flag.Int("n", 200, "concurrent clients")
	blksize := flag.Int("blksize", 1468, "blksize option (0: none)")
	timeout := flag.Duration("timeout", 2*time.Second, "client retransmission timeout")
	retries := flag.Int("retries", 8, "client retries per packet")
	flag.Parse()

	var ref []byte
	if *want != "" {
		var err error
		if ref, err = os.ReadFile(*want); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	durations := make([]time.Duration, *n)
	errs := make([]error, *n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			errs[i] = fetch(*addr, *file, *blksize, *timeout, *retries, ref)
			durations[i] = time.Since(t0)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	total := time.Since(t0)

	failed := 0
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 5 {
				fmt.Fprintf(os.Stderr, "client %d: %v\n", i, err)
			}
		}
	}
	slices.Sort(durations)
	pct := func(p float64) time.Duration { return durations[min(len(durations)-1, int(p*float64(len(durations))))] }
	fmt.Printf("clients=%d ok=%d failed=%d total=%.3f p50=%.3f p99=%.3f max=%.3f\n",
		*n, *n-failed, failed, total.Seconds(), pct(0.50).Seconds(), pct(0.99).Seconds(), durations[len(durations)-1].Seconds())
	if failed > 0 {
		os.Exit(1)
	}
}

func fetch(addr, file string, blksize int, timeout time.Duration, retries int, ref []byte) error {
	c, err := tftp.NewClient(addr)
	if err != nil {
		return err
	}
	c.SetTimeout(timeout)
	c.SetRetries(retries)
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	wt, err := c.Receive(file, "octet")
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return err
	}
	if ref != nil && !bytes.Equal(b.Bytes(), ref) {
		return fmt.Errorf("got %d bytes, not identical to the %d expected", b.Len(), len(ref))
	}
	return nil
}
