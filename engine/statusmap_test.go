package engine_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// Statuses on each version: version 0 never gets a code up to 1024 outside
// the original client's table; version 1 gets the protocol's codes; codes
// above 1024 pass on both; the library's busy and timeout answers are
// substituted on version 0.
func TestStatusMapping(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		rec := &logRecorder{}
		h := testHandlers()
		h["sleepy"] = func(context.Context, *engine.Request) (uint16, []byte, error) {
			time.Sleep(60 * time.Millisecond) // the work that overruns the handler's timeout
			return 200, []byte("late"), nil
		}
		srv := e.listen(t, engine.Config{Logger: slog.New(rec), Handlers: h,
			HandlerOptions: map[string]engine.HandlerOptions{"sleepy": {Timeout: 20 * time.Millisecond}}})
		c := dial(t, srv)
		for _, k := range []struct {
			in   string
			want codec.Status
		}{{"201", 500}, {"503", 500}, {"504", 500}, {"1024", 500}, {"1500", 1500}, {"1025", 1025}, {"402", 402}, {"502", 502}, {"101", 101}} {
			c.expect("status", []byte(k.in), k.want, []byte(k.in))
		}
		c.expect("sleepy", nil, codec.StatusHandlerError, []byte("handler timeout"))
		c.expect("echo", []byte("open"), codec.StatusOK, []byte("open"))
		if !rec.has(201) || !rec.has(503) {
			t.Errorf("no warning for the replaced codes; log:\n%s", rec)
		}

		v := dialV1(t, srv, nil)
		for _, k := range []struct {
			in   string
			want codec.Status
		}{{"201", 201}, {"503", 503}, {"504", 504}, {"1024", 1024}, {"1500", 1500}, {"402", 402}} {
			v.expectV1("status", []byte(k.in), k.want, []byte(k.in))
		}
		v.expectV1("sleepy", nil, codec.StatusHandlerTimeout, []byte("handler timeout"))
		v.expectV1("echo", []byte("open"), codec.StatusOK, []byte("open"))
	})
}

// A handler's error: 500 with the payload returned beside it, or with
// "handler error" when there is none; a 500 with a payload is sent as it
// is; the Classic adapter behaves like the original Petrel.
func TestHandlerErrorPayload(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		oops := errors.New("secret details")
		srv := e.listen(t, engine.Config{Handlers: map[string]engine.Handler{
			"err": func(context.Context, *engine.Request) (uint16, []byte, error) { return 200, nil, oops },
			"errp": func(context.Context, *engine.Request) (uint16, []byte, error) {
				return 0, []byte("why it failed"), oops
			},
			"errempty": func(context.Context, *engine.Request) (uint16, []byte, error) { return 0, []byte{}, oops },
			"s500":     func(context.Context, *engine.Request) (uint16, []byte, error) { return 500, []byte("mine"), nil },
			"echo":     testHandlers()["echo"],
			"classic": engine.Classic(func(p []byte) (uint16, []byte, error) {
				return 0, append([]byte("bad: "), p...), oops
			}),
		}})
		c := dial(t, srv)
		c.expect("err", nil, codec.StatusHandlerError, []byte("handler error"))
		c.expect("errp", nil, codec.StatusHandlerError, []byte("why it failed"))
		c.expect("errempty", nil, codec.StatusHandlerError, []byte{})
		c.expect("s500", nil, codec.StatusHandlerError, []byte("mine"))
		f := c.expect("classic", []byte("input"), codec.StatusHandlerError, []byte("bad: input"))
		if bytes.Contains(f.Payload, []byte("secret")) {
			t.Errorf("error text sent: %q", f.Payload)
		}
		c.expect("echo", []byte("open"), codec.StatusOK, []byte("open"))
	})
}

