package engine_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// The lifecycle regression tests of issue #13: each numbered defect, on
// every engine variant (and TLS where it applies).

// forEachTCP runs fn for every engine variant over TCP, in parallel.
func forEachTCP(t *testing.T, fn func(t *testing.T, e env)) {
	t.Helper()
	for _, v := range variants {
		e := env{v, "tcp"}
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, e)
		})
	}
}

// waitHandler returns a handler that signals started and then waits for
// its context (or release), answering 200 "released".
func waitHandler(started chan<- struct{}, release <-chan struct{}) engine.Handler {
	return func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-release:
			return 200, []byte("released"), nil
		}
	}
}

// Defect 2: a request sent before the client shuts down its write side is
// answered, on every engine, for a quick handler and for one that takes a
// while (on the pool, the peer's FIN arrives while a worker runs it).
func TestHalfCloseAnswered(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		handlers := testHandlers()
		handlers["held"] = func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			// Runs until the server has read the peer's FIN (which cancels
			// the context, as net/http does): the answer must still go out.
			<-ctx.Done()
			return 200, req.Payload, nil
		}
		srv := e.listen(t, engine.Config{Handlers: handlers})
		for i := range 10 {
			c := dial(t, srv)
			req := "echo"
			if e.blocking() && i%2 == 1 {
				req = "held"
			}
			seq := c.send(req, []byte("half-closed"))
			if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
				if err := cw.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			f := c.recv()
			if f.Status != codec.StatusOK || f.Seq != seq || string(f.Payload) != "half-closed" {
				t.Fatalf("%s %d: status %d seq %d payload %q", req, i, f.Status, f.Seq, f.Payload)
			}
			c.expectClosed()
		}
		testnet.WaitFor(t, ioTimeout, "connections to close", func() bool { return srv.Stats().OpenConns == 0 })
	})
}

// Defect 3: a graceful shutdown closes a connection holding a partial
// frame at once (header received or not), on every engine and over TLS,
// instead of waiting for the read timeout.
func TestShutdownClosesPartialFrames(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{ReadTimeout: time.Minute, IdleTimeout: time.Minute})
		var hdr [codec.HeaderLen]byte
		codec.PutHeader(hdr[:], 0, 1, 4, 1000)
		partial := [][]byte{hdr[:5], append(hdr[:], "echo"...), append(append(hdr[:], "echo"...), make([]byte, 500)...)}
		var cs []*client
		for _, b := range partial {
			c := dial(t, srv)
			c.call("echo", []byte("warm"))
			if err := c.writeRaw(b); err != nil {
				t.Fatal(err)
			}
			cs = append(cs, c)
		}
		idle := dial(t, srv)
		idle.call("echo", []byte("idle"))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown = %v, want nil well before the read timeout", err)
		}
		for _, c := range append(cs, idle) {
			if err := c.closedErr(); err != nil {
				t.Error(err)
			}
		}
	})
}

func TestShutdownClosesPartialFramesTLS(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			pki, _ := secCerts(t)
			s := secServer(t, v, false, func(c *engine.Config) { c.ReadTimeout = time.Minute })
			tc, err := tls.Dial("tcp", s.AddrString(), secClientTLS(pki, nil, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			// A served request first, so that the handshake is over and the
			// partial frame below is in the server's hands before the
			// drain (a frame still in the handshake is a different case).
			c := &client{t: t, nc: tc}
			c.expect("echo", []byte("warm"), codec.StatusOK, []byte("warm"))
			var hdr [codec.HeaderLen]byte
			codec.PutHeader(hdr[:], 0, 2, 4, 1000)
			tc.Write(append(hdr[:], "echo"...))
			testnet.WaitFor(t, ioTimeout, "the partial frame to be buffered", func() bool {
				return s.Stats().Buffered > 0
			})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
		})
	}
}

// Defect 4: Close cuts short a Shutdown in progress, even one with no
// deadline waiting on a handler that waits on its context.
func TestCloseDuringShutdown(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("inline handlers must not block")
		}
		started := make(chan struct{}, 1)
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{"wait": waitHandler(started, nil)}})
		c := dial(t, srv)
		c.send("wait", nil)
		testnet.RecvOrFail(t, started, ioTimeout, "handler start")
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(context.Background()) }()
		testnet.WaitFor(t, ioTimeout, "the shutdown to begin", func() bool {
			_, err := net.DialTimeout("tcp", srv.AddrString(), ioTimeout)
			return err != nil
		})
		if err := srv.Close(); err != nil {
			t.Fatalf("Close during Shutdown = %v", err)
		}
		if err := testnet.RecvOrFail(t, shut, ioTimeout, "Shutdown to return"); !errors.Is(err, engine.ErrDrainCut) {
			t.Fatalf("Shutdown = %v, want ErrDrainCut", err)
		}
		if err := srv.Wait(); !errors.Is(err, engine.ErrServerClosed) || !errors.Is(err, engine.ErrDrainCut) {
			t.Fatalf("Wait = %v", err)
		}
	})
}

// Defect 6: Close returns within its bound even when a handler ignores its
// cancelled context.
func TestCloseBounded(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("inline handlers must not block")
		}
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"stubborn": func(context.Context, *engine.Request) (uint16, []byte, error) {
				started <- struct{}{}
				<-release
				return 200, nil, nil
			},
		}})
		defer close(release) // lets the abandoned handler end before goleak looks
		c := dial(t, srv)
		c.send("stubborn", nil)
		testnet.RecvOrFail(t, started, ioTimeout, "handler start")
		closed := make(chan error, 1)
		go func() { closed <- srv.Close() }()
		testnet.RecvOrFail(t, closed, 3*time.Second, "Close to return within its bound")
		if err := c.closedErr(); err != nil {
			t.Error(err)
		}
	})
}

// Defect 7 (std): a client that never reads its answer is closed by the
// write timeout, and Shutdown is not held for its whole bound; (reactor) a
// torn answer is a reset, not a clean EOF.
func TestWriteTimeoutNeverReads(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{WriteTimeout: 300 * time.Millisecond, MaxPayload: 32 << 20})
		c := dial(t, srv)
		big := bytes.Repeat([]byte("w"), 16<<20)
		c.send("echo", big)
		// Never read: the server must give up on the answer.
		testnet.WaitFor(t, ioTimeout, "the write timeout to close the connection", func() bool {
			return srv.Stats().OpenConns == 0
		})
		if st := srv.Stats(); st.TimedOut == 0 {
			t.Errorf("TimedOut = 0 (%+v)", st)
		}
		// What did arrive is a torn frame followed by a reset, on every
		// engine: a torn answer must not look like a clean close.
		c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		n, err := io.Copy(io.Discard, c.nc)
		if n >= int64(len(big)) {
			t.Errorf("got %d bytes, want a torn answer", n)
		}
		if err == nil {
			t.Errorf("torn answer ended with a clean EOF after %d bytes, want a reset", n)
		}
	})
}

// Close cutting an answer short (as at a drain's bound, or at the second
// signal) resets the connection: what arrived is a torn frame followed by
// a reset, on every engine, never a clean EOF (which it was on every
// engine: gnet flushed what the socket took and closed, std closed under
// its blocked write).
func TestCloseResetsTornAnswer(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxPayload: 32 << 20})
		c := dial(t, srv)
		big := bytes.Repeat([]byte("w"), 16<<20)
		c.send("echo", big)
		// The client does not read yet: the answer cannot all leave.
		testnet.WaitFor(t, ioTimeout, "the answer to start", func() bool { return srv.Stats().BytesOut > 0 })
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		n, err := io.Copy(io.Discard, c.nc)
		if n >= int64(codec.HeaderLen+len("echo")+len(big)) {
			t.Fatalf("got %d bytes, want a torn answer", n)
		}
		if err == nil {
			t.Errorf("torn answer ended with a clean EOF after %d bytes, want a reset", n)
		}
	})
}

