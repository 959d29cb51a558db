package engine_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// Version 1 (PROTOCOL.md, "Version 1"), over real sockets on every engine
// variant. The keyed cases need the transport to parse each frame with the
// session's options (32-byte tags after negotiation: Server.opts); the
// unkeyed ones have the version-0 layout and run on any transport.

var v1key = []byte("the version-1 shared secret")

// v1Handlers are testHandlers plus "version", which answers the session's
// negotiated version as one byte.
func v1Handlers() map[string]engine.Handler {
	h := testHandlers()
	h["version"] = func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
		return 200, []byte{req.Conn.Version}, nil
	}
	return h
}

func keyName(key []byte) string {
	if key == nil {
		return "unkeyed"
	}
	return "keyed"
}

// A version-1 session serves requests; a version-0 session beside it on
// the same server still gets classic answers; both are counted.
func testV1Session(t *testing.T, key []byte) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{HMACKey: key, Handlers: v1Handlers()})
		c := dialV1(t, srv, key)
		c.expectV1("echo", []byte("hello"), codec.StatusOK, []byte("hello"))
		c.expectV1("echo", nil, codec.StatusOK, []byte{})
		c.expectV1("version", nil, codec.StatusOK, []byte{1})
		c.expectV1("nope", nil, codec.StatusNoHandler, nil)
		c.expectV1("", nil, codec.StatusEmptyRequest, nil)
		c.expectV1("fail", nil, codec.StatusHandlerError, []byte("handler error"))
		c.expectV1("panic", nil, codec.StatusHandlerError, []byte("handler error"))
		// Every code passes on version 1: the protocol's own (503 and 504
		// among them), others up to 1024, and the application's.
		c.expectV1("status", []byte("503"), codec.StatusBusy, []byte("503"))
		c.expectV1("status", []byte("504"), codec.StatusHandlerTimeout, []byte("504"))
		c.expectV1("status", []byte("201"), 201, []byte("201"))
		c.expectV1("status", []byte("1500"), 1500, []byte("1500"))
		// A handler's 402 or 502 does not close the connection.
		c.expectV1("status", []byte("402"), codec.StatusPayloadTooLarge, nil)
		c.expectV1("status", []byte("502"), codec.StatusBadMAC, nil)
		// Pipelined requests are answered in order.
		for i := range 3 {
			if _, err := c.sendV1("echo", []byte{byte('a' + i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 3 {
			f, err := c.recvV1()
			if err != nil {
				t.Fatal(err)
			}
			if f.Status != codec.StatusOK || !bytes.Equal(f.Payload, []byte{byte('a' + i)}) {
				t.Fatalf("pipelined %d: status %d payload %q", i, f.Status, f.Payload)
			}
		}

		c0 := dial(t, srv)
		if key != nil {
			c0.withMAC(key)
		}
		c0.expect("version", nil, codec.StatusOK, []byte{0})
		c0.expect("status", []byte("503"), codec.StatusHandlerError, []byte("503"))
		c0.expect(codec.ProtoCheck, []byte{0}, codec.StatusOK, []byte{0})
		if st := srv.Stats(); st.Sessions != [2]uint64{1, 1} {
			t.Errorf("Sessions = %v, want [1 1]", st.Sessions)
		}
	})
}

func TestV1SessionUnkeyed(t *testing.T) { testV1Session(t, nil) }
func TestV1SessionKeyed(t *testing.T)   { testV1Session(t, v1key) } // needs the transport's opts

// attack is one way to break a live version-1 session.
type attack struct {
	name      string
	keyedOnly bool // unkeyed sessions cannot tell (no MAC)
	want      func(keyed bool) codec.Status
	do        func(t *testing.T, srv *engine.Server, c *v1client) error
}

func status(st codec.Status) func(bool) codec.Status { return func(bool) codec.Status { return st } }

// seqRefusal is what a broken sequence rule gets: 502 keyed, 498 not.
func seqRefusal(keyed bool) codec.Status {
	if keyed {
		return codec.StatusBadMAC
	}
	return codec.StatusReadError
}

var attacks = []attack{
	{"tampered request text", true, status(codec.StatusBadMAC), func(t *testing.T, _ *engine.Server, c *v1client) error {
		b := c.frameBytes(c.next("echo", []byte("x")))
		copy(b[codec.HeaderLen:], "name") // same length, another handler
		return c.writeRaw(b)
	}},
	{"tampered seq", true, status(codec.StatusBadMAC), func(t *testing.T, _ *engine.Server, c *v1client) error {
		f := c.next("echo", []byte("x"))
		good := f.Seq
		f.Seq += 5
		b := c.frameBytes(f)
		codec.PutHeader(b, 0, good, 4, 1) // the seq the rule wants, under a tag for another
		return c.writeRaw(b)
	}},
	{"tampered status", true, status(codec.StatusBadMAC), func(t *testing.T, _ *engine.Server, c *v1client) error {
		b := c.frameBytes(c.next("echo", []byte("x")))
		b[0] = 7
		return c.writeRaw(b)
	}},
	{"tampered payload", true, status(codec.StatusBadMAC), func(t *testing.T, _ *engine.Server, c *v1client) error {
		b := c.frameBytes(c.next("echo", []byte("x")))
		b[codec.HeaderLen+4] = 'y'
		return c.writeRaw(b)
	}},
	{"previous frame replayed", false, seqRefusal, func(t *testing.T, _ *engine.Server, c *v1client) error {
		if _, err := c.callV1Err("echo", []byte("once")); err != nil {
			return err
		}
		return c.writeRaw(c.last)
	}},
	{"frame from another connection", true, status(codec.StatusBadMAC), func(t *testing.T, srv *engine.Server, c *v1client) error {
		// Recorded on another session at the seq this one expects next.
		other, err := dialV1Seq(t, srv, c.key, c.seq)
		if err != nil {
			return err
		}
		if _, err := other.callV1Err("echo", []byte("recorded")); err != nil {
			return err
		}
		other.close()
		return c.writeRaw(other.last)
	}},
	{"answer reflected as a request", true, status(codec.StatusBadMAC), func(t *testing.T, _ *engine.Server, c *v1client) error {
		if _, err := c.callV1Err("echo", []byte("mirror")); err != nil {
			return err
		}
		return c.writeRaw(c.raw)
	}},
	{"version-0 MAC after negotiation", true, status(codec.StatusBadMAC), func(t *testing.T, _ *engine.Server, c *v1client) error {
		b, _ := codec.AppendFrame(nil, c.next("echo", []byte("classic")), codec.NewMAC(c.key))
		return c.writeRaw(b)
	}},
	{"seq skipped", false, seqRefusal, func(t *testing.T, _ *engine.Server, c *v1client) error {
		c.seq++
		_, err := c.sendV1("echo", []byte("skip"))
		return err
	}},
	{"seq repeated", false, seqRefusal, func(t *testing.T, _ *engine.Server, c *v1client) error {
		if _, err := c.callV1Err("echo", nil); err != nil {
			return err
		}
		c.seq--
		_, err := c.sendV1("echo", []byte("again"))
		return err
	}},
	{"late PROTOCHECK", false, status(codec.StatusReadError), func(t *testing.T, _ *engine.Server, c *v1client) error {
		_, err := c.sendV1(codec.ProtoCheck, codec.AppendProtoCheck(nil, codec.ProtocolV1, make([]byte, codec.NonceLen)))
		return err
	}},
	{"late version-0 PROTOCHECK", false, status(codec.StatusReadError), func(t *testing.T, _ *engine.Server, c *v1client) error {
		_, err := c.sendV1(codec.ProtoCheck, []byte{0})
		return err
	}},
}

// Each attack on a live version-1 session is refused as the protocol says
// (the refusal tagged under the session key when keyed), the connection
// closed, and another connection on the same server still served.
func testV1Attacks(t *testing.T, key []byte) {
	forEach(t, func(t *testing.T, e env) {
		rec := &logRecorder{}
		srv := e.listen(t, engine.Config{HMACKey: key, Handlers: v1Handlers(), Logger: slog.New(rec)})
		bystander := dialV1(t, srv, key)
		for _, a := range attacks {
			if a.keyedOnly && key == nil {
				continue
			}
			c := dialV1(t, srv, key)
			c.expectV1("echo", []byte("before"), codec.StatusOK, []byte("before"))
			if err := a.do(t, srv, c); err != nil {
				t.Fatalf("%s: %v", a.name, err)
			}
			want := a.want(key != nil)
			f, err := c.recvV1()
			if err != nil {
				t.Fatalf("%s: want a %d refusal: %v", a.name, want, err)
			}
			if f.Status != want {
				t.Fatalf("%s: status %d (payload %q), want %d", a.name, f.Status, f.Payload, want)
			}
			if err := c.closedErr(); err != nil {
				t.Fatalf("%s: %v", a.name, err)
			}
			bystander.expectV1("echo", []byte(a.name), codec.StatusOK, []byte(a.name))
		}
		if !rec.has(seqRefusal(key != nil)) {
			t.Errorf("no refusal logged; log:\n%s", rec)
		}
	})
}

func TestV1AttacksUnkeyed(t *testing.T) { testV1Attacks(t, nil) }
func TestV1AttacksKeyed(t *testing.T)   { testV1Attacks(t, v1key) } // needs the transport's opts

// There is no wrap: after seq 2^32−1 nothing is accepted.
func testV1SeqEnd(t *testing.T, key []byte) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{HMACKey: key})
		c, err := dialV1Seq(t, srv, key, math.MaxUint32-1)
		if err != nil {
			t.Fatal(err)
		}
		f := c.expectV1("echo", []byte("last"), codec.StatusOK, []byte("last"))
		if f.Seq != math.MaxUint32 {
			t.Fatalf("seq %d", f.Seq)
		}
		// seq wraps to 0 here, which is one more modulo 2^32: refused.
		if _, err := c.sendV1("echo", []byte("wrapped")); err != nil {
			t.Fatal(err)
		}
		c.expectRefused(seqRefusal(key != nil))

		// A PROTOCHECK at 2^32−1 leaves no seq for any request.
		c, err = dialV1Seq(t, srv, key, math.MaxUint32)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.sendV1("echo", nil); err != nil {
			t.Fatal(err)
		}
		c.expectRefused(seqRefusal(key != nil))
	})
}

