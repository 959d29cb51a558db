package interop_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"

	petrel "github.com/firepear/petrel"
	oclient "github.com/firepear/petrel/client"
	oserver "github.com/firepear/petrel/server"

	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// ioTimeout bounds every blocking read or write a test makes, so that a
// peer that stops answering fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

// variant is one way to run our engine.
type variant struct {
	name   string
	kind   engine.Kind
	inline bool
}

var variants = []variant{
	{"reactor-pool", engine.Reactor, false},
	{"reactor-inline", engine.Reactor, true},
	{"std", engine.Std, false},
}

// forEachEngine runs fn as a parallel subtest for every engine variant.
func forEachEngine(t *testing.T, fn func(t *testing.T, v variant)) {
	t.Helper()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, v)
		})
	}
}

// classicHandlers are the handlers of our test servers, in the original's
// form (payload in; status, payload and error out) through engine.Classic,
// as a program ported from the original would register them.
func classicHandlers() map[string]engine.Handler {
	h := map[string]func([]byte) (uint16, []byte, error){
		"echo": func(p []byte) (uint16, []byte, error) { return 200, p, nil },
		"time": func([]byte) (uint16, []byte, error) {
			return 200, []byte(time.Now().Format(time.RFC3339)), nil
		},
		"fail": func([]byte) (uint16, []byte, error) {
			return 0, nil, errors.New("failing as asked")
		},
		// An error together with a payload: the original sends that
		// payload with its 500.
		"failpayload": func([]byte) (uint16, []byte, error) {
			return 0, []byte("no such user: bob"), errors.New("lookup failed")
		},
		"panic": func([]byte) (uint16, []byte, error) { panic("panicking as asked") },
		// A code outside the classic table, which the original client
		// cannot take.
		"created": func([]byte) (uint16, []byte, error) { return 201, []byte("created"), nil },
		// A library code, returned by a handler: it must not close the
		// connection.
		"quota": func([]byte) (uint16, []byte, error) { return 402, []byte("quota exceeded"), nil },
	}
	m := make(map[string]engine.Handler, len(h))
	for name, f := range h {
		m[name] = engine.Classic(f)
	}
	return m
}