// Defect 7: a slow reader that keeps reading gets every byte of a large
// answer, with a write timeout far shorter than the whole transfer, and
// the idle timer starts only once the answer is fully sent.
func TestWriteTimeoutSlowReader(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{
			WriteTimeout: 400 * time.Millisecond,
			IdleTimeout:  400 * time.Millisecond,
			MaxPayload:   16 << 20,
		})
		c := dial(t, srv)
		if tc, ok := c.nc.(*net.TCPConn); ok {
			tc.SetReadBuffer(64 << 10)
		}
		big := bytes.Repeat([]byte("s"), 4<<20)
		seq := c.send("echo", big)
		// Read 256 KiB every 50 ms: about 1.2 s for the whole answer,
		// three times the write timeout and the idle timeout.
		var got bytes.Buffer
		want := codec.HeaderLen + len("echo") + len(big)
		buf := make([]byte, 256<<10)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for got.Len() < want {
			<-tick.C
			c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
			n, err := io.ReadAtLeast(c.nc, buf[:min(len(buf), want-got.Len())], 1)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("after %d of %d bytes: %v", got.Len(), want, err)
			}
		}
		f, n, _, err := codec.Parse(got.Bytes(), codec.Options{MaxPayload: 16 << 20})
		if err != nil || n != want || f.Seq != seq || !bytes.Equal(f.Payload, big) {
			t.Fatalf("answer: %d bytes, err %v", n, err)
		}
		// The connection is still usable: the idle timer began at the end.
		c.expect("echo", []byte("after"), codec.StatusOK, []byte("after"))
	})
}

// The idle timer starts once a large answer has left the kernel too, not
// when the kernel took it: a client that pauses before reading an answer
// its socket buffers hold, then pipelines its next request, gets both.
// (The pool's worker, writing the answer itself, once started the idle
// timer at once: the connection was closed under the unread answer and
// the next request reset it.)
func TestIdleTimerWaitsForKernel(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel's send queue is read with SIOCOUTQ, on Linux only")
	}
	forEach(t, func(t *testing.T, e env) {
		const idle = 300 * time.Millisecond
		size := 1 << 20 // TCP: the server's send buffer grows to take it all
		if e.network == "unix" {
			size = 150 << 10 // within a Unix socket's send buffer
		}
		srv := e.listen(t, engine.Config{IdleTimeout: idle, WriteTimeout: 30 * time.Second, MaxPayload: 4 << 20})
		c := dial(t, srv)
		if tc, ok := c.nc.(*net.TCPConn); ok {
			tc.SetReadBuffer(16 << 10)
		}
		c.opts.MaxPayload = 4 << 20
		big := bytes.Repeat([]byte("i"), size)
		c.send("echo", big)
		time.Sleep(3 * idle) // the client pausing: the behaviour under test
		c.send("echo", []byte("next"))
		if f := c.recv(); f.Status != codec.StatusOK || !bytes.Equal(f.Payload, big) {
			t.Fatalf("first answer: status %d, %d bytes", f.Status, len(f.Payload))
		}
		if f := c.recv(); f.Status != codec.StatusOK || string(f.Payload) != "next" {
			t.Fatalf("second answer: status %d %q", f.Status, f.Payload)
		}
		if n := srv.Stats().TimedOut; n != 0 {
			t.Errorf("TimedOut = %d while an answer was unread", n)
		}
	})
}

// A client that never reads is cut off at the write timeout, not a
// multiple of it: a write that times out part-way (the kernel took a few
// bytes of it before blocking) is not counted as progress for a whole new
// period. (Std took 3× the write timeout over TCP, 2× over a Unix socket.)
func TestWriteTimeoutBound(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		const wt = 1 * time.Second
		srv := e.listen(t, engine.Config{WriteTimeout: wt, MaxPayload: 8 << 20})
		c := dial(t, srv)
		big := bytes.Repeat([]byte("b"), 4<<20)
		c.send("echo", big)
		expectWriteTimeoutClose(t, srv, wt)
	})
}

// expectWriteTimeoutClose waits for srv's answer to start leaving (it is
// counted then; the write timeout counts from later still, once the
// buffers are full) and then for its only connection to close, and fails
// t unless that took at most 9/5 of the write timeout wt: the engines'
// granularity (a wheel tick; two eighths of it for std's look at its
// progress), with room for a loaded machine.
func expectWriteTimeoutClose(t *testing.T, srv *engine.Server, wt time.Duration) {
	t.Helper()
	testnet.WaitFor(t, ioTimeout, "the answer to start", func() bool { return srv.Stats().BytesOut > 0 })
	start := time.Now()
	testnet.WaitFor(t, ioTimeout, "the write timeout to close the connection", func() bool {
		return srv.Stats().OpenConns == 0
	})
	if el := time.Since(start); el > 9*wt/5 {
		t.Errorf("closed %v after the answer began, with a write timeout of %v", el, wt)
	}
}

// An answer the kernel holds and the peer never reads ends the connection
// at the write timeout even while the peer goes on sending: whole requests
// (each answered, queued behind it) or a request trickled a byte at a
// time. (Std restarted the write clock with each new answer, and while
// reading a request looked only at the read timeout: the connection lived
// on as long as the peer kept sending.)
func TestWriteTimeoutWhilePeerSends(t *testing.T) {
	for _, mode := range []string{"requests", "trickle"} {
		t.Run(mode, func(t *testing.T) {
			forEach(t, func(t *testing.T, e env) {
				const wt = 500 * time.Millisecond
				srv := e.listen(t, engine.Config{WriteTimeout: wt, ReadTimeout: 30 * time.Second, MaxPayload: 1 << 20})
				c := dial(t, srv)
				if tc, ok := c.nc.(*net.TCPConn); ok {
					tc.SetReadBuffer(4 << 10)
				}
				c.send("echo", bytes.Repeat([]byte("k"), 100<<10)) // fits in the server's send buffer
				testnet.WaitFor(t, ioTimeout, "the answer to start", func() bool { return srv.Stats().BytesOut > 0 })
				next, _ := codec.AppendFrame(nil, codec.Frame{Seq: 9, Request: []byte("echo"), Payload: []byte("more")}, nil)
				tick := time.NewTicker(wt / 5) // the peer's pace, not synchronisation
				defer tick.Stop()
				for i := 0; srv.Stats().OpenConns > 0; i++ {
					if i == 40 { // 8 write timeouts
						t.Fatalf("still open after %d sends while its answer did not move (stats %+v)", i, srv.Stats())
					}
					<-tick.C
					b := next
					if mode == "trickle" {
						b = next[i%len(next) : i%len(next)+1]
					}
					if c.writeRaw(b) != nil {
						break
					}
				}
				testnet.WaitFor(t, ioTimeout, "the connection to close", func() bool { return srv.Stats().OpenConns == 0 })
				if st := srv.Stats(); st.TimedOut == 0 {
					t.Errorf("TimedOut = 0 (%+v)", st)
				}
			})
		})
	}
}

// The same over TLS: a connection whose answer stopped moving is closed
// at the write timeout, and its close sends no close_notify that would
// wait on the same peer for the write timeout again. (Std closed it at
// about twice the write timeout.)
func TestWriteTimeoutBoundTLS(t *testing.T) {
	for _, v := range variants {
		// 4 MiB: the write blocks; 512 KiB: the kernel takes it all, and
		// the connection waits for it to leave.
		for _, size := range []int{4 << 20, 512 << 10} {
			t.Run(fmt.Sprintf("%s/%dKiB", v.name, size>>10), func(t *testing.T) {
				t.Parallel()
				const wt = 1 * time.Second
				pki, _ := secCerts(t)
				s := secServer(t, v, false, func(c *engine.Config) { c.MaxPayload = 8 << 20; c.WriteTimeout = wt })
				tc, err := tls.Dial("tcp", s.AddrString(), secClientTLS(pki, nil, 0))
				if err != nil {
					t.Fatal(err)
				}
				defer tc.Close()
				wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: make([]byte, size)}, nil)
				tc.SetWriteDeadline(time.Now().Add(ioTimeout))
				if _, err := tc.Write(wire); err != nil {
					t.Fatal(err)
				}
				expectWriteTimeoutClose(t, s, wt)
			})
		}
	}
}

