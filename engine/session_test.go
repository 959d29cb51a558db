package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// Dispatch-level tests: a server without a transport, and a fake one that
// follows the transports' contract (opts before each frame's parse, then
// dispatch and frame; refusal for a frame refused from its header), so the
// session rules are checked independently of the engines.

func newTestServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, handlers: newRegistry(cfg.Middleware), stats: newCounters(),
		inlineHandlers: cfg.Engine == Reactor && cfg.Inline}
	if len(cfg.HMACKey) > 0 {
		s.mac = codec.NewMAC(cfg.HMACKey)
	}
	s.exchanges.New = func() any { return s.newExchange() }
	if err := s.initDispatch(); err != nil {
		t.Fatal(err)
	}
	if cfg.Handlers == nil {
		cfg.Handlers = map[string]Handler{
			"echo": func(_ context.Context, r *Request) (uint16, []byte, error) { return 200, r.Payload, nil },
		}
	}
	for name, h := range cfg.Handlers {
		if err := s.handlers.add(name, h, cfg.HandlerOptions[name]); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// fakeConn plays a transport for one connection.
type fakeConn struct {
	session
	x      *exchange
	closed bool
}

func newFakeConn(s *Server) *fakeConn {
	c := &fakeConn{x: s.newExchange()}
	c.init(s)
	return c
}

// serve feeds one frame's wire bytes and returns the answer's bytes.
func (c *fakeConn) serve(t testing.TB, wire []byte) []byte {
	t.Helper()
	if c.closed {
		t.Fatal("frame on a closed connection")
	}
	h, err := codec.ParseHeader(wire)
	if err != nil {
		t.Fatal(err)
	}
	o := c.opts(wire[codec.HeaderLen : codec.HeaderLen+int(h.RequestLen)])
	f, n, need, err := codec.Parse(wire, o)
	if err != nil {
		c.closed = true
		return join(c.refusal(c.x, wire, err))
	}
	if need > 0 || n != len(wire) {
		t.Fatalf("frame of %d bytes parsed as %d (need %d) under %+v", len(wire), n, need, o)
	}
	r := c.dispatch(c.x, f)
	out := join(c.frame(c.x, f, r))
	c.closed = r.closes
	return out
}

func join(v [][]byte) []byte { return bytes.Join(v, nil) }

// peer is the client side of a fakeConn.
type peer struct {
	key   []byte
	fm    *codec.FrameMAC
	ver   uint8
	seq   uint32
	last  []byte // the last request sent
	reply []byte // the last answer received
}

func (p *peer) encode(f codec.Frame) []byte {
	var b []byte
	var err error
	if p.ver == 0 {
		var m *codec.MAC
		if p.key != nil {
			m = codec.NewMAC(p.key)
		}
		b, err = codec.AppendFrame(nil, f, m)
	} else {
		b, err = codec.AppendFrameV1(nil, f, p.fm, codec.ClientToServer)
	}
	if err != nil {
		panic(err)
	}
	return b
}

// decode parses and verifies an answer.
func (p *peer) decode(t testing.TB, b []byte, ver uint8) codec.Frame {
	t.Helper()
	f, n, _, err := codec.Parse(b, codec.Options{MAC: p.key != nil, Version: ver, MaxPayload: 1 << 30})
	if err != nil || n != len(b) {
		t.Fatalf("answer %x: n %d of %d, %v", b, n, len(b), err)
	}
	switch {
	case p.key == nil:
	case ver == 0:
		if err := codec.NewMAC(p.key).Verify(f.Payload, f.MAC); err != nil {
			t.Fatalf("answer status %d: version-0 MAC: %v", f.Status, err)
		}
	default:
		if err := p.fm.Verify(codec.ServerToClient, f); err != nil {
			t.Fatalf("answer status %d: tag: %v", f.Status, err)
		}
	}
	return f
}

func (p *peer) call(t testing.TB, c *fakeConn, req string, payload []byte) codec.Frame {
	t.Helper()
	p.seq++
	p.last = p.encode(codec.Frame{Seq: p.seq, Request: []byte(req), Payload: payload})
	p.reply = c.serve(t, p.last)
	return p.decode(t, p.reply, p.ver)
}

// negotiate runs a version-1 PROTOCHECK at seq.
func (p *peer) negotiate(t testing.TB, c *fakeConn, seq uint32) {
	t.Helper()
	var nonce [codec.NonceLen]byte
	rand.Read(nonce[:])
	p.seq = seq - 1
	f := p.call(t, c, codec.ProtoCheck, codec.AppendProtoCheck(nil, 1, nonce[:]))
	if f.Status != codec.StatusOK || f.Seq != seq {
		t.Fatalf("PROTOCHECK: status %d seq %d payload %x", f.Status, f.Seq, f.Payload)
	}
	_, sn, err := codec.ParseProtoCheck(f.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if p.key != nil {
		k := codec.SessionKey(p.key, nonce[:], sn)
		p.fm = codec.NewFrameMAC(k[:])
	}
	p.ver = 1
}

func TestSessionV1(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("k")} {
		keyed := key != nil
		seqSt := codec.StatusReadError
		if keyed {
			seqSt = codec.StatusBadMAC
		}
		s := newTestServer(t, Config{HMACKey: key, Handlers: map[string]Handler{
			"echo": func(_ context.Context, r *Request) (uint16, []byte, error) { return 200, r.Payload, nil },
			"ver":  func(_ context.Context, r *Request) (uint16, []byte, error) { return 200, []byte{r.Conn.Version}, nil },
		}})
		fresh := func() (*fakeConn, *peer) {
			c, p := newFakeConn(s), &peer{key: key}
			p.negotiate(t, c, 1)
			if o := c.opts([]byte("echo")); o.Version != 1 || o.MAC != keyed {
				t.Fatalf("opts after negotiation: %+v", o)
			}
			if f := p.call(t, c, "ver", nil); f.Status != 200 || !bytes.Equal(f.Payload, []byte{1}) {
				t.Fatalf("ver: %d %q", f.Status, f.Payload)
			}
			return c, p
		}
		type tc struct {
			name      string
			keyedOnly bool
			want      codec.Status
			wire      func(c *fakeConn, p *peer) []byte
		}
		cases := []tc{
			{"tampered request", true, codec.StatusBadMAC, func(c *fakeConn, p *peer) []byte {
				b := p.encode(codec.Frame{Seq: p.seq + 1, Request: []byte("echo"), Payload: []byte("x")})
				b[codec.HeaderLen] = 'E'
				return b
			}},
			{"tampered status", true, codec.StatusBadMAC, func(c *fakeConn, p *peer) []byte {
				b := p.encode(codec.Frame{Seq: p.seq + 1, Request: []byte("echo")})
				b[1] = 1
				return b
			}},
			{"tampered seq", true, codec.StatusBadMAC, func(c *fakeConn, p *peer) []byte {
				b := p.encode(codec.Frame{Seq: p.seq + 9, Request: []byte("echo")})
				codec.PutHeader(b, 0, p.seq+1, 4, 0)
				return b
			}},
			{"replay", false, seqSt, func(c *fakeConn, p *peer) []byte { return p.last }},
			{"reflected answer", true, codec.StatusBadMAC, func(c *fakeConn, p *peer) []byte {
				// Re-sign nothing: the answer as received, with its seq
				// advanced cannot be made without the key, so send it as it
				// came.
				return p.reply
			}},
			{"other connection", true, codec.StatusBadMAC, func(c *fakeConn, p *peer) []byte {
				c2, p2 := fresh() // both at seq 2 after "ver"
				p2.call(t, c2, "echo", []byte("recorded"))
				return p2.last
			}},
			{"v0 MAC", true, codec.StatusBadMAC, func(c *fakeConn, p *peer) []byte {
				b, _ := codec.AppendFrame(nil, codec.Frame{Seq: p.seq + 1, Request: []byte("echo")}, codec.NewMAC(key))
				return b[:len(b)-(codec.MACLen-codec.TagLen)] // as the transport frames it: a 32-byte "tag"
			}},
			{"seq skip", false, seqSt, func(c *fakeConn, p *peer) []byte {
				return p.encode(codec.Frame{Seq: p.seq + 2, Request: []byte("echo")})
			}},
			{"late PROTOCHECK", false, codec.StatusReadError, func(c *fakeConn, p *peer) []byte {
				return p.encode(codec.Frame{Seq: p.seq + 1, Request: []byte(codec.ProtoCheck), Payload: codec.AppendProtoCheck(nil, 1, make([]byte, 16))})
			}},
		}
		for _, k := range cases {
			if k.keyedOnly && !keyed {
				continue
			}
			c, p := fresh()
			ans := c.serve(t, k.wire(c, p))
			f := p.decode(t, ans, 1) // the refusal is tagged under the session key
			if f.Status != k.want || !c.closed {
				t.Errorf("key %v, %s: status %d (%q), closes %v; want %d and close", keyed, k.name, f.Status, f.Payload, c.closed, k.want)
			}
		}
		if st := s.Stats(); st.Sessions[1] == 0 || st.Sessions[0] != 0 {
			t.Errorf("Sessions %v", st.Sessions)
		}
	}
}

// The 402 refusal echoes the request text and is signed for the session.
func TestSessionRefusal(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("k")} {
		s := newTestServer(t, Config{HMACKey: key, MaxPayload: 16})
		for _, v1 := range []bool{false, true} {
			c, p := newFakeConn(s), &peer{key: key}
			seq := uint32(42)
			if v1 {
				p.negotiate(t, c, seq-1) // in sequence, so refused for its length
			}
			var hdr [codec.HeaderLen]byte
			codec.PutHeader(hdr[:], 0, seq, 4, 17)
			ans := c.serve(t, append(hdr[:], "echo"...))
			f := p.decode(t, ans, p.ver)
			if f.Status != codec.StatusPayloadTooLarge || f.Seq != seq || string(f.Request) != "echo" || string(f.Payload) != "17 > 16" || !c.closed {
				t.Errorf("key %v v1 %v: %d seq %d %q %q", key != nil, v1, f.Status, f.Seq, f.Request, f.Payload)
			}
		}
	}
}

