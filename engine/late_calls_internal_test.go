//go:build linux

package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/petrel-rpc/petrel/codec"
)

// Defect 9 (#13): after the engine has stopped, no call from another
// goroutine reaches gnet. Before the gate, a handler abandoned by Close
// that returned later had its worker write its answer through gnet
// (AsyncWritev, Wake), whose event loops had closed their eventfds: the
// write went to whatever descriptor now had that number. Here the closed
// numbers are taken by pipes, the handler is let go, and nothing may
// arrive in any of them.
func TestLateGnetCallsAfterClose(t *testing.T) {
	for _, inline := range []bool{false, true} {
		name := map[bool]string{false: "reactor-pool", true: "reactor-inline"}[inline]
		t.Run(name, func(t *testing.T) {
			running, release, returned := make(chan struct{}, 4), make(chan struct{}), make(chan struct{}, 4)
			srv, err := Listen(Config{
				Addr: "127.0.0.1:0", Inline: inline, IgnoreSignals: true,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Handlers: map[string]Handler{
					"block": func(context.Context, *Request) (uint16, []byte, error) {
						defer func() { returned <- struct{}{} }()
						running <- struct{}{}
						<-release // ignores its context: Close abandons it
						return 200, []byte("late answer"), nil
					},
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			frame, err := codec.AppendFrame(nil, codec.Frame{Request: []byte("block"), Payload: []byte("x")}, nil)
			if err != nil {
				t.Fatal(err)
			}
			nc, err := net.Dial("tcp", srv.AddrString())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Write(frame); err != nil {
				t.Fatal(err)
			}
			<-running
			rt := srv.rt
			done := make(chan error, 1)
			go func() { done <- srv.Close() }()
			if inline {
				// The loop is blocked: Close returns at its bound.
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					t.Fatal("Close did not return within its bound")
				}
			} else if err := <-done; err != nil {
				t.Fatalf("Close: %v", err)
			}
			// The descriptors gnet closed (eventfds, epoll, sockets) are
			// now free: take the lowest numbers with pipes.
			var pipes [][2]int
			for i := 0; i < 32; i++ {
				var p [2]int
				if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
					t.Fatal(err)
				}
				pipes = append(pipes, p)
			}
			defer func() {
				for _, p := range pipes {
					unix.Close(p[0])
					unix.Close(p[1])
				}
			}()
			if ran := rt.call(func() {}); ran {
				t.Error("a gnet call ran after the engine stopped")
			}
			close(release)
			<-returned
			// The worker (or the loop) goes on to answer: wait until it has.
			deadline := time.Now().Add(5 * time.Second)
			for rt.pool != nil && rt.pool.Running() > 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			buf := make([]byte, 64)
			for _, p := range pipes {
				if n, _ := unix.Read(p[0], buf); n > 0 {
					t.Errorf("%d bytes arrived in a descriptor gnet had closed (fd %d): %x", n, p[0], buf[:n])
				}
			}
			if inline {
				// The loop ends now that its handler returned.
				if err := srv.Wait(); err != nil && !errors.Is(err, ErrServerClosed) {
					t.Logf("Wait: %v", err)
				}
			}
		})
	}
}
