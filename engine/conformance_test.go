package engine_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// The conformance suite: every test here runs against every engine variant
// over TCP and a Unix socket, with real sockets.

func TestProtoCheck(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		c.expect(codec.ProtoCheck, []byte{codec.ProtocolVersion}, codec.StatusOK, []byte{0})
		c.expect("echo", []byte("after protocheck"), codec.StatusOK, []byte("after protocheck"))

		// Malformed payloads (a version-1 one without its nonce, an empty
		// one, a version-0 one too long) and unknown versions: 497 with
		// the highest version spoken (1), then closed.
		for _, p := range [][]byte{{1}, {}, {0, 0}, {2}, {9, 1, 2}} {
			c := dial(t, srv)
			c.expect(codec.ProtoCheck, p, codec.StatusVersionMismatch, []byte{codec.ProtocolV1})
			c.expectClosed()
		}
	})
}

func TestStatuses(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		c.expect("echo", []byte("hello"), codec.StatusOK, []byte("hello"))
		c.expect("echo", nil, codec.StatusOK, []byte{})
		c.expect("name", nil, codec.StatusOK, []byte("name"))
		// Handlers choose any status; 0 means 200; library codes do not
		// make the server close the connection when a handler returns
		// them... except the ones that close by definition.
		c.expect("status", []byte("0"), codec.StatusOK, []byte("0"))
		// On a version-0 session a code the original client's table lacks
		// is sent as 500 with the handler's payload; codes above 1024 pass.
		c.expect("status", []byte("201"), codec.StatusHandlerError, []byte("201"))
		c.expect("status", []byte("402"), codec.StatusPayloadTooLarge, []byte("402"))
		c.expect("status", []byte("1025"), 1025, []byte("1025"))
		c.expect("status", []byte("65535"), 65535, []byte("65535"))
		// 400: no handler; the connection stays open.
		c.expect("nope", []byte("x"), codec.StatusNoHandler, nil)
		c.expect("ECHO", nil, codec.StatusNoHandler, nil)
		// 401: empty request text; stays open.
		c.expect("", []byte("x"), codec.StatusEmptyRequest, nil)
		// 500: handler error and panic; stays open, error text not sent.
		f := c.expect("fail", nil, codec.StatusHandlerError, nil)
		if bytes.Contains(f.Payload, []byte("asked")) {
			t.Errorf("500 answer leaks the error text: %q", f.Payload)
		}
		c.expect("panic", nil, codec.StatusHandlerError, nil)
		c.expect("echo", []byte("still open"), codec.StatusOK, []byte("still open"))
	})
}

// A request's status field is ignored whatever it holds (the original
// client sends the previous answer's status).
func TestRequestStatusIgnored(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		for i, st := range []codec.Status{200, 400, 497, 502, 599, 0xFFFF, 1} {
			seq := uint32(100 + i)
			if err := c.writeRaw(c.encode(nil, codec.Frame{Status: st, Seq: seq, Request: []byte("echo"), Payload: []byte("p")})); err != nil {
				t.Fatal(err)
			}
			f := c.recv()
			if f.Status != codec.StatusOK || f.Seq != seq || string(f.Payload) != "p" {
				t.Fatalf("request status %d: answer status %d seq %d payload %q", st, f.Status, f.Seq, f.Payload)
			}
		}
	})
}

// 402 is answered from the header and request text alone, without the
// client sending the body, and then the connection is closed.
func TestPayloadTooLarge(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxPayload: 1024})
		c := dial(t, srv)
		c.expect("echo", bytes.Repeat([]byte("a"), 1024), codec.StatusOK, bytes.Repeat([]byte("a"), 1024))

		var hdr [codec.HeaderLen]byte
		if err := codec.PutHeader(hdr[:], 0, 77, 4, 1025); err != nil {
			t.Fatal(err)
		}
		// The header and the request text, none of the payload: the
		// answer echoes the request text.
		if err := c.writeRaw(append(hdr[:], "echo"...)); err != nil {
			t.Fatal(err)
		}
		f := c.recv()
		if f.Status != codec.StatusPayloadTooLarge || f.Seq != 77 || string(f.Request) != "echo" || string(f.Payload) != "1025 > 1024" {
			t.Fatalf("got status %d seq %d request %q payload %q, want 402 seq 77 \"echo\" %q", f.Status, f.Seq, f.Request, f.Payload, "1025 > 1024")
		}
		c.expectClosed()

		// The default limit is 4 MiB; a 4 GiB declaration is refused
		// without the server trying to allocate it.
		srv2 := e.listen(t, engine.Config{})
		c2 := dial(t, srv2)
		binary.LittleEndian.PutUint32(hdr[7:], 0xFFFFFFFF)
		hdr[6] = 0
		if err := c2.writeRaw(hdr[:]); err != nil {
			t.Fatal(err)
		}
		f = c2.recv()
		if f.Status != codec.StatusPayloadTooLarge || string(f.Payload) != fmt.Sprintf("%d > %d", uint32(0xFFFFFFFF), codec.DefaultMaxPayload) {
			t.Fatalf("got status %d payload %q", f.Status, f.Payload)
		}
		c2.expectClosed()
	})
}