// listenOurs starts our server for v on 127.0.0.1:0 with cfg (Addr, Engine,
// Inline, Logger, IgnoreSignals and, when nil, Handlers filled in) and
// closes it at cleanup.
func listenOurs(t testing.TB, v variant, cfg engine.Config) *engine.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Engine = v.kind
	cfg.Inline = v.inline
	if v.kind == engine.Reactor {
		cfg.EventLoops = 2
	}
	cfg.IgnoreSignals = true
	cfg.Logger = testnet.QuietLogger()
	if cfg.Handlers == nil {
		cfg.Handlers = classicHandlers()
	}
	srv, err := engine.Listen(cfg)
	if err != nil {
		t.Fatalf("Listen(%s): %v", v.name, err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// dialOriginalErr connects an original client to addr; the original's New
// runs the protocol check. A panic inside it is returned as an error. It
// may be called off the test goroutine; the caller quits the client.
func dialOriginalErr(addr string, key []byte) (c *oclient.Client, err error) {
	defer func() {
		if v := recover(); v != nil {
			c, err = nil, fmt.Errorf("original client panicked in New: %v\n%s", v, debug.Stack())
		}
	}()
	return oclient.New(&oclient.Config{Addr: addr, Timeout: ioTimeout.Milliseconds(), HMACKey: key})
}

// dialOriginal connects an original client to addr and quits it at cleanup.
func dialOriginal(t testing.TB, addr string) *oclient.Client {
	t.Helper()
	c, err := dialOriginalErr(addr, nil)
	if err != nil {
		t.Fatalf("original client.New(%s): %v", addr, err)
	}
	t.Cleanup(c.Quit)
	return c
}

// call sends one request with the original client and returns a copy of
// its answer. The original client panics on an answer status up to 1024
// that its table lacks (a nil map entry dereferenced in Dispatch); such a
// panic is recovered and returned as an error saying so, so that one bad
// answer fails one test rather than the whole binary. call may be used off
// the test goroutine.
func call(c *oclient.Client, req string, payload []byte) (resp petrel.Resp, err error) {
	defer func() {
		if v := recover(); v != nil {
			resp = *c.Resp
			err = fmt.Errorf("original client panicked on an answer with status %d: %v", c.Resp.Status, v)
		}
	}()
	err = c.Dispatch(req, payload)
	return *c.Resp, err
}

// mustCall is call failing t on an error or a panic.
func mustCall(t testing.TB, c *oclient.Client, req string, payload []byte) petrel.Resp {
	t.Helper()
	resp, err := call(c, req, payload)
	if err != nil {
		t.Fatalf("original client, request %q: %v", req, err)
	}
	return resp
}

// expect checks an answer's status, request text and payload.
func expect(t testing.TB, resp petrel.Resp, status uint16, req string, payload []byte) {
	t.Helper()
	if resp.Status != status || resp.Req != req || !bytes.Equal(resp.Payload, payload) {
		t.Fatalf("answer: status %d, request %q, payload %s; want %d, %q, %s",
			resp.Status, resp.Req, show(resp.Payload), status, req, show(payload))
	}
}

// show prints a payload short enough to read.
func show(p []byte) string {
	if len(p) > 64 {
		return fmt.Sprintf("%q… (%d bytes)", p[:64], len(p))
	}
	return fmt.Sprintf("%q", p)
}

// expectQuit checks that the original client has closed its side, as it
// does after any answer of its "Error" level (402, 500, …): it refuses the
// next request without sending it.
func expectQuit(t testing.TB, c *oclient.Client) {
	t.Helper()
	if _, err := call(c, "echo", []byte("x")); err == nil {
		t.Fatal("original client still sends after an Error-level answer")
	}
}

// startOriginal starts an original server on 127.0.0.1:0 with cfg (Addr
// and Logger filled in) and handlers, and returns the address it listens
// on. It quits the server at cleanup: register the clients' cleanups after
// this call, since the original's Quit waits for every connection to end.
//
// Never send the original server a handler panic, a handler status its
// table lacks, a request whose status field is over 1024 or a PROTOCHECK
// with an empty payload: each crashes the whole test binary (see
// shared/peers/README.md).
func startOriginal(t testing.TB, cfg oserver.Config, handlers map[string]oserver.Handler) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = testnet.QuietLogger()
	s, err := oserver.New(&cfg)
	if err != nil {
		t.Fatalf("original server.New: %v", err)
	}
	quit := make(chan struct{})
	t.Cleanup(func() {
		go func() {
			s.Quit()
			close(quit)
		}()
		select {
		case <-quit:
		case <-time.After(ioTimeout):
			t.Errorf("original server's Quit still waiting after %v (a connection left open?)", ioTimeout)
		}
	})
	for name, h := range handlers {
		if err := s.Register(name, h); err != nil {
			t.Fatalf("original server.Register(%q): %v", name, err)
		}
	}
	addr := originalListener(s).Addr().String()
	orderRegistrations(t, addr)
	return addr
}

// orderRegistrations makes one exchange with the original server at addr
// from this process. The original's Register writes its handler map with
// no lock, and its New starts accepting before it registers PROTOCHECK, so
// a connection's goroutine reads a map that the test goroutine wrote. When
// the client is another process (the petrel command) nothing in this
// process orders the two, and the race detector reports it. One exchange
// from here does: the race detector counts every write(2) as a release and
// every read(2) as an acquire, and the server's reads of any later
// connection come after this one's write.
func orderRegistrations(t testing.TB, addr string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial the original server at %s: %v", addr, err)
	}
	defer nc.Close()
	r := &rawConn{t: t, nc: nc}
	r.send(0, 1, "PROTOCHECK", []byte{0})
	if _, err := r.recvErr(); err != nil {
		t.Fatalf("the original server at %s: %v", addr, err)
	}
}

// originalListener returns the original server's listener. The original
// keeps it in an unexported field and has no method that tells the address
// it listens on, so this reads the field; it is set in New, before the
// server's goroutines start, and never written again, so reading it races
// with nothing. It lets the original listen on port 0 like every other
// server in the tests.
func originalListener(s *oserver.Server) net.Listener {
	f := reflect.ValueOf(s).Elem().FieldByName("l")
	if !f.IsValid() || f.Type() != reflect.TypeFor[net.Listener]() {
		panic("interop: the original server has no listener field l; update originalListener")
	}
	return *(*net.Listener)(unsafe.Pointer(f.UnsafeAddr()))
}

// originalHandlers are the handlers of the original test servers. None
// panics or returns a status outside the original's table.
func originalHandlers() map[string]oserver.Handler {
	return map[string]oserver.Handler{
		"echo": func(p []byte) (uint16, []byte, error) { return 200, p, nil },
		"fail": func([]byte) (uint16, []byte, error) {
			return 500, []byte("failing as asked"), errors.New("failing as asked")
		},
	}
}