func TestV1SeqEndUnkeyed(t *testing.T) { testV1SeqEnd(t, nil) }
func TestV1SeqEndKeyed(t *testing.T)   { testV1SeqEnd(t, v1key) } // needs the transport's opts

// The version-1 PROTOCHECK answer carries a version-0 MAC when keyed, and
// its nonce is fresh per connection.
func TestV1ProtoCheckAnswer(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		for _, key := range [][]byte{nil, v1key} {
			srv := e.listen(t, engine.Config{HMACKey: key})
			var nonces [][]byte
			for range 2 {
				c := dial(t, srv)
				if key != nil {
					c.withMAC(key) // recv checks the version-0 MAC
				}
				f := c.expect(codec.ProtoCheck, codec.AppendProtoCheck(nil, 1, bytes.Repeat([]byte{7}, codec.NonceLen)), codec.StatusOK, nil)
				v, n, err := codec.ParseProtoCheck(f.Payload)
				if err != nil || v != 1 {
					t.Fatalf("%s: answer %x: %v", keyName(key), f.Payload, err)
				}
				nonces = append(nonces, bytes.Clone(n))
			}
			if bytes.Equal(nonces[0], nonces[1]) || bytes.Equal(nonces[0], make([]byte, codec.NonceLen)) {
				t.Errorf("%s: server nonces %x and %x", keyName(key), nonces[0], nonces[1])
			}
		}
	})
}