// A TLS client that reads its answer in bursts with pauses shorter than
// the write timeout gets all of it, on every engine. (Std retried a TLS
// write that had timed out, which crypto/tls never allows: the connection
// was reset part-way.)
func TestWriteTimeoutSlowReaderTLS(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			const wt = 400 * time.Millisecond
			pki, _ := secCerts(t)
			s := secServer(t, v, false, func(c *engine.Config) { c.MaxPayload = 8 << 20; c.WriteTimeout = wt })
			tc, err := tls.Dial("tcp", s.AddrString(), secClientTLS(pki, nil, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			big := bytes.Repeat([]byte("p"), 6<<20)
			wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: big}, nil)
			tc.SetDeadline(time.Now().Add(ioTimeout))
			if _, err := tc.Write(wire); err != nil {
				t.Fatal(err)
			}
			// Read 1 MiB, then pause for three quarters of the write
			// timeout: the answer keeps moving, if in bursts.
			want := codec.HeaderLen + len("echo") + len(big)
			got := make([]byte, 0, want)
			buf := make([]byte, 1<<20)
			for len(got) < want {
				time.Sleep(3 * wt / 4) // the client pausing: the behaviour under test
				tc.SetReadDeadline(time.Now().Add(ioTimeout))
				n, err := io.ReadFull(tc, buf[:min(len(buf), want-len(got))])
				got = append(got, buf[:n]...)
				if err != nil {
					t.Fatalf("after %d of %d bytes: %v (stats %+v)", len(got), want, err, s.Stats())
				}
			}
			f, _, _, err := codec.Parse(got, codec.Options{MaxPayload: 8 << 20})
			if err != nil || !bytes.Equal(f.Payload, big) {
				t.Fatalf("answer: %v", err)
			}
		})
	}
}

// A TLS client that pipelines frames without reading the answers is cut
// off once its backlog passes the allowance, while an answer is still
// leaving too, as over plain TCP. (The reactor counted a TLS backlog only
// while a request was in flight: one connection pipelining 100 MiB was
// read in full.)
func TestPipelinedBacklogTLS(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			pki, _ := secCerts(t)
			s := secServer(t, v, false, func(c *engine.Config) { c.MaxPayload = 1 << 20; c.MaxBuffered = 1 << 30 })
			tc, err := tls.Dial("tcp", s.AddrString(), secClientTLS(pki, nil, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			frame, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: make([]byte, 256<<10)}, nil)
			const total = 64 << 20
			// Never reading: stop at the first error (closed, or held
			// back by TCP past the deadline, as std reads only what it
			// answers).
			tc.SetWriteDeadline(time.Now().Add(2 * time.Second))
			written := 0
			for written < total {
				n, err := tc.Write(frame)
				written += n
				if err != nil {
					break
				}
			}
			if written >= total {
				t.Errorf("the server took all %d bytes of a pipelined backlog", written)
			}
		})
	}
}

// Defect 7 (TLS): a graceful shutdown delivers a large answer in full
// before it closes the connection, also to a client that stops reading
// until the drain has begun (its ciphertext is queued in the server).
func TestShutdownDeliversTLSAnswer(t *testing.T) {
	for _, v := range variants {
		for _, paused := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/paused=%v", v.name, paused), func(t *testing.T) {
				shutdownDeliversTLSAnswer(t, v, paused)
			})
		}
	}
}

func shutdownDeliversTLSAnswer(t *testing.T, v variant, paused bool) {
	pki, _ := secCerts(t)
	s := secServer(t, v, false, func(c *engine.Config) { c.MaxPayload = 32 << 20 })
	tc, err := tls.Dial("tcp", s.AddrString(), secClientTLS(pki, nil, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	big := bytes.Repeat([]byte("t"), 16<<20)
	wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: big}, nil)
	go tc.Write(wire)
	// Wait for the answer to begin, then shut down.
	tc.SetReadDeadline(time.Now().Add(ioTimeout))
	var first [codec.HeaderLen]byte
	if _, err := io.ReadFull(tc, first[:]); err != nil {
		t.Fatal(err)
	}
	shut := shutdownAsync(s, 20*time.Second)
	if paused {
		waitDraining(t, s)
		tc.SetReadDeadline(time.Now().Add(ioTimeout))
	}
	rest, err := io.ReadAll(tc)
	if err != nil && !testnet.IsClosed(err) {
		t.Fatalf("read: %v", err)
	}
	got := append(first[:], rest...)
	f, n, _, perr := codec.Parse(got, codec.Options{MaxPayload: 32 << 20})
	if perr != nil || n == 0 || !bytes.Equal(f.Payload, big) {
		t.Fatalf("got %d bytes of %d", len(got), len(wire))
	}
	if err := testnet.RecvOrFail(t, shut, 30*time.Second, "Shutdown"); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

// Defect 8: MaxConns holds exactly, whatever the loops. MaxConns−1
// connections stay open while bursts of simultaneous dials land on many
// event loops at once (GOMAXPROCS raised so that they really interleave
// on a small machine): a check of the count apart from its increment lets
// several through at MaxConns−1 (at b18e6bf, 9 to 16 open within a
// second); the slot reserved atomically before a connection counts never
// does.
func TestMaxConnsExact(t *testing.T) {
	prev := runtime.GOMAXPROCS(8)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	forEach(t, func(t *testing.T, e env) {
		const limit, burst, bursts = 8, 32, 150
		srv := e.listen(t, engine.Config{MaxConns: limit, EventLoops: 8})
		var held []*client
		for len(held) < limit-1 {
			c := dial(t, srv)
			c.expect("echo", []byte("held"), codec.StatusOK, []byte("held"))
			held = append(held, c)
		}
		for i := range bursts {
			var wg sync.WaitGroup
			var served, maxOpen atomic.Int64
			conns := make(chan *client, burst)
			start := make(chan struct{})
			for range burst {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					c, err := dialErr(t, srv)
					if err != nil {
						return
					}
					conns <- c
					if _, err := c.callErr("echo", []byte("x")); err == nil {
						served.Add(1)
					}
					if o := srv.Stats().OpenConns; o > maxOpen.Load() {
						maxOpen.Store(o)
					}
				}()
			}
			close(start)
			wg.Wait()
			close(conns)
			if n := int64(len(held)) + served.Load(); n > limit || maxOpen.Load() > limit {
				t.Fatalf("burst %d: %d connections served at once (%d held), OpenConns up to %d, MaxConns %d",
					i, n, len(held), maxOpen.Load(), limit)
			}
			for c := range conns {
				c.close()
			}
			testnet.WaitFor(t, ioTimeout, "the burst's connections to close", func() bool {
				return srv.Stats().OpenConns == int64(len(held))
			})
		}
		for _, c := range held {
			c.close()
		}
		testnet.WaitFor(t, ioTimeout, "connections to close", func() bool { return srv.Stats().OpenConns == 0 })
		dial(t, srv).expect("echo", []byte("again"), codec.StatusOK, []byte("again"))
	})
}

// Serve takes a listener the caller made and serves on it, on every
// engine.
func TestServe(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv, err := engine.Serve(ln, engine.Config{Engine: e.kind, Inline: e.inline, IgnoreSignals: true,
			Logger: testnet.QuietLogger(), Handlers: testHandlers()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		if srv.AddrString() != ln.Addr().String() {
			t.Errorf("AddrString = %s, want %s", srv.AddrString(), ln.Addr())
		}
		dial(t, srv).expect("echo", []byte("served"), codec.StatusOK, []byte("served"))
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			t.Error("listener still accepting after Shutdown")
		}
	})
}

// Defect 9 and the accept loop: the reactor's own loops stopping make the
// server fail with 599 (Done closes, Err says why) instead of living on
// as a zombie; a listener failure does the same on both engines.
func TestListenerFailure(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fl := &failingListener{Listener: ln, fail: make(chan struct{})}
		srv, err := engine.Serve(fl, engine.Config{Engine: e.kind, Inline: e.inline, IgnoreSignals: true,
			Logger: testnet.QuietLogger(), Handlers: testHandlers()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		dial(t, srv).expect("echo", []byte("before"), codec.StatusOK, []byte("before"))
		close(fl.fail)
		net.DialTimeout("tcp", ln.Addr().String(), time.Second) // wake Accept
		select {
		case <-srv.Done():
		case <-time.After(ioTimeout):
			t.Fatal("Done not closed after the listener failed")
		}
		if err := srv.Err(); err == nil || !errors.Is(err, errListenerBroke) {
			t.Fatalf("Err = %v, want the listener's error", err)
		}
	})
}