// The 402 answer echoes the request text, byte for byte as the protocol
// frames it on each kind of session, and is signed for the session.
func TestRefusalBytes(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		for _, key := range [][]byte{nil, v1key} {
			srv := e.listen(t, engine.Config{MaxPayload: 1024, HMACKey: key})
			for _, v1 := range []bool{false, true} {
				if v1 && key != nil {
					continue // TestRefusalBytesKeyedV1: needs the transport's opts
				}
				var c *client
				var fm *codec.FrameMAC
				seq := uint32(9)
				if v1 {
					vc := dialV1(t, srv, key)
					c, fm, seq = vc.client, vc.fm, vc.seq+1
				} else {
					c = dial(t, srv)
				}
				var hdr [codec.HeaderLen]byte
				codec.PutHeader(hdr[:], 0, seq, 4, 1025)
				if err := c.writeRaw(append(hdr[:], "echo"...)); err != nil {
					t.Fatal(err)
				}
				answer := codec.Frame{Status: codec.StatusPayloadTooLarge, Seq: seq, Request: []byte("echo"), Payload: []byte("1025 > 1024")}
				var want []byte
				if v1 {
					want, _ = codec.AppendFrameV1(nil, answer, fm, codec.ServerToClient)
				} else {
					var m *codec.MAC
					if key != nil {
						m = codec.NewMAC(key)
					}
					want, _ = codec.AppendFrame(nil, answer, m)
				}
				got, err := c.readRaw(len(want))
				if err != nil {
					t.Fatalf("%s v1=%v: %v", keyName(key), v1, err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s v1=%v: 402 answer\n%x, want\n%x", keyName(key), v1, got, want)
				}
				c.expectClosed()
			}
		}
	})
}

// Needs the transport's opts (a keyed version-1 session's frames).
func TestRefusalBytesKeyedV1(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxPayload: 1024, HMACKey: v1key})
		vc := dialV1(t, srv, v1key)
		seq := vc.seq + 1
		var hdr [codec.HeaderLen]byte
		codec.PutHeader(hdr[:], 0, seq, 4, 1025)
		if err := vc.writeRaw(append(hdr[:], "echo"...)); err != nil {
			t.Fatal(err)
		}
		want, _ := codec.AppendFrameV1(nil, codec.Frame{Status: codec.StatusPayloadTooLarge, Seq: seq, Request: []byte("echo"), Payload: []byte("1025 > 1024")}, vc.fm, codec.ServerToClient)
		got, err := vc.readRaw(len(want))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("402 answer %x (%v), want %x", got, err, want)
		}
		vc.expectClosed()
	})
}

// A version-1 header that both breaks the sequence rule and declares a
// payload over the limit is refused for its sequence (502 keyed, 498 not),
// not answered 402 as if it were in order.
func TestOverLimitOutOfSequence(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		for _, key := range [][]byte{nil, v1key} {
			srv := e.listen(t, engine.Config{MaxPayload: 1024, HMACKey: key})
			for _, seq := range []func(next uint32) uint32{
				func(next uint32) uint32 { return next - 1 }, // a replay
				func(next uint32) uint32 { return next + 5 }, // a reorder
			} {
				vc := dialV1(t, srv, key)
				vc.expectV1("echo", []byte("x"), codec.StatusOK, []byte("x"))
				bad := seq(vc.seq + 1)
				var hdr [codec.HeaderLen]byte
				codec.PutHeader(hdr[:], 0, bad, 4, 1025)
				if err := vc.writeRaw(append(hdr[:], "echo"...)); err != nil {
					t.Fatal(err)
				}
				want := codec.StatusReadError
				if key != nil {
					want = codec.StatusBadMAC
				}
				f, err := vc.recvV1()
				if err != nil {
					t.Fatalf("%s: %v", keyName(key), err)
				}
				if f.Status != want || f.Seq != bad || string(f.Payload) != "sequence number out of order" {
					t.Fatalf("%s: status %d seq %d payload %q, want %d seq %d out of order", keyName(key), f.Status, f.Seq, f.Payload, want, bad)
				}
				vc.expectClosed()
			}
		}
	})
}

// The server waits for the request text that follows a header over the
// limit, so that its 402 can echo it. Needs the transport to wait.
func TestRefusalWaitsForRequestText(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxPayload: 1024})
		c := dial(t, srv)
		var hdr [codec.HeaderLen]byte
		codec.PutHeader(hdr[:], 0, 3, 4, 4096)
		if err := c.writeRaw(hdr[:]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // pacing: the header arrives on its own
		if err := c.writeRaw([]byte("echo")); err != nil {
			t.Fatal(err)
		}
		f := c.recv()
		if f.Status != codec.StatusPayloadTooLarge || f.Seq != 3 || string(f.Request) != "echo" {
			t.Fatalf("402: status %d seq %d request %q", f.Status, f.Seq, f.Request)
		}
		c.expectClosed()
	})
}
