//go:build unix

package engine_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// signalChild runs in a subprocess: one server per engine variant, signals
// handled. It prints "addr NAME ADDR" per server, "started" when a slow
// request begins, and finally "exit NAME ERR" per server; it exits 0 only
// if every server stopped with ErrSignal.
func signalChild() int {
	out := make(chan string, 16)
	go func() {
		for line := range out {
			fmt.Println(line)
		}
	}()
	defer close(out)
	var servers []*engine.Server
	for _, v := range variants {
		srv, err := engine.Listen(engine.Config{
			Addr:   "127.0.0.1:0",
			Engine: v.kind,
			Inline: v.inline,
			Logger: testnet.QuietLogger(),
			Handlers: map[string]engine.Handler{
				"echo": testHandlers()["echo"],
				"slow": func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
					fmt.Println("started")
					select {
					case <-time.After(300 * time.Millisecond):
						return 200, req.Payload, nil
					case <-ctx.Done():
						return 0, nil, ctx.Err()
					}
				},
			},
		})
		if err != nil {
			fmt.Println("listen:", err)
			return 2
		}
		servers = append(servers, srv)
		fmt.Println("addr", v.name, srv.AddrString())
	}
	code := 0
	for i, srv := range servers {
		select {
		case <-srv.Done():
		case <-time.After(30 * time.Second):
			fmt.Println("no signal")
			return 3
		}
		err := srv.Err()
		fmt.Println("exit", variants[i].name, err)
		if !errors.Is(err, engine.ErrSignal) || !errors.Is(err, engine.ErrServerClosed) {
			code = 1
		}
	}
	return code
}

// SIGTERM shuts every server in the process down gracefully: a request in
// flight is answered, and Err reports ErrSignal.
func TestSignal(t *testing.T) {
	cmd, _, lines, stderr := child(t, "signal")
	next := func() string {
		t.Helper()
		l, ok := recvOrFailOK(t, lines, ioTimeout, "child output")
		if !ok {
			t.Fatalf("child output ended; stderr: %s", stderr.String())
		}
		return l
	}
	var conns []net.Conn
	for range variants {
		f := strings.Fields(next())
		if len(f) != 3 || f[0] != "addr" {
			t.Fatalf("child said %q; stderr: %s", f, stderr.String())
		}
		nc, err := net.DialTimeout("tcp", f[2], ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns = append(conns, nc)
	}
	// A slow request in flight on every server.
	for i, nc := range conns {
		wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: uint32(i + 1), Request: []byte("slow"), Payload: []byte("answered")}, nil)
		if _, err := nc.Write(wire); err != nil {
			t.Fatal(err)
		}
	}
	for range conns {
		if l := next(); l != "started" {
			t.Fatalf("child said %q, want started", l)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(ioTimeout))
		b, err := io.ReadAll(nc)
		if err != nil && !testnet.IsClosed(err) {
			t.Errorf("%s: read: %v", variants[i].name, err)
		}
		f, n, _, err := codec.Parse(b, codec.Options{})
		if err != nil || n != len(b) || f.Status != codec.StatusOK || string(f.Payload) != "answered" {
			t.Errorf("%s: got %d bytes %q (status %d), want one 200 answer", variants[i].name, len(b), b, f.Status)
		}
	}
	for range variants {
		if l := next(); !strings.HasPrefix(l, "exit ") || !strings.Contains(l, engine.ErrSignal.Error()) {
			t.Errorf("child said %q", l)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v; stderr: %s", err, stderr.String())
	}
}

func recvOrFailOK[T any](t testing.TB, ch <-chan T, d time.Duration, what string) (T, bool) {
	t.Helper()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}