// A frame arriving one byte at a time, and a frame split at every point
// of its header and payload, are decoded.
func TestByteAtATime(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		payload := []byte("one byte at a time, please")
		wire := c.encode(nil, codec.Frame{Seq: 9, Request: []byte("echo"), Payload: payload})
		for i := range wire {
			if err := c.writeRaw(wire[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
		f := c.recv()
		if f.Status != codec.StatusOK || f.Seq != 9 || !bytes.Equal(f.Payload, payload) {
			t.Fatalf("got status %d seq %d payload %q", f.Status, f.Seq, f.Payload)
		}
		// Two frames split across writes at an odd point.
		two := c.encode(nil, codec.Frame{Seq: 10, Request: []byte("echo"), Payload: []byte("first")})
		two = c.encode(two, codec.Frame{Seq: 11, Request: []byte("echo"), Payload: []byte("second")})
		for _, cut := range []int{3, 13, len(two) - 5} {
			if err := c.writeRaw(two[:cut]); err != nil {
				t.Fatal(err)
			}
			if err := c.writeRaw(two[cut:]); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"first", "second"} {
				if f := c.recv(); string(f.Payload) != want {
					t.Fatalf("cut %d: got %q, want %q", cut, f.Payload, want)
				}
			}
		}
		// A large payload, in pieces.
		big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
		wire = c.encode(nil, codec.Frame{Seq: 12, Request: []byte("echo"), Payload: big})
		for off := 0; off < len(wire); off += 100_003 {
			if err := c.writeRaw(wire[off:min(off+100_003, len(wire))]); err != nil {
				t.Fatal(err)
			}
		}
		if f := c.recv(); f.Seq != 12 || !bytes.Equal(f.Payload, big) {
			t.Fatalf("1 MiB echo: seq %d, %d bytes back", f.Seq, len(f.Payload))
		}
	})
}

// 64 frames sent in one write are answered one by one, in order.
func TestPipelined(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		const n = 64
		var wire []byte
		reqs := []string{"echo", "nope", "fail", "echo", "", "name", "panic", "echo"}
		for i := range n {
			wire = c.encode(wire, codec.Frame{Seq: uint32(1000 + i), Request: []byte(reqs[i%len(reqs)]),
				Payload: bytes.Repeat([]byte{byte(i)}, i*37)})
		}
		if err := c.writeRaw(wire); err != nil {
			t.Fatal(err)
		}
		want := map[string]codec.Status{"echo": 200, "nope": 400, "fail": 500, "": 401, "name": 200, "panic": 500}
		for i := range n {
			f := c.recv()
			req := reqs[i%len(reqs)]
			if f.Seq != uint32(1000+i) || string(f.Request) != req || f.Status != want[req] {
				t.Fatalf("answer %d: seq %d %q status %d, want seq %d %q status %d", i, f.Seq, f.Request, f.Status, 1000+i, req, want[req])
			}
			if req == "echo" && !bytes.Equal(f.Payload, bytes.Repeat([]byte{byte(i)}, i*37)) {
				t.Fatalf("answer %d: wrong payload (%d bytes)", i, len(f.Payload))
			}
		}
		c.expect("echo", []byte("done"), codec.StatusOK, []byte("done"))
	})
}

func TestHMAC(t *testing.T) {
	key := []byte("the shared secret")
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{HMACKey: key})
		c := dial(t, srv).withMAC(key)
		c.expect(codec.ProtoCheck, []byte{0}, codec.StatusOK, []byte{0})
		// recv verifies the MAC of every answer.
		c.expect("echo", []byte("signed"), codec.StatusOK, []byte("signed"))
		c.expect("echo", nil, codec.StatusOK, []byte{})
		c.expect("nope", nil, codec.StatusNoHandler, nil)

		// A wrong MAC: 502 (signed), then the server closes.
		bad := dial(t, srv).withMAC(key)
		wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 5, Request: []byte("echo"), Payload: []byte("tampered")}, nil)
		wire = append(wire, codec.NewMAC([]byte("wrong key")).AppendSign(nil, []byte("tampered"))...)
		if err := bad.writeRaw(wire); err != nil {
			t.Fatal(err)
		}
		f := bad.recv()
		if f.Status != codec.StatusBadMAC || f.Seq != 5 {
			t.Fatalf("bad MAC: status %d seq %d, want 502 seq 5", f.Status, f.Seq)
		}
		bad.expectClosed()

		// A missing MAC: the next frame's bytes are taken for it.
		missing := dial(t, srv).withMAC(key)
		wire, _ = codec.AppendFrame(nil, codec.Frame{Seq: 6, Request: []byte("echo"), Payload: []byte("unsigned")}, nil)
		wire, _ = codec.AppendFrame(wire, codec.Frame{Seq: 7, Request: []byte("echo"), Payload: bytes.Repeat([]byte("u"), 50)}, nil)
		if err := missing.writeRaw(wire); err != nil {
			t.Fatal(err)
		}
		if f := missing.recv(); f.Status != codec.StatusBadMAC || f.Seq != 6 {
			t.Fatalf("missing MAC: status %d seq %d, want 502 seq 6", f.Status, f.Seq)
		}
		missing.expectClosed()

		// 402 answers are signed too.
		var hdr [codec.HeaderLen]byte
		codec.PutHeader(hdr[:], 0, 8, 4, codec.DefaultMaxPayload+1)
		big := dial(t, srv).withMAC(key)
		if err := big.writeRaw(append(hdr[:], "echo"...)); err != nil {
			t.Fatal(err)
		}
		if f := big.recv(); f.Status != codec.StatusPayloadTooLarge || string(f.Request) != "echo" {
			t.Fatalf("402 with HMAC: status %d request %q", f.Status, f.Request)
		}
		big.expectClosed()
	})
}