var errListenerBroke = errors.New("listener broke")

// failingListener fails every Accept, permanently, once fail is closed.
type failingListener struct {
	net.Listener
	fail chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	select {
	case <-l.fail:
		if nc != nil {
			nc.Close()
		}
		return nil, errListenerBroke
	default:
	}
	return nc, err
}

// #15.3: a client still writing a large over-limit payload sees the 402
// (with its request text), not a reset: the server shuts its write side and
// reads and discards for a while before it closes. Ten tries on every
// engine, over TCP.
func TestRefusalSurvivesWritingClient(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxPayload: 1000})
		body := bytes.Repeat([]byte("x"), 512<<10)
		for i := range 10 {
			c := dial(t, srv)
			var hdr [codec.HeaderLen]byte
			codec.PutHeader(hdr[:], 0, uint32(i+1), 4, len(body))
			go func() {
				// Keep writing the payload the server refuses; errors are
				// expected once it closes.
				c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
				c.nc.Write(append(append(hdr[:], "echo"...), body...))
			}()
			f, err := c.recvErr()
			if err != nil {
				t.Fatalf("try %d: %v, want the 402", i, err)
			}
			if f.Status != codec.StatusPayloadTooLarge || string(f.Request) != "echo" || f.Seq != uint32(i+1) {
				t.Fatalf("try %d: status %d request %q seq %d", i, f.Status, f.Request, f.Seq)
			}
			c.close()
		}
	})
}

// #15.2: HandlerTimeout applies inline too: an inline handler sees it as
// its context's deadline, and one that returns after it is answered as
// timed out (500 "handler timeout" on version 0); the loop cannot pre-empt
// it.
func TestHandlerTimeoutInline(t *testing.T) {
	e := env{variant{"reactor-inline", engine.Reactor, true}, "tcp"}
	srv := e.listen(t, engine.Config{HandlerTimeout: 50 * time.Millisecond, Handlers: map[string]engine.Handler{
		"deadline": func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
			if _, ok := ctx.Deadline(); !ok {
				return 200, []byte("no deadline"), nil
			}
			<-ctx.Done() // a short wait on the loop, for the test only
			return 200, []byte("late"), nil
		},
		"quick": func(context.Context, *engine.Request) (uint16, []byte, error) { return 200, []byte("quick"), nil },
	}})
	c := dial(t, srv)
	c.expect("deadline", nil, codec.StatusHandlerError, []byte("handler timeout"))
	c.expect("quick", nil, codec.StatusOK, []byte("quick"))
}

// #18: a NonBlocking handler runs on the event loop of a pool server: with
// every worker blocked, it still answers at once.
func TestNonBlockingOnPoolServer(t *testing.T) {
	e := env{variants[0], "tcp"}
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	handlers := testHandlers()
	handlers["hold"] = func(context.Context, *engine.Request) (uint16, []byte, error) {
		started <- struct{}{}
		<-release
		return 200, nil, nil
	}
	srv := e.listen(t, engine.Config{Workers: 1, QueueTimeout: 100 * time.Millisecond, Handlers: handlers,
		HandlerOptions: map[string]engine.HandlerOptions{"name": {NonBlocking: true}}})
	t.Cleanup(func() { close(release) })
	dial(t, srv).send("hold", nil)
	testnet.RecvOrFail(t, started, ioTimeout, "the only worker to be taken")
	c := dial(t, srv)
	c.expect("name", nil, codec.StatusOK, []byte("name")) // on the loop
}

// A frame whose first part the reactor has begun collecting, and whose
// rest arrives while the drain begins, was read whole before the close:
// it is answered. The only event loop is held by a handler on the loop
// (inline, or NonBlocking on the pool) while the rest arrives and the
// drain begins, so the loop sees both at once. (Std has no loop to hold:
// its goroutine reads the rest as it arrives, or the drain finds it
// unread.)
func TestShutdownAnswersCollectedFrame(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			if v.kind != engine.Reactor {
				t.Skip("the reactor's collecting path")
			}
			started, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			handlers := testHandlers()
			handlers["hold"] = func(context.Context, *engine.Request) (uint16, []byte, error) {
				started <- struct{}{}
				<-release
				return 200, nil, nil
			}
			e := env{v, "tcp"}
			srv := e.listen(t, engine.Config{EventLoops: 1, Handlers: handlers, ReadTimeout: time.Minute,
				HandlerOptions: map[string]engine.HandlerOptions{"hold": {NonBlocking: true}}})
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			a := dial(t, srv)
			payload := bytes.Repeat([]byte("c"), 2000)
			frame, _ := codec.AppendFrame(nil, codec.Frame{Seq: 7, Request: []byte("echo"), Payload: payload}, nil)
			if err := a.writeRaw(frame[:1000]); err != nil {
				t.Fatal(err)
			}
			testnet.WaitFor(t, ioTimeout, "the first part to be buffered", func() bool {
				return srv.Stats().Buffered >= 1000
			})
			b := dial(t, srv)
			b.send("hold", nil)
			<-started
			if err := a.writeRaw(frame[1000:]); err != nil {
				t.Fatal(err)
			}
			shut := shutdownAsync(srv, 10*time.Second)
			waitDraining(t, srv)
			once.Do(func() { close(release) })
			f, err := a.recvErr()
			if err != nil {
				t.Fatalf("a frame read whole before the close was not answered: %v", err)
			}
			if f.Seq != 7 || f.Status != codec.StatusOK || !bytes.Equal(f.Payload, payload) {
				t.Fatalf("answer: seq %d, status %d, %d bytes", f.Seq, f.Status, len(f.Payload))
			}
			b.recv()
			if err := testnet.RecvOrFail(t, shut, 2*ioTimeout, "Shutdown"); err != nil {
				t.Fatalf("Shutdown = %v", err)
			}
		})
	}
}

// A client that shuts its write side after its request and then never
// reads: the answer still goes out (on the reactor, on the duplicate
// descriptor of a half-closed connection), and when the write timeout cuts
// it short the client sees a reset, not a clean EOF, as on a connection
// that never half-closed.
func TestWriteTimeoutHalfClosed(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("the handler waits for the FIN, which its own loop reads")
		}
		handlers := testHandlers()
		handlers["echoAfterFIN"] = func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			<-ctx.Done() // cancelled when the server reads the FIN
			return 200, req.Payload, nil
		}
		srv := e.listen(t, engine.Config{Handlers: handlers, WriteTimeout: 300 * time.Millisecond, MaxPayload: 32 << 20})
		c := dial(t, srv)
		big := bytes.Repeat([]byte("h"), 16<<20)
		c.send("echoAfterFIN", big)
		if err := c.nc.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		testnet.WaitFor(t, ioTimeout, "the write timeout to close the connection", func() bool {
			return srv.Stats().OpenConns == 0
		})
		c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		n, err := io.Copy(io.Discard, c.nc)
		if n >= int64(len(big)) {
			t.Fatalf("got %d bytes, want a torn answer", n)
		}
		if err == nil {
			t.Errorf("torn answer ended with a clean EOF after %d bytes, want a reset", n)
		}
		if st := srv.Stats(); st.TimedOut == 0 {
			t.Errorf("TimedOut = 0 (%+v)", st)
		}
	})
}

