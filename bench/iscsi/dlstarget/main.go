//go:build linux

// Command dlstarget serves one file as an iSCSI target with DLS's target
// code, without the host: the benchmark and conformance scripts run it
// beside tgt on the same file. It is not a way to run DLS.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/dls-project/dls/plugins/protocol/iscsi/target"
	"github.com/dls-project/dls/sdk/volume"
	"github.com/hashicorp/go-hclog"
)

type resolver struct {
	file       string
	iqn        string
	initiators []string
	user       string
	secret     string
}

func (r *resolver) allowed(initiator string) bool {
	if len(r.initiators) == 0 {
		return true
	}
	for _, i := range r.initiators {
		if strings.EqualFold(i, initiator) {
			return true
		}
	}
	return false
}

func (r *resolver) Authorize(_ context.Context, q target.Request) (target.Access, error) {
	a := target.Access{Known: q.Target == "" || strings.EqualFold(q.Target, r.iqn), Allowed: r.allowed(q.Initiator), Client: "bench", Name: r.iqn}
	if r.secret != "" {
		a.CHAPUser, a.CHAPSecret = r.user, r.secret
		if a.CHAPUser == "" {
			a.CHAPUser = q.Initiator
		}
	}
	return a, nil
}

func (r *resolver) Discover(_ context.Context, initiator string) ([]string, error) {
	if !r.allowed(initiator) {
		return nil, nil
	}
	return []string{r.iqn}, nil
}

func (r *resolver) Attach(context.Context, string, target.Access) (target.Volume, error) {
	fi, err := os.Stat(r.file)
	if err != nil {
		return nil, err
	}
	return volume.Open(volume.Descriptor{Format: volume.FormatRaw, Paths: []string{r.file}, Size: fi.Size()})
}

func (r *resolver) Detach(context.Context, string, target.Access) {}

func main() {
	listen := flag.String("listen", "127.0.0.1:3260", "address to listen on")
	file := flag.String("file", "", "absolute path of the backing file")
	iqn := flag.String("iqn", "iqn.2026-11.io.dls:bench", "target name")
	inits := flag.String("initiators", "", "comma-separated initiator names allowed (empty: any)")
	secret := flag.String("chap-secret", "", "CHAP secret the initiator must answer with")
	user := flag.String("chap-user", "", "CHAP name the initiator must answer as (empty: its initiator name)")
	verbose := flag.Bool("v", false, "debug logging")
	maxBuf := flag.Int64("max-buffer-bytes", 0, "bytes of data buffers of all sessions together (0: the target's default)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile here until the target stops")
	flag.Parse()
	if *file == "" {
		fmt.Fprintln(os.Stderr, "dlstarget: -file is required")
		os.Exit(2)
	}
	var list []string
	if *inits != "" {
		list = strings.Split(*inits, ",")
	}
	level := hclog.Info
	if *verbose {
		level = hclog.Debug
	}
	srv := &target.Server{
		Resolver: &resolver{file: *file, iqn: *iqn, initiators: list, user: *user, secret: *secret},
		Logger:   hclog.New(&hclog.LoggerOptions{Name: "dlstarget", Level: level, Output: os.Stderr}),
		Vendor:   "DLS", Product: "dls-iscsi", Revision: "0.1",
		MaxBufferBytes: *maxBuf,
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dlstarget:", err)
		os.Exit(1)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dlstarget:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Close(ctx)
	}()
	if err := srv.Serve(context.Background(), ln); err != nil && err != target.ErrClosed {
		fmt.Fprintln(os.Stderr, "dlstarget:", err)
		os.Exit(1)
	}
}