// Handlers registered while the server runs are served at once, and
// replace older ones.
func TestHandleWhileServing(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		c.expect("late", nil, codec.StatusNoHandler, nil)
		if err := srv.Handle("late", func(context.Context, *engine.Request) (uint16, []byte, error) {
			return 200, []byte("v1"), nil
		}); err != nil {
			t.Fatal(err)
		}
		c.expect("late", nil, codec.StatusOK, []byte("v1"))
		srv.Handle("late", engine.Classic(func([]byte) (uint16, []byte, error) { return 1201, []byte("v2"), nil }))
		c.expect("late", nil, 1201, []byte("v2"))
		for _, name := range []string{"", codec.ProtoCheck, string(bytes.Repeat([]byte("n"), 256))} {
			if err := srv.Handle(name, testHandlers()["echo"]); err == nil {
				t.Errorf("Handle(%.10q) succeeded", name)
			}
		}
		if err := srv.Handle("nil", nil); err == nil {
			t.Error("Handle with a nil handler succeeded")
		}
		c.expect(codec.ProtoCheck, []byte{0}, codec.StatusOK, []byte{0})
	})
}

// Middleware wraps every handler, the first element outermost, including
// handlers registered later.
func TestMiddlewareOrder(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		mark := func(tag string) engine.Middleware {
			return func(next engine.Handler) engine.Handler {
				return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
					st, p, err := next(ctx, req)
					return st, []byte(tag + "(" + string(p) + ")"), err
				}
			}
		}
		srv := e.listen(t, engine.Config{Middleware: []engine.Middleware{mark("outer"), mark("inner")}})
		c := dial(t, srv)
		c.expect("echo", []byte("x"), codec.StatusOK, []byte("outer(inner(x))"))
		srv.Handle("added", testHandlers()["name"])
		c.expect("added", nil, codec.StatusOK, []byte("outer(inner(added))"))
		// Built-in answers bypass middleware.
		c.expect(codec.ProtoCheck, []byte{0}, codec.StatusOK, []byte{0})
		c.expect("nope", nil, codec.StatusNoHandler, nil)
	})
}

func TestClassic(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"upper": engine.Classic(func(p []byte) (uint16, []byte, error) { return 200, bytes.ToUpper(p), nil }),
			"err":   engine.Classic(func([]byte) (uint16, []byte, error) { return 0, nil, fmt.Errorf("no") }),
			"zero":  engine.Classic(func([]byte) (uint16, []byte, error) { return 0, []byte("z"), nil }),
		}})
		c := dial(t, srv)
		c.expect("upper", []byte("shout"), codec.StatusOK, []byte("SHOUT"))
		c.expect("err", nil, codec.StatusHandlerError, nil)
		c.expect("zero", nil, codec.StatusOK, []byte("z"))
	})
}

// ConnInfo describes the connection: IDs unique, addresses set, peer
// credentials on Unix sockets.
func TestConnInfo(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"info": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				ci := req.Conn
				s := fmt.Sprintf("%d|%v|%v|", ci.ID, ci.LocalAddr != nil, ci.RemoteAddr != nil)
				if ci.PeerCred != nil {
					s += fmt.Sprintf("%d", ci.PeerCred.PID)
				}
				return 200, []byte(s), nil
			},
		}})
		seen := map[string]bool{}
		for range 3 {
			c := dial(t, srv)
			f := c.expect("info", nil, codec.StatusOK, nil)
			parts := bytes.Split(f.Payload, []byte("|"))
			if string(parts[1]) != "true" || string(parts[2]) != "true" {
				t.Errorf("addresses missing: %q", f.Payload)
			}
			if seen[string(parts[0])] {
				t.Errorf("connection ID %s reused", parts[0])
			}
			seen[string(parts[0])] = true
			wantCred := ""
			if e.network == "unix" {
				wantCred = strconv.Itoa(syscall.Getpid())
			}
			if string(parts[3]) != wantCred {
				t.Errorf("peer PID %q, want %q", parts[3], wantCred)
			}
			// Same ID for every request on one connection.
			if f2 := c.expect("info", nil, codec.StatusOK, nil); !bytes.Equal(f2.Payload, f.Payload) {
				t.Errorf("info changed within a connection: %q then %q", f.Payload, f2.Payload)
			}
		}
	})
}