// Frames pipelined behind a request in flight, then the client's FIN:
// every frame read before the FIN is answered, in order, on every engine
// (on the reactor pool the FIN arrives while a worker runs the first
// request, and gnet closes the connection: the frames behind it are
// answered on the duplicate descriptor).
func TestHalfClosePipelined(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		handlers := testHandlers()
		handlers["held"] = func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			<-ctx.Done() // until the server has read the FIN
			return 200, req.Payload, nil
		}
		srv := e.listen(t, engine.Config{Handlers: handlers})
		// First with a request in flight when the FIN arrives (on the
		// pool), then with quick ones only: the FIN may then come while
		// the connection is idle between two of them, frames still
		// waiting in gnet's buffer.
		for round, first := range []string{"held", "echo", "echo", "echo"} {
			if first == "held" && !(e.kind == engine.Reactor && e.blocking()) {
				continue
			}
			c := dial(t, srv)
			const n = 50
			var wire []byte
			for i := range n {
				req := "echo"
				if i == 0 {
					req = first
				}
				wire = c.encode(wire, codec.Frame{Seq: uint32(i + 1), Request: []byte(req), Payload: []byte(fmt.Sprintf("p%d", i))})
			}
			if err := c.writeRaw(wire); err != nil {
				t.Fatal(err)
			}
			if err := c.nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				f, err := c.recvErr()
				if err != nil {
					t.Fatalf("round %d (%s first): answer %d of %d: %v", round, first, i+1, n, err)
				}
				if f.Status != codec.StatusOK || f.Seq != uint32(i+1) || string(f.Payload) != fmt.Sprintf("p%d", i) {
					t.Fatalf("round %d: answer %d: status %d seq %d payload %q", round, i+1, f.Status, f.Seq, f.Payload)
				}
			}
			c.expectClosed()
		}
		testnet.WaitFor(t, ioTimeout, "the connections to close", func() bool { return srv.Stats().OpenConns == 0 })
		if st := srv.Stats(); st.Buffered != 0 {
			t.Errorf("Buffered = %d after the close", st.Buffered)
		}
	})
}

// Over TLS a client half-closes with close_notify (tls.Conn.CloseWrite):
// every frame it sent before is answered, in order.
func TestHalfClosePipelinedTLS(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			pki, _ := secCerts(t)
			s := secServer(t, v, false, nil)
			tc, err := tls.Dial("tcp", s.AddrString(), secClientTLS(pki, nil, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			c := &client{t: t, nc: tc}
			const n = 20
			var wire []byte
			for i := range n {
				wire = c.encode(wire, codec.Frame{Seq: uint32(i + 1), Request: []byte("echo"), Payload: []byte(fmt.Sprintf("p%d", i))})
			}
			if err := c.writeRaw(wire); err != nil {
				t.Fatal(err)
			}
			if err := tc.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				f, err := c.recvErr()
				if err != nil {
					t.Fatalf("answer %d of %d: %v", i+1, n, err)
				}
				if f.Status != codec.StatusOK || f.Seq != uint32(i+1) || string(f.Payload) != fmt.Sprintf("p%d", i) {
					t.Fatalf("answer %d: status %d seq %d payload %q", i+1, f.Status, f.Seq, f.Payload)
				}
			}
			c.expectClosed()
		})
	}
}

// Over TLS, an answer whose ciphertext leaves in the loop's flush does not
// strand what follows it: the small frame pipelined behind a large one is
// answered, round after round. (The loop once took the flush's end for
// the connection going idle without decoding again, which also left a
// draining server waiting for its bound; that race needs the client to
// take the answer's last bytes within the flush, so this test exercises
// the path without forcing it.)
func TestTLSAnswerFlushedThenNext(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			pki, _ := secCerts(t)
			s := secServer(t, v, false, func(c *engine.Config) { c.MaxPayload = 8 << 20 })
			tc, err := tls.Dial("tcp", s.AddrString(), secClientTLS(pki, nil, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			c := &client{t: t, nc: tc}
			big := bytes.Repeat([]byte("b"), 4<<20)
			for round := range 20 {
				var wire []byte
				wire = c.encode(wire, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: big})
				wire = c.encode(wire, codec.Frame{Seq: 2, Request: []byte("echo"), Payload: []byte("next")})
				go c.writeRaw(wire)
				if f := c.recv(); f.Seq != 1 || len(f.Payload) != len(big) {
					t.Fatalf("round %d: first answer seq %d, %d bytes", round, f.Seq, len(f.Payload))
				}
				if f := c.recv(); f.Seq != 2 || string(f.Payload) != "next" {
					t.Fatalf("round %d: second answer seq %d %q", round, f.Seq, f.Payload)
				}
			}
		})
	}
}

// Defect 3, trickling: connections that send a frame a byte at a time,
// as fast as they can, are closed at once by a drain, however their reads
// and the drain's interruption interleave (std's read loop once set its
// own deadline over the drain's and waited for the frame).
func TestShutdownClosesTricklingFrames(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{ReadTimeout: time.Minute})
		const conns = 16
		var hdr [codec.HeaderLen]byte
		codec.PutHeader(hdr[:], 0, 1, 4, 1<<20)
		var wg sync.WaitGroup
		var trickling atomic.Int64
		for range conns {
			c := dial(t, srv)
			if err := c.writeRaw(append(hdr[:], "echo"...)); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				trickling.Add(1)
				one := []byte{'t'}
				for range 1 << 20 { // one byte per write until the server closes
					c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
					if _, err := c.nc.Write(one); err != nil {
						return
					}
				}
			}()
		}
		testnet.WaitFor(t, ioTimeout, "every connection to trickle", func() bool { return trickling.Load() == conns })
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		begin := time.Now()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown = %v, want the trickling frames closed at once", err)
		}
		t.Logf("Shutdown took %v", time.Since(begin))
		wg.Wait()
		t.Logf("writers done after %v", time.Since(begin))
	})
}

// A drain that closes a connection whose peer's bytes still wait unread
// in the kernel does not reset it: the answers already written arrive
// whole and in order, and the connection ends in a clean EOF (a reset
// can destroy answers still on their way).
func TestShutdownDoesNotResetUnread(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		h := newHeldDrain(t)
		srv := e.listen(t, engine.Config{EventLoops: 1, Handlers: h.handlers(), HandlerOptions: h.options()})
		h.run(t, srv, dial(t, srv))
	})
}

// heldDrain is the scenario of the unread-bytes drain tests: a handler on
// the connection's loop holds it while 4,000 frames pile up behind, the
// drain begins, then the handler returns.
type heldDrain struct {
	started, release chan struct{}
	once             sync.Once
}

func newHeldDrain(t *testing.T) *heldDrain {
	h := &heldDrain{started: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(h.let)
	return h
}

func (h *heldDrain) let() { h.once.Do(func() { close(h.release) }) }

// handlers adds "hold" to the test handlers.
func (h *heldDrain) handlers() map[string]engine.Handler {
	handlers := testHandlers()
	handlers["hold"] = func(context.Context, *engine.Request) (uint16, []byte, error) {
		h.started <- struct{}{}
		<-h.release
		return 200, []byte("held"), nil
	}
	return handlers
}

// options runs "hold" on the loop, on a pool server too.
func (h *heldDrain) options() map[string]engine.HandlerOptions {
	return map[string]engine.HandlerOptions{"hold": {NonBlocking: true}}
}

// run plays the scenario on c and checks that every answer that arrives
// is whole and in order, and that the connection ends in a clean EOF.
func (h *heldDrain) run(t *testing.T, srv *engine.Server, c *client) {
	const n = 4000
	wire := c.encode(nil, codec.Frame{Seq: 1, Request: []byte("hold")})
	for i := range n {
		wire = c.encode(wire, codec.Frame{Seq: uint32(i + 2), Request: []byte("echo"), Payload: []byte("pipelined")})
	}
	written := make(chan error, 1)
	go func() { written <- c.writeRaw(wire) }()
	<-h.started
	if err := testnet.RecvOrFail(t, written, ioTimeout, "the frames to be written"); err != nil {
		t.Fatal(err)
	}
	shut := shutdownAsync(srv, 10*time.Second)
	waitDraining(t, srv)
	h.let()
	got := 0
	for {
		f, err := c.recvErr()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("after %d answers: %v, want a clean EOF", got, err)
			}
			break
		}
		if f.Seq != uint32(got+1) || f.Status != codec.StatusOK {
			t.Fatalf("answer %d: seq %d status %d", got+1, f.Seq, f.Status)
		}
		got++
	}
	t.Logf("%d of %d answered before the close", got, n+1)
	if err := testnet.RecvOrFail(t, shut, 2*ioTimeout, "Shutdown"); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

