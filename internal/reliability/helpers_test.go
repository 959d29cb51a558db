package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/frameio"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// ioTimeout bounds every blocking read or write a test client makes, so a
// server that stops answering fails the test instead of hanging it.
const ioTimeout = 10 * time.Second

// scale divides load under the race detector, which slows everything down
// five- to tenfold.
func scale(n int) int {
	if raceEnabled {
		return max(1, n/4)
	}
	return n
}

// variant is one way to run the engine.
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

// blocking reports whether handlers may block on this variant (inline
// handlers run on the event loop and must not).
func (v variant) blocking() bool { return !v.inline }

// forEach runs fn as a parallel subtest for every engine variant.
func forEach(t *testing.T, fn func(t *testing.T, v variant)) {
	t.Helper()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			fn(t, v)
		})
	}
}

// baseHandlers are registered on every test server unless the config
// brings its own: echo, fail (an error: 500), panic (500) and, where
// handlers may block, sleep (sleeps for the duration in the payload, or
// until its context ends, and answers an empty payload).
func baseHandlers(v variant) map[string]engine.Handler {
	h := map[string]engine.Handler{
		"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
			return 200, req.Payload, nil
		},
		"fail": func(context.Context, *engine.Request) (uint16, []byte, error) {
			return 0, nil, errors.New("failing as asked")
		},
		"panic": func(context.Context, *engine.Request) (uint16, []byte, error) {
			panic("panicking as asked")
		},
	}
	if v.blocking() {
		h["sleep"] = sleepHandler
	}
	return h
}