// A handler's context is cancelled when its client disconnects.
func TestContextCancelledOnDisconnect(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("inline handlers run on the event loop and must not block")
		}
		started := make(chan struct{}, 1)
		cancelled := make(chan error, 1)
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"wait": func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
				started <- struct{}{}
				select {
				case <-ctx.Done():
					cancelled <- ctx.Err()
				case <-time.After(ioTimeout):
					cancelled <- fmt.Errorf("context not cancelled after %v", ioTimeout)
				}
				return 200, nil, nil
			},
			"echo": testHandlers()["echo"],
		}})
		c := dial(t, srv)
		c.send("wait", nil)
		testnet.RecvOrFail(t, started, ioTimeout, "handler start")
		c.close()
		if err := testnet.RecvOrFail(t, cancelled, 2*ioTimeout, "handler end"); err != context.Canceled {
			t.Fatalf("handler context: %v, want context.Canceled", err)
		}
		// The server goes on serving.
		dial(t, srv).expect("echo", []byte("next"), codec.StatusOK, []byte("next"))
	})
}

// HandlerTimeout answers 500 "handler timeout" on a version-0 session (504
// on version 1, see v1_test.go) and cancels the handler; the connection
// stays usable.
func TestHandlerTimeout(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("HandlerTimeout does not apply to inline handlers")
		}
		done := make(chan error, 1)
		srv := e.listen(t, engine.Config{HandlerTimeout: 100 * time.Millisecond, Handlers: map[string]engine.Handler{
			"stuck": func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
				<-ctx.Done()
				// The late result, and a late use of the request, must do
				// no harm.
				_ = bytes.Clone(req.Payload)
				done <- ctx.Err()
				return 200, []byte("late"), nil
			},
			"echo": testHandlers()["echo"],
		}})
		c := dial(t, srv)
		start := time.Now()
		c.expect("stuck", []byte("payload"), codec.StatusHandlerError, []byte("handler timeout"))
		if el := time.Since(start); el < 100*time.Millisecond {
			t.Errorf("timeout answer after %v, before the timeout", el)
		}
		if err := testnet.RecvOrFail(t, done, ioTimeout, "timed-out handler to return"); err != context.DeadlineExceeded {
			t.Errorf("timed-out handler's context: %v", err)
		}
		c.expect("echo", []byte("usable"), codec.StatusOK, []byte("usable"))
		// Pipelined behind a timed-out request.
		c.send("stuck", []byte("a"))
		c.send("echo", []byte("b"))
		if f := c.recv(); f.Status != codec.StatusHandlerError || string(f.Payload) != "handler timeout" {
			t.Fatalf("status %d payload %q, want 500 %q", f.Status, f.Payload, "handler timeout")
		}
		if f := c.recv(); f.Status != codec.StatusOK || string(f.Payload) != "b" {
			t.Fatalf("after the timeout: status %d payload %q", f.Status, f.Payload)
		}
		testnet.RecvOrFail(t, done, ioTimeout, "second timed-out handler to return")
		if st := srv.Stats(); st.ByStatus["500"] != 2 || st.ByStatus["503"] != 0 || st.ByStatus["504"] != 0 {
			t.Errorf("ByStatus = %v, want two 500", st.ByStatus)
		}
	})
}

// A timed-out request is answered for its own connection: the reactor
// pool hands one pooled exchange to many connections in turn, and the
// timer once kept the first one's session, so a version 0 client could be
// sent version 1's 504 (which the original client cannot read) and a
// version 1 client 500.
func TestHandlerTimeoutAcrossConnections(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("HandlerTimeout does not apply to inline handlers")
		}
		returned := make(chan struct{}, 1)
		srv := e.listen(t, engine.Config{HandlerTimeout: 50 * time.Millisecond, Handlers: map[string]engine.Handler{
			"stuck": func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
				<-ctx.Done()
				returned <- struct{}{}
				return 200, nil, nil
			},
			"echo": testHandlers()["echo"],
		}})
		v0 := dial(t, srv)
		v1 := dialV1(t, srv, nil)
		const rounds = 4
		// Each connection times out on the exchange (and timer) the other
		// one has just used: a timed-out exchange stays with its handler,
		// so each echo takes a fresh one, which the pool hands on next.
		for i := 0; i < rounds; i++ {
			v1.expectV1("echo", []byte("v1"), codec.StatusOK, []byte("v1"))
			v0.expect("stuck", nil, codec.StatusHandlerError, []byte("handler timeout"))
			testnet.RecvOrFail(t, returned, ioTimeout, "version 0 handler to return")
			v0.expect("echo", []byte("v0"), codec.StatusOK, []byte("v0"))
			v1.expectV1("stuck", nil, codec.StatusHandlerTimeout, []byte("handler timeout"))
			testnet.RecvOrFail(t, returned, ioTimeout, "version 1 handler to return")
		}
		if st := srv.Stats(); st.ByStatus["500"] != rounds || st.ByStatus["504"] != rounds {
			t.Errorf("ByStatus = %v, want %d of 500 and of 504", st.ByStatus, rounds)
		}
	})
}

