package reliability_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// A client that goes away at every stage of a request, with a FIN or a
// reset: the server cancels a running handler, frees the connection, and
// goes on serving everyone else.
func TestDisconnectAtEveryStage(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		started := make(chan struct{}, 64)
		cancelled := make(chan struct{}, 64)
		h := baseHandlers(v)
		if v.blocking() {
			h["hold"] = func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
				started <- struct{}{}
				select {
				case <-ctx.Done():
					cancelled <- struct{}{}
				case <-time.After(ioTimeout):
				}
				return 200, req.Payload, nil
			}
		}
		srv := listen(t, v, engine.Config{Handlers: h})
		frame := func(req string, p []byte) []byte {
			b, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte(req), Payload: p}, nil)
			return b
		}
		mid := frame("echo", bytes.Repeat([]byte("m"), 100_000))
		huge := frame("echo", bytes.Repeat([]byte("h"), 3<<20))
		var burst []byte
		for i := range 50 {
			burst = append(burst, frame("echo", fmt.Appendf(nil, "burst %d", i))...)
		}
		burst = append(burst, mid[:1000]...)

		type stage struct {
			name string
			run  func(c *conn) error
		}
		stages := []stage{
			{"before sending anything", func(*conn) error { return nil }},
			{"mid-header", func(c *conn) error { return c.writeRaw(mid[:5]) }},
			{"after the header", func(c *conn) error { return c.writeRaw(mid[:codec.HeaderLen]) }},
			{"mid-request-text", func(c *conn) error { return c.writeRaw(mid[:codec.HeaderLen+2]) }},
			{"mid-payload", func(c *conn) error { return c.writeRaw(mid[:len(mid)/2]) }},
			{"one byte short", func(c *conn) error { return c.writeRaw(mid[:len(mid)-1]) }},
			{"before reading the answer", func(c *conn) error { return c.writeRaw(huge) }},
			{"mid-answer", func(c *conn) error {
				if err := c.writeRaw(huge); err != nil {
					return err
				}
				var b [1000]byte
				c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
				_, err := c.nc.Read(b[:])
				return err
			}},
			{"mid-pipelined-burst", func(c *conn) error { return c.writeRaw(burst) }},
		}
		if v.blocking() {
			stages = append(stages, stage{"while its handler runs", func(c *conn) error {
				if _, err := c.send("hold", []byte("x")); err != nil {
					return err
				}
				testnet.RecvOrFail(t, started, ioTimeout, "handler start")
				return nil
			}})
		}
		reps := scale(8)
		for _, st := range stages {
			for i := range 2 * reps {
				c := mustDial(t, srv, nil)
				if err := st.run(c); err != nil {
					t.Fatalf("%s: %v", st.name, err)
				}
				if i%2 == 0 {
					c.close()
				} else {
					c.abort()
				}
				if st.name == "while its handler runs" {
					testnet.RecvOrFail(t, cancelled, ioTimeout, "the handler's context to be cancelled")
				}
			}
			if err := checkEcho(srv, nil, []byte("after "+st.name)); err != nil {
				t.Fatalf("after %q: %v", st.name, err)
			}
		}
		testnet.WaitFor(t, ioTimeout, "every connection to close", func() bool { return srv.Stats().OpenConns == 0 })
	})
}

