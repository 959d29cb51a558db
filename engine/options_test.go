package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// sendHeader writes a request's header and request text, declaring
// payloadLen bytes of payload and sending none.
func (c *client) sendHeader(seq uint32, req string, payloadLen uint32) error {
	var hdr [codec.HeaderLen]byte
	if err := codec.PutHeader(hdr[:], 0, seq, len(req), int(payloadLen)); err != nil {
		return err
	}
	return c.writeRaw(append(hdr[:], req...))
}

// expect402 reads a 402 answer for seq and req with the reason
// "declared > limit", then checks the connection closes.
func (c *client) expect402(seq uint32, req string, declared, limit uint32) {
	c.t.Helper()
	f := c.recv()
	want := fmt.Sprintf("%d > %d", declared, limit)
	if f.Status != codec.StatusPayloadTooLarge || f.Seq != seq || string(f.Request) != req || string(f.Payload) != want {
		c.t.Fatalf("got %d seq %d %q %q, want 402 seq %d %q %q", f.Status, f.Seq, f.Request, f.Payload, seq, req, want)
	}
	c.expectClosed()
}

func maxPayloadServer(t *testing.T, e env, def, big, small uint32, extra engine.Config) *engine.Server {
	extra.MaxPayload = def
	extra.Handlers = map[string]engine.Handler{"echo": testHandlers()["echo"], "big": testHandlers()["echo"], "small": testHandlers()["echo"]}
	extra.HandlerOptions = map[string]engine.HandlerOptions{"big": {MaxPayload: big}, "small": {MaxPayload: small}}
	return e.listen(t, extra)
}

// A handler's MaxPayload below the server's: a frame over it is refused
// 402 even when the server's limit would take it. Sent whole, the frame is
// refused on any transport.
func TestHandlerMaxPayloadBelow(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := maxPayloadServer(t, e, 1<<20, 8<<20, 1024, engine.Config{})
		c := dial(t, srv)
		c.opts.MaxPayload = 8 << 20 // the answer is as big
		c.expect("small", bytes.Repeat([]byte("s"), 1024), codec.StatusOK, nil)
		c.expect("echo", bytes.Repeat([]byte("e"), 4096), codec.StatusOK, nil)
		seq, err := c.sendErr("small", bytes.Repeat([]byte("s"), 2048))
		if err != nil {
			t.Fatal(err)
		}
		c.expect402(seq, "small", 2048, 1024)
		// A default handler beside it: refused from its header alone.
		d := dial(t, srv)
		if err := d.sendHeader(5, "echo", 2<<20); err != nil {
			t.Fatal(err)
		}
		d.expect402(5, "echo", 2<<20, 1<<20)
	})
}

// ... and refused from the header, before any payload is read. Needs the
// transport to parse with opts(name).
func TestHandlerMaxPayloadBelowFromHeader(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := maxPayloadServer(t, e, 1<<20, 8<<20, 1024, engine.Config{})
		c := dial(t, srv)
		c.opts.MaxPayload = 8 << 20 // the answer is as big
		if err := c.sendHeader(1, "small", 2048); err != nil {
			t.Fatal(err)
		}
		c.expect402(1, "small", 2048, 1024)
	})
}

// A handler's MaxPayload above the server's: its requests may be larger,
// while a default handler's are refused from the header. Needs the
// transport to parse with opts(name).
func TestHandlerMaxPayloadAbove(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := maxPayloadServer(t, e, 1<<20, 8<<20, 1024, engine.Config{})
		c := dial(t, srv)
		c.opts.MaxPayload = 8 << 20 // the answer is as big
		p := bytes.Repeat([]byte("b"), 6<<20)
		if f := c.call("big", p); f.Status != codec.StatusOK || !bytes.Equal(f.Payload, p) {
			t.Fatalf("big: status %d, %d bytes", f.Status, len(f.Payload))
		}
		d := dial(t, srv)
		if err := d.sendHeader(2, "echo", 2<<20); err != nil {
			t.Fatal(err)
		}
		d.expect402(2, "echo", 2<<20, 1<<20)
	})
}