func TestStats(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxPayload: 100})
		c := dial(t, srv)
		c.expect("echo", []byte("12345"), codec.StatusOK, nil)
		c.expect("echo", nil, codec.StatusOK, nil)
		c.expect("nope", nil, codec.StatusNoHandler, nil)
		c.expect("", nil, codec.StatusEmptyRequest, nil)
		c.expect("fail", nil, codec.StatusHandlerError, nil)
		c.expect("status", []byte("2000"), 2000, nil)
		st := srv.Stats()
		if st.OpenConns != 1 || st.TotalConns != 1 || st.Requests != 6 || st.Refused != 0 {
			t.Errorf("stats %+v, want 1 open, 1 total, 6 requests", st)
		}
		for k, want := range map[string]uint64{"200": 2, "400": 1, "401": 1, "500": 1, "other": 1} {
			if st.ByStatus[k] != want {
				t.Errorf("ByStatus[%s] = %d, want %d (%v)", k, st.ByStatus[k], want, st.ByStatus)
			}
		}
		if st.BytesIn == 0 || st.BytesOut == 0 {
			t.Errorf("bytes in %d out %d", st.BytesIn, st.BytesOut)
		}
		c2 := dial(t, srv)
		var hdr [codec.HeaderLen]byte
		codec.PutHeader(hdr[:], 0, 1, 4, 101)
		c2.writeRaw(append(hdr[:], "echo"...))
		c2.recv()
		c2.expectClosed()
		c.close()
		testnet.WaitFor(t, ioTimeout, "connections to close", func() bool { return srv.Stats().OpenConns == 0 })
		st = srv.Stats()
		if st.TotalConns != 2 || st.Requests != 7 || st.ByStatus["402"] != 1 {
			t.Errorf("stats %+v, want 2 total, 7 requests, one 402", st)
		}
	})
}

// MaxConns refuses connections beyond the limit, counting them, and
// accepts again once one closes.
func TestMaxConns(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxConns: 2})
		a, b := dial(t, srv), dial(t, srv)
		a.expect("echo", []byte("a"), codec.StatusOK, nil)
		b.expect("echo", []byte("b"), codec.StatusOK, nil)
		over := dial(t, srv)
		if _, err := over.sendErr("echo", []byte("over")); err != nil && !testnet.IsClosed(err) {
			t.Fatal(err)
		}
		over.expectClosed()
		if st := srv.Stats(); st.Refused != 1 || st.OpenConns != 2 {
			t.Errorf("stats %+v, want 1 refused, 2 open", st)
		}
		a.close()
		testnet.WaitFor(t, ioTimeout, "a to close", func() bool { return srv.Stats().OpenConns == 1 })
		dial(t, srv).expect("echo", []byte("again"), codec.StatusOK, []byte("again"))
		b.expect("echo", []byte("b"), codec.StatusOK, nil)
	})
}

func TestReadTimeout(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		const rt = 200 * time.Millisecond
		srv := e.listen(t, engine.Config{ReadTimeout: rt, IdleTimeout: time.Minute})
		wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("partial frame")}, nil)
		// Cut inside the header, and inside the payload.
		for _, cut := range []int{5, codec.HeaderLen + 6} {
			c := dial(t, srv)
			c.expect("echo", nil, codec.StatusOK, nil) // idle time first: not a read timeout
			start := time.Now()
			if err := c.writeRaw(wire[:cut]); err != nil {
				t.Fatal(err)
			}
			c.expectClosed()
			if el := time.Since(start); el < rt*3/4 {
				t.Errorf("cut at %d: closed after %v, before the read timeout %v", cut, el, rt)
			}
		}
		// A frame that keeps arriving within the timeout is fine... as long
		// as the whole of it is there within the timeout.
		c := dial(t, srv)
		c.expect("echo", []byte("alive"), codec.StatusOK, []byte("alive"))
	})
}