// A reader that keeps reading, slowly and steadily, gets every byte of a
// large answer over a Unix socket, where the kernel wakes a blocked
// writer only once three quarters of its buffer are free: std once took
// that wait for a stall and cut the reader off. (Over TCP the window's
// updates can leave longer gaps than this test's write timeout; that is
// TestWriteTimeoutSlowReader's.)
func TestWriteTimeoutSteadyReader(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if e.network != "unix" {
			t.Skip("Unix sockets: their send buffer's wake-up rule")
		}
		srv := e.listen(t, engine.Config{WriteTimeout: 300 * time.Millisecond, MaxPayload: 16 << 20})
		c := dial(t, srv)
		big := bytes.Repeat([]byte("s"), 1<<20)
		seq := c.send("echo", big)
		// 16 KiB every 40 ms: about 400 KB/s, 2.6 s for the answer.
		var got bytes.Buffer
		want := codec.HeaderLen + len("echo") + len(big)
		buf := make([]byte, 16<<10)
		tick := time.NewTicker(40 * time.Millisecond)
		defer tick.Stop()
		for got.Len() < want {
			<-tick.C
			c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
			n, err := io.ReadAtLeast(c.nc, buf[:min(len(buf), want-got.Len())], 1)
			got.Write(buf[:n])
			if err != nil {
				t.Fatalf("after %d of %d bytes: %v", got.Len(), want, err)
			}
		}
		f, n, _, err := codec.Parse(got.Bytes(), codec.Options{MaxPayload: 16 << 20})
		if err != nil || n != want || f.Seq != seq || !bytes.Equal(f.Payload, big) {
			t.Fatalf("answer: %d bytes, err %v", n, err)
		}
	})
}

// A FIN while part of a large answer is still to be sent (gnet held it
// when it closed the connection at the FIN; on std, the kernel), whole
// frames behind it: the client that only starts reading after its FIN gets
// the whole answer, then the answers behind it, then a clean EOF. (gnet
// once dropped what it held: a reset, or a torn answer.) The subtests run
// one at a time: the hook that says the FIN was seen is global.
func TestHalfCloseLargeAnswer(t *testing.T) {
	orphaned := orphanSignal(t)
	for _, v := range variants {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(v.name+"/"+network, func(t *testing.T) {
				e := env{v, network}
				handlers := testHandlers()
				bigAns := bytes.Repeat([]byte("a"), 16<<20)
				handlers["big"] = func(context.Context, *engine.Request) (uint16, []byte, error) {
					return 200, bigAns, nil
				}
				srv := e.listen(t, engine.Config{Handlers: handlers, MaxBuffered: 64 << 20})
				c := dial(t, srv)
				c.opts.MaxPayload = 32 << 20
				c.send("big", nil)
				testnet.WaitFor(t, ioTimeout, "the big answer to be written", func() bool { return srv.Stats().Requests >= 1 })
				marker := bytes.Repeat([]byte("B"), 60<<10)
				for range 3 {
					c.send("echo", marker)
				}
				if err := c.nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				if e.kind == engine.Reactor {
					waitOrphaned(t, orphaned)
				}
				f := c.recv()
				if f.Status != codec.StatusOK || f.Seq != 1 || !bytes.Equal(f.Payload, bigAns) {
					t.Fatalf("big answer: status %d seq %d, %d bytes", f.Status, f.Seq, len(f.Payload))
				}
				for i := range 3 {
					f := c.recv()
					if f.Status != codec.StatusOK || f.Seq != uint32(i+2) || !bytes.Equal(f.Payload, marker) {
						t.Fatalf("echo %d: status %d seq %d, %d bytes", i, f.Status, f.Seq, len(f.Payload))
					}
				}
				c.expectClosed()
				testnet.WaitFor(t, ioTimeout, "the connection to close", func() bool { return srv.Stats().OpenConns == 0 })
			})
		}
	}
}

// orphanSignal returns where the reactor signals, once per test run at
// a time, that it has taken over a half-closed connection (the hook is
// global: tests using it are not parallel).
func orphanSignal(t *testing.T) <-chan struct{} {
	orphaned := make(chan struct{}, 1)
	t.Cleanup(engine.SetAfterOrphaned(func() {
		select {
		case orphaned <- struct{}{}:
		default:
		}
	}))
	return orphaned
}

// waitOrphaned waits for orphanSignal's signal.
func waitOrphaned(t *testing.T, orphaned <-chan struct{}) {
	t.Helper()
	select {
	case <-orphaned:
	case <-time.After(ioTimeout):
		t.Fatal("the server did not take over the half-closed connection")
	}
}

// holdAsyncAnswer holds each pool worker just before it hands an answer
// to gnet: handing signals it, a send on proceed lets it go.
func holdAsyncAnswer(t *testing.T) (handing <-chan struct{}, proceed chan<- struct{}) {
	h, p := make(chan struct{}, 1), make(chan struct{})
	t.Cleanup(engine.SetBeforeAsyncAnswer(func() {
		h <- struct{}{}
		<-p
	}))
	return h, p
}

// The pool: the peer's FIN arrives after a worker has written what the
// socket took of a large answer and before gnet has the rest (the worker
// is on its way to hand it over). The rest still goes out, on the
// duplicate descriptor; it was once dropped (a torn answer, then a clean
// EOF).
func TestHalfCloseAnswerInTransit(t *testing.T) {
	orphaned := orphanSignal(t)
	handing, proceed := holdAsyncAnswer(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			e := env{variant{"reactor-pool", engine.Reactor, false}, network}
			handlers := testHandlers()
			bigAns := bytes.Repeat([]byte("a"), 16<<20)
			handlers["big"] = func(context.Context, *engine.Request) (uint16, []byte, error) {
				return 200, bigAns, nil
			}
			srv := e.listen(t, engine.Config{Handlers: handlers})
			c := dial(t, srv)
			c.opts.MaxPayload = 32 << 20
			c.send("big", nil)
			<-handing // the worker has written what the socket took
			if err := c.nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			waitOrphaned(t, orphaned)
			proceed <- struct{}{}
			f := c.recv()
			if f.Status != codec.StatusOK || f.Seq != 1 || !bytes.Equal(f.Payload, bigAns) {
				t.Fatalf("big answer: status %d seq %d, %d bytes", f.Status, f.Seq, len(f.Payload))
			}
			c.expectClosed()
			testnet.WaitFor(t, ioTimeout, "the connection to close", func() bool { return srv.Stats().OpenConns == 0 })
		})
	}
}

// An orphan serves nothing after a closing answer. The pool's worker
// answers a frame with a wrong MAC (502, which ends the session) and is
// held just before it hands the answer to gnet; the client, a frame sent
// behind the bad one, half-closes. It gets the 502, then the close, and
// no answer to the frame behind (the orphan once served that frame too,
// and the ended session answered it with a second refusal).
func TestHalfCloseAfterClosingAnswer(t *testing.T) {
	orphaned := orphanSignal(t)
	handing, proceed := holdAsyncAnswer(t)
	key := []byte("the shared secret")
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			e := env{variant{"reactor-pool", engine.Reactor, false}, network}
			srv := e.listen(t, engine.Config{HMACKey: key})
			c := dial(t, srv).withMAC(key)
			wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("tampered")}, nil)
			wire = codec.NewMAC([]byte("wrong key")).AppendSign(wire, []byte("tampered"))
			wire = c.encode(wire, codec.Frame{Seq: 2, Request: []byte("echo"), Payload: []byte("behind")})
			if err := c.writeRaw(wire); err != nil {
				t.Fatal(err)
			}
			select {
			case <-handing:
			case <-time.After(ioTimeout):
				t.Fatal("the refusal was not handed to gnet by a worker")
			}
			if err := c.nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			waitOrphaned(t, orphaned)
			proceed <- struct{}{}
			if f := c.recv(); f.Status != codec.StatusBadMAC || f.Seq != 1 {
				t.Fatalf("status %d seq %d, want 502 seq 1", f.Status, f.Seq)
			}
			c.expectClosed()
			testnet.WaitFor(t, ioTimeout, "the connection to close", func() bool { return srv.Stats().OpenConns == 0 })
		})
	}
}

