package interop_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/engine"
)

// The original client against our server, on every engine variant.

// The original's New runs PROTOCHECK with payload 0x00 and keeps the answer.
func TestOriginalClientProtoCheck(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		c := dialOriginal(t, srv.AddrString())
		expect(t, *c.Resp, 200, "PROTOCHECK", []byte{0})
	})
}

// Echoes of every byte value at sizes around the original's 128-byte read
// chunks and up to 100 KB (beyond about 160 KB the original corrupts
// payloads whoever its peer is: see TestOriginalDefectLargePayload), and
// of an empty payload, on one connection.
func TestOriginalClientEcho(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		c := dialOriginal(t, srv.AddrString())
		for _, n := range []int{0, 1, 127, 128, 129, 255, 256, 4095, 4096, 32 << 10, 64<<10 + 1, 100 << 10, 0} {
			p := pattern(n)
			expect(t, mustCall(t, c, "echo", p), 200, "echo", p)
		}
	})
}

func TestOriginalClientTime(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		c := dialOriginal(t, srv.AddrString())
		resp := mustCall(t, c, "time", nil)
		if resp.Status != 200 || resp.Req != "time" {
			t.Fatalf("time: status %d request %q", resp.Status, resp.Req)
		}
		ts, err := time.Parse(time.RFC3339, string(resp.Payload))
		if err != nil {
			t.Fatalf("time: payload %q: %v", resp.Payload, err)
		}
		if d := time.Since(ts); d < -time.Minute || d > time.Minute {
			t.Fatalf("time: %v is %v away from now", ts, d)
		}
	})
}

// 400, and the connection stays usable. The original client sends the
// previous answer's status (here 400) in its next request: the server must
// ignore it.
func TestOriginalClientUnknownRequest(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		c := dialOriginal(t, srv.AddrString())
		resp := mustCall(t, c, "nope", []byte("x"))
		if resp.Status != 400 || resp.Req != "nope" {
			t.Fatalf("unknown request: status %d request %q, want 400", resp.Status, resp.Req)
		}
		expect(t, mustCall(t, c, "echo", []byte("after 400")), 200, "echo", []byte("after 400"))
		expect(t, mustCall(t, c, "nope", nil), 400, "nope", resp.Payload)
		expect(t, mustCall(t, c, "echo", nil), 200, "echo", nil)
	})
}

// A handler's error and a handler's panic are answered 500. The original
// client takes it and quits (500 is of its "Error" level); the connection
// stays open on the server's side, as the protocol says, which a raw
// client checks on one connection.
func TestOriginalClientHandlerError(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		t.Run("original", func(t *testing.T) {
			for _, req := range []string{"fail", "panic"} {
				c := dialOriginal(t, srv.AddrString())
				if resp := mustCall(t, c, req, []byte("x")); resp.Status != 500 || resp.Req != req {
					t.Fatalf("%s: status %d request %q, want 500", req, resp.Status, resp.Req)
				}
				expectQuit(t, c)
			}
		})
		t.Run("raw", func(t *testing.T) {
			r := dialRaw(t, srv.AddrString())
			r.protoCheck()
			for i, req := range []string{"fail", "panic", "fail"} {
				seq := uint32(2 + 2*i)
				if f := r.roundTrip(seq, req, []byte("x")); f.status != 500 {
					t.Fatalf("%s: status %d, want 500", req, f.status)
				}
				r.expectUsable(seq + 1)
			}
		})
	})
}

// A handler returning an error together with a payload: the original
// server sends that payload with its 500, and so must engine.Classic.
func TestOriginalClientHandlerErrorPayload(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		c := dialOriginal(t, srv.AddrString())
		expect(t, mustCall(t, c, "failpayload", []byte("bob")), 500, "failpayload", []byte("no such user: bob"))
	})
}

// 50 original clients at once, each with several echoes on its connection.
func TestOriginalClientConcurrent(t *testing.T) {
	const clients, echoes = 50, 8
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		addr := srv.AddrString()
		errs := make(chan error, clients)
		for i := range clients {
			go func() {
				errs <- func() error {
					c, err := dialOriginalErr(addr, nil)
					if err != nil {
						return fmt.Errorf("client %d: New: %w", i, err)
					}
					defer c.Quit()
					for j := range echoes {
						p := append(fmt.Appendf(nil, "client %d echo %d ", i, j), pattern(i*97+j*31)...)
						resp, err := call(c, "echo", p)
						if err != nil {
							return fmt.Errorf("client %d echo %d: %w", i, j, err)
						}
						if resp.Status != 200 || resp.Req != "echo" || !bytes.Equal(resp.Payload, p) {
							return fmt.Errorf("client %d echo %d: status %d request %q payload %s, want 200 %s",
								i, j, resp.Status, resp.Req, show(resp.Payload), show(p))
						}
					}
					return nil
				}()
			}()
		}
		for range clients {
			select {
			case err := <-errs:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(2 * ioTimeout):
				t.Fatal("timed out waiting for the clients")
			}
		}
	})
}