// The read timeout runs from a frame's first byte: a peer trickling bytes,
// each well within the timeout, is closed once the frame has taken longer
// than the timeout in all.
func TestReadTimeoutTrickle(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		const rt = 300 * time.Millisecond
		srv := e.listen(t, engine.Config{ReadTimeout: rt, IdleTimeout: time.Minute})
		c := dial(t, srv)
		wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: bytes.Repeat([]byte("x"), 100)}, nil)
		start := time.Now()
		if err := c.writeRaw(wire[:codec.HeaderLen]); err != nil {
			t.Fatal(err)
		}
		var err error
		for i := codec.HeaderLen; i < len(wire) && err == nil && time.Since(start) < 5*rt; i++ {
			time.Sleep(rt / 5) // pacing the trickle, not synchronising
			err = c.writeRaw(wire[i : i+1])
		}
		if err == nil {
			err = c.closedErr()
		} else if testnet.IsClosed(err) {
			err = nil // closed while we were still writing
		}
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 3*rt {
			t.Errorf("trickling peer closed after %v, read timeout %v", el, rt)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		const it = 300 * time.Millisecond
		srv := e.listen(t, engine.Config{IdleTimeout: it})
		// Busy connections are not idle: requests every 50 ms for 3×it.
		busy := dial(t, srv)
		var start time.Time
		for first := time.Now(); time.Since(first) < 3*it; {
			time.Sleep(50 * time.Millisecond) // pacing the client, not synchronising
			busy.expect("echo", []byte("x"), codec.StatusOK, nil)
			start = time.Now()
		}
		busy.expectClosed()
		if el := time.Since(start); el < it*3/4 {
			t.Errorf("closed after %v idle, before the idle timeout %v", el, it)
		}
		// A connection that never sends anything.
		silent := dial(t, srv)
		silent.expectClosed()
		testnet.WaitFor(t, ioTimeout, "connections to close", func() bool { return srv.Stats().OpenConns == 0 })
	})
}

// A handler running longer than the timeouts does not get its connection
// closed.
func TestSlowHandlerNotTimedOut(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("inline handlers must not block")
		}
		srv := e.listen(t, engine.Config{ReadTimeout: 50 * time.Millisecond, IdleTimeout: 50 * time.Millisecond,
			Handlers: map[string]engine.Handler{
				"slow": func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
					select {
					case <-time.After(300 * time.Millisecond):
						return 200, []byte("slow"), nil
					case <-ctx.Done():
						return 0, nil, ctx.Err()
					}
				},
			}})
		dial(t, srv).expect("slow", nil, codec.StatusOK, []byte("slow"))
	})
}

// Graceful shutdown answers every request in flight, closes idle
// connections, refuses new ones and returns when all are closed.
func TestShutdownInFlight(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("inline handlers must not block")
		}
		const n = 8
		started := make(chan struct{}, n)
		release := make(chan struct{})
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"slow": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				started <- struct{}{}
				<-release
				return 200, req.Payload, nil
			},
		}})
		releaseAll := sync.OnceFunc(func() { close(release) })
		t.Cleanup(releaseAll) // before srv.Close, should the test fail early
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = dial(t, srv)
			clients[i].send("slow", []byte(strconv.Itoa(i)))
		}
		idle := dial(t, srv)
		idle.expect(codec.ProtoCheck, []byte{0}, codec.StatusOK, nil)
		for range n {
			testnet.RecvOrFail(t, started, ioTimeout, "handlers to start")
		}
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(context.Background()) }()
		// The idle connection is closed while requests are in flight.
		idle.expectClosed()
		testnet.WaitFor(t, ioTimeout, "the server to drain", func() bool {
			select {
			case <-shut:
				t.Fatal("Shutdown returned with requests in flight")
			default:
			}
			return srv.Stats().OpenConns == n
		})
		// New connections are refused (or cannot connect at all).
		if late, err := dialErr(t, srv); err == nil {
			if err := late.writeRaw(late.encode(nil, codec.Frame{Seq: 1, Request: []byte("echo")})); err == nil {
				if err := late.closedErr(); err != nil {
					t.Errorf("connection during shutdown: %v", err)
				}
			}
		}
		releaseAll()
		for i, c := range clients {
			f := c.recv()
			if f.Status != codec.StatusOK || string(f.Payload) != strconv.Itoa(i) {
				t.Errorf("client %d: status %d payload %q", i, f.Status, f.Payload)
			}
			c.expectClosed()
		}
		if err := testnet.RecvOrFail(t, shut, ioTimeout, "Shutdown"); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := srv.Err(); err != engine.ErrServerClosed {
			t.Errorf("Err() = %v, want ErrServerClosed", err)
		}
		if st := srv.Stats(); st.OpenConns != 0 {
			t.Errorf("%d connections open after Shutdown", st.OpenConns)
		}
	})
}

// Shutdown whose context ends first closes what is left, cancelling
// handlers, and returns the context's error.
func TestShutdownTimeout(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("inline handlers must not block")
		}
		started := make(chan struct{}, 1)
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"stuck": func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
				started <- struct{}{}
				<-ctx.Done()
				return 0, nil, ctx.Err()
			},
		}})
		c := dial(t, srv)
		c.send("stuck", nil)
		testnet.RecvOrFail(t, started, ioTimeout, "handler start")
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, engine.ErrDrainCut) {
			t.Errorf("Shutdown = %v, want DeadlineExceeded and ErrDrainCut", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("Shutdown took %v", el)
		}
		if err := c.closedErr(); err != nil {
			t.Error(err)
		}
		if err := srv.Wait(); !errors.Is(err, engine.ErrServerClosed) || !errors.Is(err, engine.ErrDrainCut) {
			t.Errorf("Wait = %v", err)
		}
	})
}