// A panicking handler is answered 500, leaves its connection usable and
// the server serving, however many panic at once.
func TestHandlerPanics(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		srv := listen(t, v, engine.Config{})
		const conns = 8
		calls := scale(40)
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for i := range conns {
			c := mustDial(t, srv, nil)
			wg.Go(func() {
				for j := range calls {
					if j%2 == 0 {
						f, err := c.call("panic", nil)
						if err == nil && f.Status != codec.StatusHandlerError {
							err = fmt.Errorf("panic answered %d", f.Status)
						}
						if err != nil {
							errs <- fmt.Errorf("conn %d call %d: %w", i, j, err)
							return
						}
					} else if err := c.echo(fmt.Appendf(nil, "%d/%d", i, j)); err != nil {
						errs <- fmt.Errorf("conn %d call %d: %w", i, j, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got, want := srv.Stats().ByStatus["500"], uint64(conns*calls/2); got != want {
			t.Errorf("%d answers 500, want %d", got, want)
		}
	})
}

// Handlers that never return, with a handler timeout: each is answered as
// timed out once the timeout passes (500 "handler timeout" on version 0),
// its context is cancelled, its connection stays usable, and, although
// they never return, a small worker pool goes on serving everyone else
// (an abandoned handler keeps its worker; the pool grows by one for it, up
// to MaxAbandoned). One more beyond MaxAbandoned is answered busy without
// running.
func TestHandlerNeverReturns(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		if !v.blocking() {
			t.Skip("HandlerTimeout does not apply to inline handlers, which must not block")
		}
		const (
			workers = 4
			hung    = 12 // three times the pool
			timeout = 150 * time.Millisecond
		)
		release := make(chan struct{})
		ctxDone := make(chan struct{}, hung+1)
		exited := make(chan struct{}, hung+1)
		h := baseHandlers(v)
		h["hang"] = func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
			defer func() { exited <- struct{}{} }()
			select {
			case <-ctx.Done():
				ctxDone <- struct{}{}
			case <-release:
				return 200, nil, nil
			}
			<-release // and keep hanging, ignoring the cancellation
			return 200, []byte("late"), nil
		}
		srv := listen(t, v, engine.Config{Workers: workers, HandlerTimeout: timeout, MaxAbandoned: hung + 1, Handlers: h})
		t.Cleanup(func() {
			close(release)
			for range hung + 1 {
				<-exited
			}
		})

		hangers := make([]*conn, hung)
		for i := range hangers {
			hangers[i] = mustDial(t, srv, nil)
			if _, err := hangers[i].send("hang", nil); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range hangers {
			f, err := c.recv(ioTimeout)
			if err != nil {
				t.Fatalf("hung request %d: %v", i, err)
			}
			// A version-0 session gets 500 "handler timeout" (504 is
			// for version 1).
			if f.Status != codec.StatusHandlerError || string(f.Payload) != "handler timeout" {
				t.Fatalf("hung request %d: status %d %q, want 500 %q", i, f.Status, f.Payload, "handler timeout")
			}
		}
		for range hung {
			testnet.RecvOrFail(t, ctxDone, ioTimeout, "hung handlers' contexts to be cancelled")
		}
		// Every hung handler is still running. The pool serves others
		// promptly, many at once, and the hung connections themselves.
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 2*workers+hung)
		for i := range 2 * workers {
			c := mustDial(t, srv, nil)
			wg.Go(func() {
				for j := range 20 {
					if err := c.echo(fmt.Appendf(nil, "%d/%d", i, j)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		for _, c := range hangers {
			wg.Go(func() {
				if err := c.echo([]byte("still usable")); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("%d echoes beside %d hung handlers took %v", 40*workers+hung, hung, el)
		}
		if n := len(exited); n != 0 {
			t.Fatalf("%d hung handlers returned before the release", n)
		}
		if st := srv.Stats(); st.Abandoned != hung {
			t.Errorf("Abandoned = %d, want %d", st.Abandoned, hung)
		}
		// One more may time out and be abandoned (13 = MaxAbandoned);
		// past that, a request is answered busy without running.
		extra := mustDial(t, srv, nil)
		for i, want := range []string{"handler timeout", "server busy"} {
			if _, err := extra.send("hang", nil); err != nil {
				t.Fatal(err)
			}
			f, err := extra.recv(ioTimeout)
			if err != nil || f.Status != codec.StatusHandlerError || string(f.Payload) != want {
				t.Errorf("extra %d: %v, status %d %q, want 500 %q", i, err, f.Status, f.Payload, want)
			}
			if i == 0 {
				testnet.RecvOrFail(t, ctxDone, ioTimeout, "the extra handler's context to be cancelled")
			}
		}
	})
}

// A flood of connections beyond MaxConns: every one over the limit is
// closed without an answer, the admitted ones keep working throughout, and
// a slot freed is usable again.
func TestMaxConnsFlood(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		const limit = 8
		srv := listen(t, v, engine.Config{MaxConns: limit})
		admitted := make([]*conn, limit)
		for i := range admitted {
			admitted[i] = mustDial(t, srv, nil)
			if err := admitted[i].echo([]byte("in")); err != nil {
				t.Fatal(err)
			}
		}
		flood := scale(400)
		var wg sync.WaitGroup
		var mu sync.Mutex
		dialled := 0
		errs := make(chan error, flood+limit)
		for i := range flood {
			wg.Go(func() {
				c, err := dial(srv, nil)
				if err != nil {
					return // refused by a full backlog: fine
				}
				defer c.abort()
				mu.Lock()
				dialled++
				mu.Unlock()
				if _, err := c.send("echo", []byte("over")); err != nil && !testnet.IsClosed(err) {
					errs <- fmt.Errorf("flood %d: %w", i, err)
					return
				}
				if err := c.closedErr(ioTimeout); err != nil {
					errs <- fmt.Errorf("flood %d: %w", i, err)
				}
			})
		}
		for i, c := range admitted {
			wg.Go(func() {
				for j := range 50 {
					if err := c.echo(fmt.Appendf(nil, "%d/%d", i, j)); err != nil {
						errs <- fmt.Errorf("admitted %d: %w", i, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		st := srv.Stats()
		if st.Refused != uint64(dialled) || st.OpenConns != limit {
			t.Errorf("stats: %d refused, %d open; want %d refused, %d open", st.Refused, st.OpenConns, dialled, limit)
		}
		admitted[0].close()
		testnet.WaitFor(t, ioTimeout, "a slot to free", func() bool { return srv.Stats().OpenConns == limit-1 })
		if err := checkEcho(srv, nil, []byte("freed slot")); err != nil {
			t.Fatal(err)
		}
	})
}

// A client that sends the last bytes of a frame and resets the connection
// at once, so that the server's write of the answer fails. Regression: on
// the reactor in inline mode, a failed write closed the connection inside
// gnet's Writev (OnClose returning the frame's buffer to the pool), then
// serve returned the same buffer again: a nil dereference on the event
// loop that took the whole process down.
func TestResetAfterLastByte(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		srv := listen(t, v, engine.Config{})
		big, _ := codec.AppendFrame(nil, codec.Frame{Seq: 2, Request: []byte("echo"), Payload: bytes.Repeat([]byte("r"), 64<<10)}, nil)
		for i := range scale(200) {
			c := mustDial(t, srv, nil)
			// A whole frame, then the start of the big one in the same
			// write; once the first answer is back, the server has begun
			// collecting the big frame in its own buffer.
			first, _ := c.frame(nil, "echo", []byte("first"))
			c.seq = 1
			if err := c.writeRaw(append(first, big[:1000]...)); err != nil {
				t.Fatal(err)
			}
			if f, err := c.recv(ioTimeout); err != nil || f.Seq != 1 {
				t.Fatalf("round %d: first answer: %v", i, err)
			}
			if err := c.writeRaw(big[1000:]); err != nil {
				t.Fatal(err)
			}
			c.abort()
		}
		if err := checkEcho(srv, nil, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		testnet.WaitFor(t, ioTimeout, "every connection to close", func() bool { return srv.Stats().OpenConns == 0 })
	})
}