// The scale: a 64 MiB allowance beside the 4 MiB default, where a
// 5 MiB payload to a default handler is refused from its header. TCP only.
// Needs the transport to parse with opts(name).
func TestHandlerMaxPayload64MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB frames")
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			e := env{v, "tcp"}
			srv := maxPayloadServer(t, e, 0, 64<<20, 0, engine.Config{MaxBuffered: 512 << 20})
			c := dial(t, srv)
			c.opts.MaxPayload = 64 << 20 // the answer is as big
			p := bytes.Repeat([]byte{0xA5}, 64<<20)
			if f := c.call("big", p); f.Status != codec.StatusOK || !bytes.Equal(f.Payload, p) {
				t.Fatalf("big: status %d, %d bytes", f.Status, len(f.Payload))
			}
			d := dial(t, srv)
			if err := d.sendHeader(1, "echo", 5<<20); err != nil {
				t.Fatal(err)
			}
			d.expect402(1, "echo", 5<<20, codec.DefaultMaxPayload)
		})
	}
}

// MaxConcurrent: the excess waits at most the queue timeout, then is
// answered busy (500 "server busy" on version 0, 503 on version 1) without
// running; the handler is served again once its slot is free.
func TestMaxConcurrent(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("the held slot needs a handler that blocks")
		}
		entered := make(chan struct{}, 4)
		release := make(chan struct{})
		var ran atomic.Int32
		hold := func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
			ran.Add(1)
			if string(req.Payload) == "block" {
				entered <- struct{}{}
				<-release
			}
			return 200, []byte("held"), nil
		}
		const qt = 100 * time.Millisecond
		srv := e.listen(t, engine.Config{QueueTimeout: qt,
			Handlers:       map[string]engine.Handler{"hold": hold, "echo": testHandlers()["echo"]},
			HandlerOptions: map[string]engine.HandlerOptions{"hold": {MaxConcurrent: 1}}})
		a := dial(t, srv)
		a.send("hold", []byte("block"))
		testRecv(t, entered)

		b := dial(t, srv)
		start := time.Now()
		b.expect("hold", nil, codec.StatusHandlerError, []byte("server busy"))
		if el := time.Since(start); el < qt {
			t.Errorf("busy after %v, before the queue timeout %v", el, qt)
		}
		v := dialV1(t, srv, nil)
		v.expectV1("hold", nil, codec.StatusBusy, []byte("server busy"))
		b.expect("echo", []byte("others run"), codec.StatusOK, nil)
		close(release)
		if f := a.recv(); f.Status != codec.StatusOK {
			t.Fatalf("held request: status %d", f.Status)
		}
		b.expect("hold", nil, codec.StatusOK, []byte("held"))
		v.expectV1("hold", nil, codec.StatusOK, []byte("held"))
		if st := srv.Stats(); st.Busy != 2 || st.ByStatus["503"] != 1 {
			t.Errorf("Busy %d, ByStatus %v; want 2 busy, one 503", st.Busy, st.ByStatus)
		}
		if n := ran.Load(); n != 3 {
			t.Errorf("handler ran %d times, want 3 (busy requests must not run)", n)
		}
	})
}

// A request waiting for a slot gets it when one frees within the queue
// timeout.
func TestMaxConcurrentWaits(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("the held slot needs a handler that blocks")
		}
		entered := make(chan struct{}, 4)
		release := make(chan struct{})
		hold := func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
			if string(req.Payload) == "block" {
				entered <- struct{}{}
				<-release
			}
			return 200, req.Payload, nil
		}
		srv := e.listen(t, engine.Config{QueueTimeout: -1,
			Handlers:       map[string]engine.Handler{"hold": hold},
			HandlerOptions: map[string]engine.HandlerOptions{"hold": {MaxConcurrent: 1}}})
		a := dial(t, srv)
		a.send("hold", []byte("block"))
		testRecv(t, entered)
		b := dial(t, srv)
		b.send("hold", []byte("waited"))
		close(release)
		a.recv()
		if f := b.recv(); f.Status != codec.StatusOK || string(f.Payload) != "waited" {
			t.Fatalf("waiting request: status %d %q", f.Status, f.Payload)
		}
	})
}

func testRecv(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(ioTimeout):
		t.Fatal("handler did not start")
	}
}