func TestStopTwice(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		if err := srv.Err(); err != nil {
			t.Fatalf("Err() = %v while running", err)
		}
		select {
		case <-srv.Done():
			t.Fatal("Done closed while running")
		default:
		}
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := srv.Shutdown(context.Background()); err != net.ErrClosed {
			t.Errorf("second Shutdown = %v, want net.ErrClosed", err)
		}
		if err := srv.Close(); err != net.ErrClosed {
			t.Errorf("Close after Shutdown = %v, want net.ErrClosed", err)
		}
		if err := srv.Wait(); err != engine.ErrServerClosed {
			t.Errorf("Wait = %v", err)
		}
		<-srv.Done()

		srv2 := e.listen(t, engine.Config{})
		if err := srv2.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := srv2.Close(); err != net.ErrClosed {
			t.Errorf("second Close = %v, want net.ErrClosed", err)
		}
		if err := srv2.Shutdown(context.Background()); err != net.ErrClosed {
			t.Errorf("Shutdown after Close = %v, want net.ErrClosed", err)
		}
		if err := srv2.Err(); err != engine.ErrServerClosed {
			t.Errorf("Err = %v", err)
		}
		if _, err := dialErr(t, srv2); err == nil && e.network == "unix" {
			t.Error("dialled a closed server's socket")
		}
	})
}

// Close under load returns promptly, with handlers blocked on their
// context and clients hammering the server.
func TestCloseUnderLoad(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		h := testHandlers()
		if e.blocking() {
			h["wait"] = func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
				<-ctx.Done()
				return 0, nil, ctx.Err()
			}
		}
		srv := e.listen(t, engine.Config{Handlers: h})
		const n = 32
		var wg sync.WaitGroup
		busy := make(chan struct{}, n)
		for i := range n {
			c := dial(t, srv)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%4 == 0 && e.blocking() {
					c.sendErr("wait", nil)
					busy <- struct{}{}
					c.recvErr()
					return
				}
				for j := 0; ; j++ {
					p := []byte(fmt.Sprint(i, j))
					f, err := c.callErr("echo", p)
					if err != nil {
						return
					}
					if !bytes.Equal(f.Payload, p) {
						t.Errorf("client %d: echo %q came back %q", i, p, f.Payload)
						return
					}
					if j == 10 {
						busy <- struct{}{}
					}
				}
			}()
		}
		for range n {
			testnet.RecvOrFail(t, busy, ioTimeout, "clients to get busy")
		}
		start := time.Now()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("Close took %v under load", el)
		}
		wg.Wait()
	})
}

// A peer that closes while its request is being handled: the answer must
// never reach another client, even one that got the same file descriptor.
func TestPeerClosesMidRequest(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("inline handlers must not block")
		}
		started := make(chan struct{}, 1)
		release := make(chan struct{})
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"slow": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				started <- struct{}{}
				<-release // ignores its context on purpose
				return 200, []byte("for A only"), nil
			},
			"echo": testHandlers()["echo"],
		}})
		t.Cleanup(func() { close(release) }) // before srv.Close
		// A's connection lives until its answer is written (it may only
		// have half-closed), on every engine.
		const stillOpen = 1
		for round := range 3 {
			a := dial(t, srv)
			a.send("slow", []byte("from A"))
			testnet.RecvOrFail(t, started, ioTimeout, "handler start")
			a.close()
			testnet.WaitFor(t, ioTimeout, "A's close to reach the server", func() bool { return srv.Stats().OpenConns == stillOpen })
			const nb = 8
			bs := make([]*client, nb)
			for i := range bs {
				bs[i] = dial(t, srv)
			}
			testnet.WaitFor(t, ioTimeout, "B connections to open", func() bool { return srv.Stats().OpenConns == nb+stillOpen })
			release <- struct{}{}
			for _, b := range bs {
				b.expectSilence(50 * time.Millisecond)
				b.expect("echo", []byte("B"), codec.StatusOK, []byte("B"))
			}
			for _, b := range bs {
				b.close()
			}
			testnet.WaitFor(t, ioTimeout, fmt.Sprint("round ", round, " connections to close"), func() bool { return srv.Stats().OpenConns == 0 })
		}
	})
}

