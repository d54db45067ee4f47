package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dls-project/dls/sdk/host"
	"github.com/dls-project/dls/sdk/plugintest"
)

func TestEchoReportsEachPacket(t *testing.T) {
	h := plugintest.Start(t, &Echo{}, plugintest.WithConfig(map[string]any{"listen": "127.0.0.1:0"}))
	p, ctx := h.Protocol(), t.Context()
	if err := p.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st, err := p.Status(ctx)
	if err != nil || !st.Serving || len(st.Listeners) != 1 {
		t.Fatalf("Status after Start = %+v, %v; want serving on one listener", st, err)
	}

	conn, err := net.Dial("udp", strings.TrimPrefix(st.Listeners[0], "udp "))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("echo answered %q, %v; want ping", buf[:n], err)
	}
	ev := h.Host.WaitEvent(t, host.EventFileServed, 5*time.Second)
	if ev.Attrs[host.AttrRemote] != conn.LocalAddr().String() || ev.Attrs[host.AttrFile] != "echo" {
		t.Errorf("event attrs = %v, want file echo from %s", ev.Attrs, conn.LocalAddr())
	}

	if err := p.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if st, err := p.Status(ctx); err != nil || st.Serving {
		t.Errorf("Status after Stop = %+v, %v; want not serving", st, err)
	}
}