// A handler's Timeout overrides the server's: shorter, or none.
func TestHandlerOptionsTimeout(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		sleepy := func(context.Context, *engine.Request) (uint16, []byte, error) {
			time.Sleep(80 * time.Millisecond) // the work
			return 200, []byte("done"), nil
		}
		srv := e.listen(t, engine.Config{HandlerTimeout: 30 * time.Millisecond,
			Handlers: map[string]engine.Handler{"default": sleepy, "none": sleepy, "longer": sleepy},
			HandlerOptions: map[string]engine.HandlerOptions{
				"none":   {Timeout: -1},
				"longer": {Timeout: 10 * time.Second},
			}})
		c := dial(t, srv)
		c.expect("default", nil, codec.StatusHandlerError, []byte("handler timeout"))
		c.expect("none", nil, codec.StatusOK, []byte("done"))
		c.expect("longer", nil, codec.StatusOK, []byte("done"))
	})
}

// Handler options are validated where they are given.
func TestHandlerOptionsErrors(t *testing.T) {
	h := testHandlers()["echo"]
	_, err := engine.Listen(engine.Config{Addr: "127.0.0.1:0", IgnoreSignals: true, Handlers: map[string]engine.Handler{"echo": h},
		HandlerOptions: map[string]engine.HandlerOptions{"ehco": {}}})
	if !errors.Is(err, engine.ErrConfig) {
		t.Errorf("options for an unknown handler: %v", err)
	}
	_, err = engine.Listen(engine.Config{Addr: "127.0.0.1:0", IgnoreSignals: true, Handlers: map[string]engine.Handler{"echo": h},
		HandlerOptions: map[string]engine.HandlerOptions{"echo": {MaxConcurrent: -1}}})
	if !errors.Is(err, engine.ErrConfig) {
		t.Errorf("negative MaxConcurrent in Config: %v", err)
	}
	srv := listen(t, engine.Config{Addr: "127.0.0.1:0"})
	if err := srv.Handle("x", h, engine.HandlerOptions{MaxConcurrent: -1}); !errors.Is(err, engine.ErrBadOptions) {
		t.Errorf("Handle with negative MaxConcurrent: %v", err)
	}
	if err := srv.Handle("x", h, engine.HandlerOptions{MaxConcurrent: 2, Timeout: time.Second}); err != nil {
		t.Errorf("Handle with options: %v", err)
	}
}

// A version-1 request answered busy because no worker took it in time
// (the reactor pool's queue, and its refusal on the loop while too many
// timed-out handlers run) uses up its seq like any other: the next
// request, one more, is served, and the busy one sent again is a replay.
// (The pool answered busy without the sequence check, so the next
// request was refused out of sequence, and a replay served.)
func TestBusyKeepsSequence(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		for _, key := range [][]byte{nil, v1key} {
			t.Run(network+"/"+keyName(key), func(t *testing.T) {
				t.Parallel()
				e := env{variants[0], network} // the pool: only it queues for workers
				entered := make(chan struct{}, 4)
				release := make(chan struct{})
				hold := func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
					if string(req.Payload) == "block" {
						entered <- struct{}{}
						select {
						case <-release:
						case <-ctx.Done():
						}
					}
					return 200, []byte("held"), nil
				}
				srv := e.listen(t, engine.Config{Workers: 1, QueueTimeout: 50 * time.Millisecond, HMACKey: key,
					Handlers: map[string]engine.Handler{"hold": hold, "echo": testHandlers()["echo"]}})
				// Two held requests: the worker's, and one the pool's
				// overflow runs when no worker is free to drain it.
				var held []*v1client
				for range 2 {
					a := dialV1(t, srv, key)
					if _, err := a.sendV1("hold", []byte("block")); err != nil {
						t.Fatal(err)
					}
					testRecv(t, entered)
					held = append(held, a)
				}
				v := dialV1(t, srv, key)
				v.expectV1("hold", nil, codec.StatusBusy, []byte("server busy"))
				busy := v.last
				close(release)
				for _, a := range held {
					if f, err := a.recvV1(); err != nil || f.Status != codec.StatusOK {
						t.Fatalf("held request: %+v, %v", f, err)
					}
				}
				v.expectV1("echo", []byte("next"), codec.StatusOK, []byte("next"))
				if err := v.writeRaw(busy); err != nil {
					t.Fatal(err)
				}
				want := codec.StatusReadError
				if key != nil {
					want = codec.StatusBadMAC
				}
				if f, err := v.recvV1(); err != nil || f.Status != want {
					t.Fatalf("the busy request replayed: %+v, %v; want %d", f, err, want)
				}
			})
		}
	}
}