// A payload over the server's limit: 402 with the reason, and the answer
// echoes the request's seq and request text (docs/PROTOCOL.md: every answer
// does, the 402 too), then the server closes the connection.
func TestOriginalClientPayloadTooLarge(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{MaxPayload: 1000})
		t.Run("original", func(t *testing.T) {
			c := dialOriginal(t, srv.AddrString())
			expect(t, mustCall(t, c, "echo", pattern(1000)), 200, "echo", pattern(1000))
			expect(t, mustCall(t, c, "echo", pattern(2000)), 402, "echo", []byte("2000 > 1000"))
			expectQuit(t, c)
		})
		// The same frames as the original client sends (it puts the
		// previous answer's status, 200, in its request), read byte by
		// byte.
		t.Run("raw", func(t *testing.T) {
			r := dialRaw(t, srv.AddrString())
			r.protoCheck()
			r.send(200, 2, "echo", pattern(2000))
			f := r.recv()
			if f.status != 402 || f.seq != 2 {
				t.Fatalf("over-limit answer: status %d seq %d, want 402 seq 2; bytes %q", f.status, f.seq, f.raw)
			}
			if f.req != "echo" || !bytes.Contains(f.raw, []byte("echo")) {
				t.Errorf("over-limit answer does not echo the request text %q; bytes %q", "echo", f.raw)
			}
			if string(f.payload) != "2000 > 1000" {
				t.Errorf("over-limit answer's payload %q, want %q", f.payload, "2000 > 1000")
			}
			r.expectClosed()
		})
	})
}

// A handler overrunning the server's HandlerTimeout: a version-0 session
// gets 500 with payload "handler timeout" (504 is not in the original's
// table), and the connection stays open.
func TestOriginalClientHandlerTimeout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		if v.inline {
			t.Skip("HandlerTimeout does not apply to inline handlers, which run on the event loop and must not block")
		}
		release := make(chan struct{})
		srv := listenOurs(t, v, engine.Config{
			HandlerTimeout: 50 * time.Millisecond,
			Handlers: map[string]engine.Handler{
				"stuck": func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
					select {
					case <-ctx.Done():
					case <-release: // the test is over
					}
					return 200, []byte("late"), nil
				},
				"echo": classicHandlers()["echo"],
			},
		})
		t.Cleanup(func() { close(release) }) // before the server's Close
		t.Run("original", func(t *testing.T) {
			c := dialOriginal(t, srv.AddrString())
			expect(t, mustCall(t, c, "stuck", []byte("x")), 500, "stuck", []byte("handler timeout"))
			expectQuit(t, c)
		})
		t.Run("raw", func(t *testing.T) {
			r := dialRaw(t, srv.AddrString())
			r.protoCheck()
			if f := r.roundTrip(2, "stuck", nil); f.status != 500 || string(f.payload) != "handler timeout" {
				t.Fatalf("timed-out handler: status %d payload %q, want 500 %q", f.status, f.payload, "handler timeout")
			}
			r.expectUsable(3)
		})
	})
}

// Handlers returning their own codes. 201 is not in the original client's
// table (it would panic on it), so a version-0 session gets 500 with the
// handler's payload instead. 402 is in the table and is sent as it is, but
// only the library's own 402 closes the connection, not a handler's.
func TestOriginalClientHandlerStatus(t *testing.T) {
	forEachEngine(t, func(t *testing.T, v variant) {
		srv := listenOurs(t, v, engine.Config{})
		t.Run("201/original", func(t *testing.T) {
			c := dialOriginal(t, srv.AddrString())
			expect(t, mustCall(t, c, "created", nil), 500, "created", []byte("created"))
		})
		t.Run("201/raw", func(t *testing.T) {
			r := dialRaw(t, srv.AddrString())
			r.protoCheck()
			if f := r.roundTrip(2, "created", nil); f.status != 500 || string(f.payload) != "created" {
				t.Fatalf("handler's 201: status %d payload %q, want 500 %q", f.status, f.payload, "created")
			}
			r.expectUsable(3)
		})
		t.Run("402/original", func(t *testing.T) {
			c := dialOriginal(t, srv.AddrString())
			expect(t, mustCall(t, c, "quota", nil), 402, "quota", []byte("quota exceeded"))
		})
		t.Run("402/raw", func(t *testing.T) {
			r := dialRaw(t, srv.AddrString())
			r.protoCheck()
			if f := r.roundTrip(2, "quota", nil); f.status != 402 || string(f.payload) != "quota exceeded" {
				t.Fatalf("handler's 402: status %d payload %q, want 402 %q", f.status, f.payload, "quota exceeded")
			}
			r.expectUsable(3)
		})
	})
}