// rawConn is a hand-rolled Petrel client that writes and reads frames byte
// by byte (no codec of ours, so that a codec bug cannot hide a server
// bug), to check what the original client cannot tell us: the exact bytes
// of an answer, and whether the server kept a connection open after an
// answer the original client quits on. Its methods call t.Fatal: use them
// on the test goroutine only.
type rawConn struct {
	t  testing.TB
	nc net.Conn
}

// rawFrame is one frame read by a rawConn, with its bytes as they came.
type rawFrame struct {
	status  uint16
	seq     uint32
	req     string
	payload []byte
	raw     []byte
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

// send writes one frame in one write, as the original client does.
func (r *rawConn) send(status uint16, seq uint32, req string, payload []byte) {
	r.t.Helper()
	b := make([]byte, 11, 11+len(req)+len(payload))
	binary.LittleEndian.PutUint16(b[0:], status)
	binary.LittleEndian.PutUint32(b[2:], seq)
	b[6] = uint8(len(req))
	binary.LittleEndian.PutUint32(b[7:], uint32(len(payload)))
	b = append(b, req...)
	b = append(b, payload...)
	r.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// recv reads one frame.
func (r *rawConn) recv() rawFrame {
	r.t.Helper()
	f, err := r.recvErr()
	if err != nil {
		r.t.Fatal(err)
	}
	return f
}

// recvErr reads one frame, or says why it could not.
func (r *rawConn) recvErr() (rawFrame, error) {
	r.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	h := make([]byte, 11)
	if _, err := io.ReadFull(r.nc, h); err != nil {
		return rawFrame{}, fmt.Errorf("raw read of an answer's header: %w", err)
	}
	f := rawFrame{
		status: binary.LittleEndian.Uint16(h[0:]),
		seq:    binary.LittleEndian.Uint32(h[2:]),
	}
	rest := make([]byte, int(h[6])+int(binary.LittleEndian.Uint32(h[7:])))
	if _, err := io.ReadFull(r.nc, rest); err != nil {
		return rawFrame{}, fmt.Errorf("raw read of an answer (status %d) after its header: %w", f.status, err)
	}
	f.req, f.payload = string(rest[:h[6]]), rest[h[6]:]
	f.raw = append(h, rest...)
	return f, nil
}

// roundTrip sends a request with status 0 and returns its answer, checking
// that it echoes seq and the request text.
func (r *rawConn) roundTrip(seq uint32, req string, payload []byte) rawFrame {
	r.t.Helper()
	r.send(0, seq, req, payload)
	f := r.recv()
	if f.seq != seq || f.req != req {
		r.t.Fatalf("answer to %q seq %d: seq %d request %q (status %d)", req, seq, f.seq, f.req, f.status)
	}
	return f
}

// protoCheck runs the protocol check as the original client does.
func (r *rawConn) protoCheck() {
	r.t.Helper()
	if f := r.roundTrip(1, "PROTOCHECK", []byte{0}); f.status != 200 || !bytes.Equal(f.payload, []byte{0}) {
		r.t.Fatalf("PROTOCHECK: status %d payload %q", f.status, f.payload)
	}
}

// expectUsable checks that the connection still serves requests.
func (r *rawConn) expectUsable(seq uint32) {
	r.t.Helper()
	p := fmt.Appendf(nil, "still open at seq %d", seq)
	r.send(0, seq, "echo", p)
	f, err := r.recvErr()
	if err != nil {
		r.t.Fatalf("the connection is no longer usable after the previous answer: %v", err)
	}
	if f.status != 200 || f.seq != seq || f.req != "echo" || !bytes.Equal(f.payload, p) {
		r.t.Fatalf("echo on the same connection: status %d seq %d request %q payload %q", f.status, f.seq, f.req, f.payload)
	}
}

// expectClosed checks that the server closes the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	r.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	var b [1]byte
	n, err := r.nc.Read(b[:])
	if n > 0 || !testnet.IsClosed(err) {
		r.t.Fatalf("want the connection closed, read %d bytes, %v", n, err)
	}
}

// pattern returns n bytes cycling through every byte value, in an order
// that also changes between cycles so that a shifted or repeated chunk
// shows.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i + i/256)
	}
	return p
}

// withTimeout returns a context bounded by ioTimeout.
func withTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	t.Cleanup(cancel)
	return ctx
}