// Many rounds of a few quick pipelined requests, then the FIN, on the
// pool: the FIN may come while a worker has written its answer and is
// giving the connection back; the frames behind are still answered (the
// worker serves them), and nothing races.
func TestHalfClosePipelinedStress(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			e := env{variant{"pool", engine.Reactor, false}, network}
			srv := e.listen(t, engine.Config{})
			for round := range 300 {
				c := dial(t, srv)
				var wire []byte
				const n = 3
				for i := range n {
					wire = c.encode(wire, codec.Frame{Seq: uint32(i + 1), Request: []byte("echo"), Payload: []byte{byte('a' + i)}})
				}
				if err := c.writeRaw(wire); err != nil {
					t.Fatal(err)
				}
				c.nc.(interface{ CloseWrite() error }).CloseWrite()
				for i := range n {
					f, err := c.recvErr()
					if err != nil {
						t.Fatalf("round %d: answer %d of %d: %v", round, i+1, n, err)
					}
					if f.Seq != uint32(i+1) {
						t.Fatalf("round %d: answer %d has seq %d", round, i+1, f.Seq)
					}
				}
				c.close()
			}
		})
	}
}

// TestShutdownDoesNotResetUnread over TLS: the reactor's TLS path lingers
// too.
func TestShutdownDoesNotResetUnreadTLS(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			h := newHeldDrain(t)
			srv := secServer(t, v, false, func(cfg *engine.Config) {
				cfg.EventLoops = 1
				cfg.Handlers = h.handlers()
				cfg.HandlerOptions = h.options()
			})
			pki, _ := secCerts(t)
			tc, err := tls.Dial("tcp", srv.AddrString(), secClientTLS(pki, nil, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer tc.Close()
			h.run(t, srv, &client{t: t, nc: tc})
		})
	}
}

// Std: a connection waiting for room in the inbound budget is mid-frame:
// the drain closes it at once (it once waited for its read deadline).
func TestShutdownClosesBudgetWaiter(t *testing.T) {
	e := env{variant{"std", engine.Std, false}, "tcp"}
	srv := e.listen(t, engine.Config{MaxBuffered: 16 << 10, MaxPayload: 1 << 20, ReadTimeout: time.Minute})
	c := dial(t, srv)
	wire := c.encode(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: bytes.Repeat([]byte("x"), 1<<20)})
	if err := c.writeRaw(wire[:64<<10]); err != nil {
		t.Fatal(err)
	}
	testnet.WaitFor(t, ioTimeout, "the connection to wait for room", func() bool {
		return srv.Stats().Evicted > 0 // std counts a wait for room there
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v, want the waiting partial frame closed at once", err)
	}
}

// A synchronous client's next frame can reach the reactor while the worker
// that wrote the last answer has not yet given the connection back. When
// that frame is refused from its header (over the payload limit) and more
// than the backlog allowance of it arrives in that window, the client
// still gets its 402: the loop no longer takes it for a pipelined backlog
// and cuts it without an answer. On the pool a hook holds the worker in
// the window; inline and std have no such window and must answer the same.
func TestRefusalBehindWrittenAnswer(t *testing.T) {
	for _, v := range variants {
		for _, network := range []string{"tcp", "unix", "tls"} {
			t.Run(v.name+"/"+network, func(t *testing.T) {
				release := make(chan struct{})
				free := sync.OnceFunc(func() { close(release) })
				defer free()
				var once sync.Once
				// Restored after the server's Close (cleanups run last first).
				t.Cleanup(engine.SetAfterAnswerWritten(func() { once.Do(func() { <-release }) }))
				var srv *engine.Server
				var c *client
				if network == "tls" {
					srv = secServer(t, v, false, func(cfg *engine.Config) { cfg.MaxPayload = 64 << 10 })
					c = dialTLS(t, srv)
				} else {
					srv = env{v, network}.listen(t, engine.Config{MaxPayload: 64 << 10})
					c = dial(t, srv)
				}
				c.expect("echo", []byte("first"), codec.StatusOK, []byte("first"))
				// The first answer is out; on the pool its worker is held.
				big := c.encode(nil, codec.Frame{Seq: 2, Request: []byte("echo"), Payload: make([]byte, 2<<20)})
				wrote := make(chan error, 1)
				go func() { wrote <- c.writeRaw(big) }()
				if v.name == "reactor-pool" {
					testnet.WaitFor(t, ioTimeout, "the refused frame to be buffered behind the answer", func() bool {
						return srv.Stats().Buffered > 300<<10 || len(wrote) > 0
					})
					free()
				}
				f, err := c.recvErr()
				if err != nil {
					t.Fatalf("answer to the refused frame: %v (write: %v)", err, testnet.RecvOrFail(t, wrote, ioTimeout, "the write"))
				}
				if f.Status != codec.StatusPayloadTooLarge || f.Seq != 2 {
					t.Fatalf("answer status %d seq %d, want 402 seq 2", f.Status, f.Seq)
				}
				c.close()
				testnet.RecvOrFail(t, wrote, ioTimeout, "the write to end")
			})
		}
	}
}

// A frame the peer sent while its previous request ran, and that the
// server had not read when the drain began (std reads on demand; an
// inline handler holds its loop), is still answered before the close:
// the drain reads once what the kernel holds.
func TestShutdownAnswersUnreadFrames(t *testing.T) {
	for _, v := range variants {
		for _, network := range []string{"tcp", "unix", "tls"} {
			t.Run(v.name+"/"+network, func(t *testing.T) {
				h := newHeldDrain(t)
				var srv *engine.Server
				var c *client
				if network == "tls" {
					srv = secServer(t, v, false, func(cfg *engine.Config) { cfg.Handlers, cfg.EventLoops = h.handlers(), 1 })
					c = dialTLS(t, srv)
				} else {
					srv = env{v, network}.listen(t, engine.Config{Handlers: h.handlers(), EventLoops: 1})
					c = dial(t, srv)
				}
				c.send("hold", nil)
				testnet.RecvOrFail(t, h.started, ioTimeout, "the handler to start")
				// The handler runs: std is not reading, an inline loop is
				// held; the frame stays in the kernel.
				c.send("echo", []byte("behind"))
				shut := shutdownAsync(srv, 10*time.Second)
				waitDraining(t, srv)
				h.let()
				if f := c.recv(); f.Seq != 1 || string(f.Payload) != "held" {
					t.Fatalf("first answer: seq %d %q", f.Seq, f.Payload)
				}
				f, err := c.recvErr()
				if err != nil || f.Seq != 2 || string(f.Payload) != "behind" {
					t.Fatalf("answer to the frame sent behind: %v (seq %d %q)", err, f.Seq, f.Payload)
				}
				c.expectClosed()
				if err := testnet.RecvOrFail(t, shut, 2*ioTimeout, "Shutdown"); err != nil {
					t.Fatalf("Shutdown = %v", err)
				}
			})
		}
	}
}

// A frame the server had begun to read when the drain reached it, its
// rest in the kernel (std reads 4 KiB at a time; an inline loop reads 64
// KiB, then its handler holds it), is still answered: the drain reads the
// rest, as it reads frames not begun. (It was closed as a partial frame
// on std and inline.) Sent with the request before it in one write.
func TestShutdownAnswersFrameBegun(t *testing.T) {
	for _, v := range variants {
		for _, network := range []string{"tcp", "unix"} {
			t.Run(v.name+"/"+network, func(t *testing.T) {
				h := newHeldDrain(t)
				srv := env{v, network}.listen(t, engine.Config{Handlers: h.handlers(), EventLoops: 1})
				c := dial(t, srv)
				behind := bytes.Repeat([]byte("b"), 100<<10)
				wire := c.encode(nil, codec.Frame{Seq: 1, Request: []byte("hold")})
				wire = c.encode(wire, codec.Frame{Seq: 2, Request: []byte("echo"), Payload: behind})
				if err := c.writeRaw(wire); err != nil {
					t.Fatal(err)
				}
				testnet.RecvOrFail(t, h.started, ioTimeout, "the handler to start")
				shut := shutdownAsync(srv, 10*time.Second)
				waitDraining(t, srv)
				h.let()
				if f := c.recv(); f.Seq != 1 || string(f.Payload) != "held" {
					t.Fatalf("first answer: seq %d %q", f.Seq, f.Payload)
				}
				f, err := c.recvErr()
				if err != nil || f.Seq != 2 || !bytes.Equal(f.Payload, behind) {
					t.Fatalf("answer to the frame sent behind: %v (seq %d, %d bytes)", err, f.Seq, len(f.Payload))
				}
				c.expectClosed()
				if err := testnet.RecvOrFail(t, shut, 2*ioTimeout, "Shutdown"); err != nil {
					t.Fatalf("Shutdown = %v", err)
				}
			})
		}
	}
}

