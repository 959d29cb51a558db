package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// env is one cell of the conformance matrix: an engine variant over a
// network ("tcp" or "unix").
type env struct {
	variant
	network string
}

// forEach runs fn as a parallel subtest for every engine variant over TCP
// and over a Unix socket.
func forEach(t *testing.T, fn func(t *testing.T, e env)) {
	t.Helper()
	for _, v := range variants {
		for _, network := range []string{"tcp", "unix"} {
			e := env{v, network}
			t.Run(v.name+"/"+network, func(t *testing.T) {
				t.Parallel()
				fn(t, e)
			})
		}
	}
}

// blocking reports whether handlers may block on this variant (inline
// handlers run on the event loop and must not).
func (e env) blocking() bool { return !e.inline }

// addr returns a fresh listening address for the env's network.
func (e env) addr(t testing.TB) string {
	if e.network == "unix" {
		return "unix://" + sockPath(t)
	}
	return "127.0.0.1:0"
}

// sockPath returns a Unix socket path in a short temporary directory
// (socket paths are limited to about 107 bytes), removed at cleanup.
func sockPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// testHandlers are registered on every test server unless the config
// brings its own.
func testHandlers() map[string]engine.Handler {
	return map[string]engine.Handler{
		"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
			return 200, req.Payload, nil
		},
		"status": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
			// Answers with the status written in the payload.
			var st uint16
			_, err := fmt.Sscan(string(req.Payload), &st)
			return st, req.Payload, err
		},
		"fail": func(context.Context, *engine.Request) (uint16, []byte, error) {
			return 0, nil, errors.New("failing as asked")
		},
		"panic": func(context.Context, *engine.Request) (uint16, []byte, error) {
			panic("panicking as asked")
		},
		"name": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
			return 200, []byte(req.Name), nil
		},
	}
}

// listen starts a server for env e with cfg (Addr, Engine, Inline, Logger,
// Handlers and IgnoreSignals filled in where unset) and closes it at
// cleanup.
func (e env) listen(t testing.TB, cfg engine.Config) *engine.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = e.addr(t)
	}
	cfg.Engine = e.kind
	cfg.Inline = e.inline
	if cfg.EventLoops == 0 && e.kind == engine.Reactor {
		cfg.EventLoops = 2
	}
	return listen(t, cfg)
}

