package initiator

import (
	"context"
	"net"
	"testing"
	"time"
)

// A session's TCP connection leaves from Config.LocalAddr: a target that
// binds sessions to a client's address sees that address as the peer.
func TestDialBindsLocalAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan net.Addr, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- nil
			return
		}
		peer <- c.RemoteAddr()
		c.Close() // no target here: the login fails, which is fine
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = Dial(ctx, Config{Addr: ln.Addr().String(), LocalAddr: "127.0.0.2", InitiatorName: "iqn.x:i", TargetName: "iqn.x:t", Timeout: 2 * time.Second})
	if err == nil {
		t.Fatal("login against a closed connection succeeded")
	}
	got := <-peer
	if a, ok := got.(*net.TCPAddr); !ok || !a.IP.Equal(net.ParseIP("127.0.0.2")) {
		t.Fatalf("peer = %v, want 127.0.0.2", got)
	}
}

func TestDialRefusesBadLocalAddr(t *testing.T) {
	_, err := Dial(context.Background(), Config{Addr: "127.0.0.1:1", LocalAddr: "not-an-ip", InitiatorName: "iqn.x:i"})
	if err == nil {
		t.Fatal("a local address that is no IP was accepted")
	}
}