// 1,000 connections at once, each checking its own answers.
func TestManyConnections(t *testing.T) {
	for _, v := range variants {
		for _, network := range []string{"tcp", "unix"} {
			e := env{v, network}
			t.Run(v.name+"/"+network, func(t *testing.T) {
				// Not parallel: 1,000 connections per server is enough on
				// two cores.
				srv := e.listen(t, engine.Config{})
				const conns, workers, rounds = 1000, 50, 3
				cs := make([]*client, conns)
				for i := range cs {
					cs[i] = dial(t, srv)
				}
				testnet.WaitFor(t, ioTimeout, "all connections to open", func() bool { return srv.Stats().OpenConns == conns })
				errs := make(chan error, workers)
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						mine := cs[w*conns/workers : (w+1)*conns/workers]
						for r := range rounds {
							// Send on all my connections, then read all the
							// answers, so every connection has a request in
							// flight at once.
							for i, c := range mine {
								if _, err := c.sendErr("echo", fmt.Appendf(nil, "w%d c%d r%d", w, i, r)); err != nil {
									errs <- err
									return
								}
							}
							for i, c := range mine {
								f, err := c.recvErr()
								if err == nil && (f.Status != codec.StatusOK || string(f.Payload) != fmt.Sprintf("w%d c%d r%d", w, i, r) || f.Seq != c.seq) {
									err = fmt.Errorf("w%d c%d r%d: got status %d seq %d (want %d) %q", w, i, r, f.Status, f.Seq, c.seq, f.Payload)
								}
								if err != nil {
									errs <- err
									return
								}
							}
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				if st := srv.Stats(); st.Requests != conns*rounds || st.TotalConns != conns {
					t.Errorf("stats: %d requests, %d connections", st.Requests, st.TotalConns)
				}
			})
		}
	}
}

// Two servers in one process, of every kind, are independent.
func TestTwoServers(t *testing.T) {
	for _, v1 := range variants {
		for _, v2 := range variants {
			t.Run(v1.name+"+"+v2.name, func(t *testing.T) {
				t.Parallel()
				e1, e2 := env{v1, "tcp"}, env{v2, "unix"}
				s1 := e1.listen(t, engine.Config{Handlers: map[string]engine.Handler{"who": engine.Classic(func([]byte) (uint16, []byte, error) { return 200, []byte("one"), nil })}})
				s2 := e2.listen(t, engine.Config{Handlers: map[string]engine.Handler{"who": engine.Classic(func([]byte) (uint16, []byte, error) { return 200, []byte("two"), nil })}})
				s3 := e1.listen(t, engine.Config{Handlers: map[string]engine.Handler{"who": engine.Classic(func([]byte) (uint16, []byte, error) { return 200, []byte("three"), nil })}})
				c1, c2, c3 := dial(t, s1), dial(t, s2), dial(t, s3)
				c1.expect("who", nil, codec.StatusOK, []byte("one"))
				c2.expect("who", nil, codec.StatusOK, []byte("two"))
				c3.expect("who", nil, codec.StatusOK, []byte("three"))
				if err := s1.Close(); err != nil {
					t.Fatal(err)
				}
				c1.expectClosed()
				c2.expect("who", nil, codec.StatusOK, []byte("two"))
				c3.expect("who", nil, codec.StatusOK, []byte("three"))
				if err := s2.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				c3.expect("who", nil, codec.StatusOK, []byte("three"))
				if s3.Err() != nil {
					t.Errorf("s3 stopped: %v", s3.Err())
				}
			})
		}
	}
}

// The log-only statuses: 100 (connected), 198 (disconnected) and 199
// (shutting down) are reported through the logger.
func TestLoggedStatuses(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		rec := &logRecorder{}
		srv := e.listen(t, engine.Config{Logger: slog.New(rec)})
		c := dial(t, srv)
		c.expect("echo", nil, codec.StatusOK, nil)
		c.close()
		testnet.WaitFor(t, ioTimeout, "the close", func() bool { return srv.Stats().OpenConns == 0 })
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, st := range []codec.Status{codec.StatusConnected, codec.StatusDisconnected, codec.StatusShuttingDown} {
			if !rec.has(st) {
				t.Errorf("status %d not logged; log:\n%s", st, rec)
			}
		}
	})
}

// The read timeout also runs from a frame's first byte while its header
// trickles in.
func TestReadTimeoutHeaderTrickle(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		const rt = 300 * time.Millisecond
		srv := e.listen(t, engine.Config{ReadTimeout: rt, IdleTimeout: time.Minute})
		c := dial(t, srv)
		wire, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo")}, nil)
		start := time.Now()
		var err error
		for i := 0; i < len(wire) && err == nil; i++ {
			err = c.writeRaw(wire[i : i+1])
			time.Sleep(rt / 4) // pacing the trickle, not synchronising
		}
		if err == nil {
			err = c.closedErr()
		} else if testnet.IsClosed(err) {
			err = nil
		}
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 3*rt {
			t.Errorf("trickling peer closed after %v, read timeout %v", el, rt)
		}
	})
}

// A worker pool much smaller than the number of busy connections: the
// requests that find it full queue, and every one is answered.
func TestSmallWorkerPool(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{Workers: 1})
		const conns, reqs = 16, 100
		errs := make(chan error, conns)
		var wg sync.WaitGroup
		for i := range conns {
			c := dial(t, srv)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range reqs {
					p := fmt.Appendf(nil, "%d/%d", i, j)
					f, err := c.callErr("echo", p)
					if err == nil && !bytes.Equal(f.Payload, p) {
						err = fmt.Errorf("echo %q came back %q", p, f.Payload)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}