func sleepHandler(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
	d, err := time.ParseDuration(string(req.Payload))
	if err != nil {
		return 0, nil, err
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return 200, nil, nil // as examples/server's sleep does
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// listen starts a server for variant v with cfg (Addr, Engine, Inline,
// EventLoops, Logger, Handlers and IgnoreSignals filled in where unset)
// and closes it at cleanup.
func listen(t testing.TB, v variant, cfg engine.Config) *engine.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Engine = v.kind
	cfg.Inline = v.inline
	if cfg.EventLoops == 0 && v.kind == engine.Reactor {
		cfg.EventLoops = 2
	}
	if cfg.Logger == nil {
		cfg.Logger = testnet.QuietLogger()
	}
	if cfg.Handlers == nil {
		cfg.Handlers = baseHandlers(v)
	}
	cfg.IgnoreSignals = true
	srv, err := engine.Listen(cfg)
	if err != nil {
		t.Fatalf("listen %s: %v", v.name, err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// errTorn reports a frame cut short by the end of the connection: the one
// thing a client must never see.
var errTorn = errors.New("torn frame: the connection ended inside a frame")

// conn is a raw Petrel client: it writes frames with codec.AppendFrame and
// reads them with codec.Parse, always with deadlines. Its methods return
// errors instead of failing the test, so they may run off the test
// goroutine.
type conn struct {
	nc   net.Conn
	mac  *codec.MAC
	opts codec.Options
	seq  uint32
	rd   frameio.Reader
	out  []byte
}

// dial connects to srv; key, when set, signs requests and verifies answers.
func dial(srv *engine.Server, key []byte) (*conn, error) {
	return dialAddr(srv.Addr(), key)
}

func dialAddr(a net.Addr, key []byte) (*conn, error) {
	nc, err := net.DialTimeout(a.Network(), a.String(), ioTimeout)
	if err != nil {
		return nil, err
	}
	return newConn(nc, key), nil
}

func newConn(nc net.Conn, key []byte) *conn {
	c := &conn{nc: nc, opts: codec.Options{MaxPayload: 1 << 30}}
	if key != nil {
		c.mac = codec.NewMAC(key)
		c.opts.MAC = true
	}
	return c
}

// mustDial dials or fails the test, closing the connection at cleanup.
func mustDial(t testing.TB, srv *engine.Server, key []byte) *conn {
	t.Helper()
	c, err := dial(srv, key)
	if err != nil {
		t.Fatalf("dial %s: %v", srv.AddrString(), err)
	}
	t.Cleanup(c.close)
	return c
}

func (c *conn) close() { c.nc.Close() }

// abort closes the connection with a reset (SO_LINGER 0) instead of a FIN.
func (c *conn) abort() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.nc.Close()
}

func (c *conn) writeRaw(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.nc.Write(b)
	return err
}

// frame appends the encoding of a request (signed when the conn has a MAC)
// and returns its seq.
func (c *conn) frame(dst []byte, req string, payload []byte) ([]byte, uint32) {
	c.seq++
	b, err := codec.AppendFrame(dst, codec.Frame{Seq: c.seq, Request: []byte(req), Payload: payload}, c.mac)
	if err != nil {
		panic(err)
	}
	return b, c.seq
}

// send writes one request and returns its seq.
func (c *conn) send(req string, payload []byte) (uint32, error) {
	var seq uint32
	c.out, seq = c.frame(c.out[:0], req, payload)
	return seq, c.writeRaw(c.out)
}

// recv reads one frame, waiting at most d. The frame aliases the conn's
// buffer until the next read. A connection that ends inside a frame gives
// an error matching errTorn; one that ends between frames gives the read
// error (io.EOF, ECONNRESET).
func (c *conn) recv(d time.Duration) (codec.Frame, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	f, err := c.rd.Next(c.nc, c.opts)
	if err != nil {
		if testnet.IsClosed(err) && c.rd.Buffered() > 0 {
			have := c.rd.Buffered()
			return codec.Frame{}, fmt.Errorf("%w (%d bytes of %d): %w", errTorn, have, have+c.rd.Missing(), err)
		}
		return codec.Frame{}, err
	}
	if c.mac != nil {
		if err := c.mac.Verify(f.Payload, f.MAC); err != nil {
			return f, fmt.Errorf("answer to seq %d: %w", f.Seq, err)
		}
	}
	return f, nil
}

// call sends a request and reads its answer, checking that the answer
// echoes the request's seq and text.
func (c *conn) call(req string, payload []byte) (codec.Frame, error) {
	seq, err := c.send(req, payload)
	if err != nil {
		return codec.Frame{}, err
	}
	f, err := c.recv(ioTimeout)
	if err != nil {
		return f, fmt.Errorf("answer to %q seq %d: %w", req, seq, err)
	}
	if f.Seq != seq || string(f.Request) != req {
		return f, fmt.Errorf("answer to %q seq %d came as %q seq %d", req, seq, f.Request, f.Seq)
	}
	return f, nil
}

// echo calls echo with p and checks the answer.
func (c *conn) echo(p []byte) error {
	f, err := c.call("echo", p)
	if err != nil {
		return err
	}
	if f.Status != codec.StatusOK || string(f.Payload) != string(p) {
		return fmt.Errorf("echo of %d bytes: status %d, %d bytes back", len(p), f.Status, len(f.Payload))
	}
	return nil
}

// closedErr reports nil once the server has closed the connection
// cleanly (EOF or reset between frames) within d, and an error if a frame,
// a torn frame or nothing arrives.
func (c *conn) closedErr(d time.Duration) error {
	f, err := c.recv(d)
	switch {
	case err == nil:
		return fmt.Errorf("got a frame (status %d seq %d %q), want the connection closed", f.Status, f.Seq, f.Request)
	case testnet.IsClosed(err) && !errors.Is(err, errTorn):
		return nil
	default:
		return fmt.Errorf("want the connection closed, got %w", err)
	}
}

// checkEcho dials srv and checks that an echo works: the server still
// serves new connections.
func checkEcho(srv *engine.Server, key []byte, p []byte) error {
	c, err := dial(srv, key)
	if err != nil {
		return err
	}
	defer c.abort()
	return c.echo(p)
}

// heapInUse returns the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