// shutdownAsync starts srv's Shutdown, bounded by d, and returns where its
// result comes.
func shutdownAsync(srv *engine.Server, d time.Duration) <-chan error {
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	return shut
}

// waitDraining waits until srv's listener refuses connections: it closes
// when the drain begins.
func waitDraining(t *testing.T, srv *engine.Server) {
	t.Helper()
	a := srv.Addr()
	testnet.WaitFor(t, ioTimeout, "the drain to begin", func() bool {
		c, err := net.DialTimeout(a.Network(), a.String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
}

// Over TLS a client may also half-close at the TCP level, shutting its
// socket's write side under the session (no close_notify): every frame it
// sent before is still answered, in order, on every engine. The cases: a
// request sent just after the handshake (its records and the FIN may
// reach the reactor before it has finished the handshake or decrypted
// them), frames pipelined behind a request in flight, and a large answer
// the client has not read yet when it half-closes.
func TestHalfCloseTLSFIN(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			pki, _ := secCerts(t)
			bigAns := bytes.Repeat([]byte("a"), 16<<20)
			started, release := make(chan struct{}, 1), make(chan struct{})
			s := secServer(t, v, false, func(c *engine.Config) {
				c.Handlers["signalled"] = func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
					started <- struct{}{}
					<-release
					return 200, req.Payload, nil
				}
				c.MaxBuffered = 64 << 20
				c.Handlers["big"] = func(context.Context, *engine.Request) (uint16, []byte, error) {
					return 200, bigAns, nil
				}
				c.Handlers["held"] = func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
					<-ctx.Done() // until the server has read the FIN
					return 200, req.Payload, nil
				}
			})
			// dialFIN returns a TLS client whose finWrite shuts the TCP
			// write side under the session.
			var lastRaw net.Conn
			dialFIN := func(t *testing.T) (*client, func()) {
				raw, err := net.DialTimeout("tcp", s.AddrString(), ioTimeout)
				if err != nil {
					t.Fatal(err)
				}
				lastRaw = raw
				tc := tls.Client(raw, secClientTLS(pki, nil, 0))
				t.Cleanup(func() { tc.Close() })
				tc.SetDeadline(time.Now().Add(ioTimeout))
				if err := tc.Handshake(); err != nil {
					t.Fatal(err)
				}
				return &client{t: t, nc: tc}, func() {
					if err := raw.(*net.TCPConn).CloseWrite(); err != nil {
						t.Fatal(err)
					}
				}
			}
			expect := func(t *testing.T, c *client, what string, seq uint32, payload []byte) {
				t.Helper()
				f, err := c.recvErr()
				if err != nil {
					t.Fatalf("%s: answer %d: %v", what, seq, err)
				}
				if f.Status != codec.StatusOK || f.Seq != seq || !bytes.Equal(f.Payload, payload) {
					t.Fatalf("%s: answer %d: status %d seq %d, %d bytes", what, seq, f.Status, f.Seq, len(f.Payload))
				}
			}
			t.Run("after-handshake", func(t *testing.T) {
				for round := range 10 {
					c, fin := dialFIN(t)
					var wire []byte
					for i := range 3 {
						wire = c.encode(wire, codec.Frame{Seq: uint32(i + 1), Request: []byte("echo"), Payload: []byte(fmt.Sprintf("r%d-%d", round, i))})
					}
					if err := c.writeRaw(wire); err != nil {
						t.Fatal(err)
					}
					fin()
					for i := range 3 {
						expect(t, c, fmt.Sprintf("just after the handshake, round %d", round), uint32(i+1), []byte(fmt.Sprintf("r%d-%d", round, i)))
					}
					c.expectClosed()
				}
			})
			for _, midRecord := range []bool{false, true} {
				name := "pipelined"
				if midRecord {
					name = "pipelined-mid-record" // the FIN after the first bytes of a record
				}
				t.Run(name, func(t *testing.T) {
					c, fin := dialFIN(t)
					c.opts.MaxPayload = 1 << 20
					c.expect("echo", []byte("warm"), codec.StatusOK, []byte("warm"))
					var wire []byte
					for i := range 6 {
						req := "echo"
						if i == 0 && (v.kind != engine.Reactor || !v.inline) {
							req = "held" // in flight on a worker (std: its goroutine) at the FIN
						}
						wire = c.encode(wire, codec.Frame{Seq: uint32(i + 2), Request: []byte(req), Payload: []byte(fmt.Sprintf("p%d", i))})
					}
					if err := c.writeRaw(wire); err != nil {
						t.Fatal(err)
					}
					if midRecord {
						if _, err := lastRaw.Write([]byte{0x17, 0x03}); err != nil {
							t.Fatal(err)
						}
					}
					fin()
					for i := range 6 {
						expect(t, c, "pipelined behind a request in flight", uint32(i+2), []byte(fmt.Sprintf("p%d", i)))
					}
					if midRecord {
						if _, err := c.recvErr(); err == nil {
							t.Fatal("an answer after the last frame")
						}
					} else {
						c.expectClosed()
					}
				})
			}
			t.Run("large", func(t *testing.T) {
				c, fin := dialFIN(t)
				c.opts.MaxPayload = 32 << 20
				c.expect("echo", []byte("warm"), codec.StatusOK, []byte("warm"))
				c.send("big", nil)
				testnet.WaitFor(t, ioTimeout, "the big answer to be written", func() bool { return s.Stats().Requests >= 2 })
				marker := bytes.Repeat([]byte("B"), 60<<10)
				for range 3 {
					c.send("echo", marker)
				}
				fin()
				expect(t, c, "large answer", 2, bigAns)
				for i := range 3 {
					expect(t, c, "behind the large answer", uint32(i+3), marker)
				}
				c.expectClosed()
			})
			// The FIN during a drain, frames waiting behind the request in
			// flight, not yet decrypted (the reactor pool once closed at
			// the first look, the drain's rule for an empty buffer).
			t.Run("draining", func(t *testing.T) {
				if v.kind == engine.Reactor && v.inline {
					t.Skip("no request in flight on an inline loop")
				}
				c, fin := dialFIN(t)
				c.expect("echo", []byte("warm"), codec.StatusOK, []byte("warm"))
				c.send("signalled", []byte("h"))
				<-started
				var wire []byte
				for i := range 3 {
					wire = c.encode(wire, codec.Frame{Seq: uint32(i + 3), Request: []byte("echo"), Payload: []byte(fmt.Sprintf("d%d", i))})
				}
				if err := c.writeRaw(wire); err != nil {
					t.Fatal(err)
				}
				if v.kind == engine.Reactor {
					testnet.WaitFor(t, ioTimeout, "the frames behind to reach the server", func() bool { return s.Stats().Buffered > 0 })
				}
				shut := make(chan error, 1)
				go func() { shut <- s.Shutdown(context.Background()) }()
				testnet.WaitFor(t, ioTimeout, "the drain to begin", func() bool {
					nc, err := net.Dial("tcp", s.AddrString())
					if err == nil {
						nc.Close()
					}
					return err != nil
				})
				fin()
				if v.kind == engine.Reactor {
					testnet.WaitFor(t, ioTimeout, "the FIN to be read", func() bool { return s.Stats().Buffered == 0 })
				}
				close(release)
				expect(t, c, "in flight at the FIN, draining", 2, []byte("h"))
				for i := range 3 {
					expect(t, c, "behind it, draining", uint32(i+3), []byte(fmt.Sprintf("d%d", i)))
				}
				c.expectClosed()
				if err := <-shut; err != nil {
					t.Fatalf("Shutdown = %v", err)
				}
			})
			testnet.WaitFor(t, ioTimeout, "the connections to close", func() bool { return s.Stats().OpenConns == 0 })
		})
	}
}