// listen starts a server with cfg and closes it at cleanup.
func listen(t testing.TB, cfg engine.Config) *engine.Server {
	t.Helper()
	cfg.IgnoreSignals = true
	if cfg.Logger == nil {
		cfg.Logger = testnet.QuietLogger()
	}
	if cfg.Handlers == nil {
		cfg.Handlers = testHandlers()
	}
	srv, err := engine.Listen(cfg)
	if err != nil {
		t.Fatalf("Listen(%s, %s): %v", cfg.Addr, cfg.Engine, err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// client is a raw Petrel client for tests: it writes frames with
// codec.AppendFrame and reads them with codec.Parse, with deadlines. Its
// error-returning methods may be used off the test goroutine; the others
// call t.Fatal.
type client struct {
	t    testing.TB
	nc   net.Conn
	mac  *codec.MAC
	opts codec.Options
	seq  uint32
	rd   frameio.Reader
	out  []byte
}

// dialErr connects to srv without failing the test.
func dialErr(t testing.TB, srv *engine.Server) (*client, error) {
	a := srv.Addr()
	nc, err := net.DialTimeout(a.Network(), a.String(), ioTimeout)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc}, nil
}

// dial connects to srv.
func dial(t testing.TB, srv *engine.Server) *client {
	t.Helper()
	c, err := dialErr(t, srv)
	if err != nil {
		t.Fatalf("dial %s: %v", srv.AddrString(), err)
	}
	return c
}

// withMAC makes the client sign requests and expect signed answers.
func (c *client) withMAC(key []byte) *client {
	c.mac = codec.NewMAC(key)
	c.opts.MAC = true
	return c
}

func (c *client) close() { c.nc.Close() }

// writeRaw writes b with a deadline.
func (c *client) writeRaw(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.nc.Write(b)
	return err
}

// encode appends the encoding of f (signed when the client has a MAC).
func (c *client) encode(dst []byte, f codec.Frame) []byte {
	b, err := codec.AppendFrame(dst, f, c.mac)
	if err != nil {
		panic(err)
	}
	return b
}

// sendErr writes a request and returns its seq.
func (c *client) sendErr(req string, payload []byte) (uint32, error) {
	c.seq++
	c.out = c.encode(c.out[:0], codec.Frame{Seq: c.seq, Request: []byte(req), Payload: payload})
	return c.seq, c.writeRaw(c.out)
}

func (c *client) send(req string, payload []byte) uint32 {
	c.t.Helper()
	seq, err := c.sendErr(req, payload)
	if err != nil {
		c.t.Fatalf("send %q: %v", req, err)
	}
	return seq
}

// recvErrTimeout reads one frame, waiting at most d. The frame aliases the
// client's buffer until the next read.
func (c *client) recvErrTimeout(d time.Duration) (codec.Frame, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	f, err := c.rd.Next(c.nc, c.opts)
	if err == nil && c.mac != nil {
		if err := c.mac.Verify(f.Payload, f.MAC); err != nil {
			return f, fmt.Errorf("answer to seq %d: %w", f.Seq, err)
		}
	}
	return f, err
}

func (c *client) recvErr() (codec.Frame, error) { return c.recvErrTimeout(ioTimeout) }

func (c *client) recv() codec.Frame {
	c.t.Helper()
	f, err := c.recvErr()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return f
}

// callErr sends a request and reads its answer, checking that the answer
// echoes the request's seq and text.
func (c *client) callErr(req string, payload []byte) (codec.Frame, error) {
	seq, err := c.sendErr(req, payload)
	if err != nil {
		return codec.Frame{}, err
	}
	f, err := c.recvErr()
	if err != nil {
		return f, fmt.Errorf("answer to %q seq %d: %w", req, seq, err)
	}
	if f.Seq != seq || string(f.Request) != req {
		return f, fmt.Errorf("answer to %q seq %d came as %q seq %d", req, seq, f.Request, f.Seq)
	}
	return f, nil
}

func (c *client) call(req string, payload []byte) codec.Frame {
	c.t.Helper()
	f, err := c.callErr(req, payload)
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

// expect calls req and checks the answer's status and payload (want nil
// skips the payload check).
func (c *client) expect(req string, payload []byte, status codec.Status, want []byte) codec.Frame {
	c.t.Helper()
	f := c.call(req, payload)
	if f.Status != status {
		c.t.Fatalf("%q: status %d (payload %q), want %d", req, f.Status, f.Payload, status)
	}
	if want != nil && string(f.Payload) != string(want) {
		c.t.Fatalf("%q: payload %q, want %q", req, f.Payload, want)
	}
	return f
}

// closedErr reports nil once the server has closed the connection (EOF or
// reset) within ioTimeout, and an error if a frame or nothing arrives.
func (c *client) closedErr() error {
	f, err := c.recvErr()
	if err == nil {
		return fmt.Errorf("got a frame (status %d seq %d %q), want the connection closed", f.Status, f.Seq, f.Request)
	}
	if testnet.IsClosed(err) {
		return nil
	}
	return fmt.Errorf("want the connection closed, got %w", err)
}

func (c *client) expectClosed() {
	c.t.Helper()
	if err := c.closedErr(); err != nil {
		c.t.Fatal(err)
	}
}

// expectSilence checks that nothing arrives for d and the connection stays
// open.
func (c *client) expectSilence(d time.Duration) {
	c.t.Helper()
	f, err := c.recvErrTimeout(d)
	if err == nil {
		c.t.Fatalf("unexpected frame: status %d seq %d %q %q", f.Status, f.Seq, f.Request, f.Payload)
	}
	if !testnet.IsTimeout(err) {
		c.t.Fatalf("want silence, got %v", err)
	}
}

// logRecorder is a slog.Handler that records every record's message and
// "status" attribute.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "status message"
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	st := "-"
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "status" {
			st = a.Value.String()
		}
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, st+" "+rec.Message)
	r.mu.Unlock()
	return nil
}

// has reports whether a record with this status was logged.
func (r *logRecorder) has(status codec.Status) bool {
	prefix := fmt.Sprint(int(status)) + " "
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.recs {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.recs, "\n")
}