// MinProtocol 1 refuses version-0 sessions: a version-0 PROTOCHECK gets
// 497 0x01, a first frame that is not PROTOCHECK too, and both are closed;
// version 1 is served.
func TestMinProtocol(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		for _, key := range [][]byte{nil, v1key} {
			srv := e.listen(t, engine.Config{MinProtocol: 1, HMACKey: key, Handlers: v1Handlers()})
			for _, first := range []codec.Frame{
				{Request: []byte(codec.ProtoCheck), Payload: []byte{0}},
				{Request: []byte("echo"), Payload: []byte("skip the check")},
				{Request: []byte("")},
				{Request: []byte("nope")},
			} {
				c := dial(t, srv)
				if key != nil {
					c.withMAC(key)
				}
				c.expect(string(first.Request), first.Payload, codec.StatusVersionMismatch, []byte{codec.ProtocolV1})
				c.expectClosed()
			}
			if key == nil { // keyed version 1 needs the transport's opts: TestMinProtocolKeyedV1
				c := dialV1(t, srv, key)
				c.expectV1("version", nil, codec.StatusOK, []byte{1})
			}
			if st := srv.Stats(); st.Sessions[0] != 0 {
				t.Errorf("%s: Sessions = %v, want no version-0 session", keyName(key), st.Sessions)
			}
		}
	})
}

func TestMinProtocolKeyedV1(t *testing.T) { // needs the transport's opts
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MinProtocol: 1, HMACKey: v1key, Handlers: v1Handlers()})
		c := dialV1(t, srv, v1key)
		c.expectV1("version", nil, codec.StatusOK, []byte{1})
		if st := srv.Stats(); st.Sessions != [2]uint64{0, 1} {
			t.Errorf("Sessions = %v", st.Sessions)
		}
	})
}

// A failure of crypto/rand while negotiating is answered 501 and closed.
// Not parallel: it swaps the servers' nonce source.
func TestV1NonceFailure(t *testing.T) {
	t.Cleanup(engine.SetRandRead(func([]byte) (int, error) { return 0, errors.New("no entropy") }))
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		c.expect(codec.ProtoCheck, codec.AppendProtoCheck(nil, 1, make([]byte, codec.NonceLen)), codec.StatusInternalError, nil)
		c.expectClosed()
		dial(t, srv).expect("echo", []byte("v0 unaffected"), codec.StatusOK, []byte("v0 unaffected"))
	})
}