// A handler's own MaxPayload: opts reports it, above or below the
// server's, so the transport refuses from the header.
func TestOptsPerHandler(t *testing.T) {
	h := func(_ context.Context, r *Request) (uint16, []byte, error) { return 200, nil, nil }
	s := newTestServer(t, Config{MaxPayload: 1 << 20, HMACKey: []byte("k"), Handlers: map[string]Handler{"big": h, "small": h, "plain": h, "nb": h},
		HandlerOptions: map[string]HandlerOptions{"big": {MaxPayload: 8 << 20}, "small": {MaxPayload: 10}, "nb": {NonBlocking: true}}})
	c := newFakeConn(s)
	for name, want := range map[string]uint32{"big": 8 << 20, "small": 10, "plain": 1 << 20, "nope": 1 << 20, codec.ProtoCheck: 1 << 20} {
		if o := c.opts([]byte(name)); o.MaxPayload != want || !o.MAC || o.Version != 0 {
			t.Errorf("opts(%q) = %+v, want limit %d, MAC, version 0", name, o, want)
		}
	}
	if got := s.largestPayload(); got != 8<<20 {
		t.Errorf("largestPayload = %d", got)
	}
	for name, want := range map[string]bool{"nb": true, "plain": false, "nope": true, "": true, codec.ProtoCheck: true} {
		if got := c.nonBlocking([]byte(name)); got != want {
			t.Errorf("nonBlocking(%q) = %v", name, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.opts([]byte("plain")); c.nonBlocking([]byte("nb")) }); n != 0 {
		t.Errorf("opts and nonBlocking: %v allocations", n)
	}
}

// A full MaxConcurrent: busy at once when the caller cannot wait, after
// the wait otherwise; the slot comes back on release.
func TestAcquire(t *testing.T) {
	e := entry{sem: make(chan struct{}, 1)}
	ctx := context.Background()
	if !e.acquire(ctx, false, time.Second) {
		t.Fatal("first acquire failed")
	}
	start := time.Now()
	if e.acquire(ctx, false, time.Hour) {
		t.Fatal("acquire on a full handler without waiting succeeded")
	}
	if e.acquire(ctx, true, 20*time.Millisecond) {
		t.Fatal("acquire on a full handler succeeded")
	}
	if time.Since(start) < 20*time.Millisecond {
		t.Error("did not wait")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if e.acquire(cctx, true, -1) {
		t.Fatal("acquire with a cancelled context succeeded")
	}
	e.release()
	if !e.acquire(ctx, false, 0) {
		t.Fatal("acquire after release failed")
	}
	if n := testing.AllocsPerRun(100, func() { e.release(); e.acquire(ctx, true, time.Second) }); n != 0 {
		t.Errorf("%v allocations on the fast path", n)
	}
}

func TestWireStatus(t *testing.T) {
	for _, c := range []struct {
		ver      uint8
		in, want codec.Status
	}{
		{0, 200, 200}, {0, 201, 500}, {0, 503, 500}, {0, 504, 500}, {0, 402, 402}, {0, 1024, 500}, {0, 1025, 1025}, {0, 101, 101}, {0, 0, 500},
		{1, 200, 200}, {1, 201, 201}, {1, 503, 503}, {1, 504, 504}, {1, 402, 402}, {1, 1024, 1024}, {1, 0, 0}, {1, 65535, 65535}, {1, 599, 599},
	} {
		if got, _ := wireStatus(c.ver, c.in); got != c.want {
			t.Errorf("version %d: %d sent as %d, want %d", c.ver, c.in, got, c.want)
		}
	}
}

func TestRegistryNames(t *testing.T) {
	h := func(context.Context, *Request) (uint16, []byte, error) { return 200, nil, nil }
	on := newTestServer(t, Config{Introspection: true})
	if err := on.handlers.add("petrel.mine", h, HandlerOptions{}); !errors.Is(err, ErrBadName) {
		t.Errorf("petrel.mine with introspection: %v", err)
	}
	if err := on.handlers.add("petrelmine", h, HandlerOptions{}); err != nil {
		t.Errorf("petrelmine: %v", err)
	}
	if err := on.handlers.add("x", h, HandlerOptions{MaxConcurrent: -1}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("negative MaxConcurrent: %v", err)
	}
	off := newTestServer(t, Config{})
	if err := off.handlers.add("petrel.mine", h, HandlerOptions{}); err != nil {
		t.Errorf("petrel.mine without introspection: %v", err)
	}
}

// PROTOCHECK after a version-0 session began: 0x00 is answered as ever, a
// malformed one 497, a version-1 one 498 (no renegotiation).
func TestSessionLateProtoCheckV0(t *testing.T) {
	s := newTestServer(t, Config{})
	for _, k := range []struct {
		payload []byte
		want    codec.Status
		closes  bool
	}{
		{[]byte{0}, codec.StatusOK, false},
		{[]byte{0, 0}, codec.StatusVersionMismatch, true},
		{[]byte{5}, codec.StatusVersionMismatch, true},
		{codec.AppendProtoCheck(nil, 1, make([]byte, codec.NonceLen)), codec.StatusReadError, true},
	} {
		c, p := newFakeConn(s), &peer{}
		p.call(t, c, "echo", nil)
		f := p.call(t, c, codec.ProtoCheck, k.payload)
		if f.Status != k.want || c.closed != k.closes {
			t.Errorf("late PROTOCHECK %x: status %d closes %v, want %d %v", k.payload, f.Status, c.closed, k.want, k.closes)
		}
	}
}
