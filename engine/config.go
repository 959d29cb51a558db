package engine

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// Kind selects the transport engine.
type Kind string

// The engines.
const (
	// Reactor is the default engine: gnet event loops, frames decoded in
	// place from the loop's buffers, handlers on a bounded worker pool (or
	// inline). No goroutine per connection.
	Reactor Kind = "reactor"
	// Std is the baseline engine: the standard library's net package with
	// one goroutine per connection, buffered reads and vectored writes.
	Std Kind = "std"
)

// Config configures a server. The zero value of every field is valid and
// means the default stated on it; only Addr is required. [Listen] copies the
// Config: later changes to it have no effect.
type Config struct {
	// Addr is where to listen: "host:port" or "tcp://host:port" (port 0
	// picks a free port), or "unix:///path/to.sock".
	Addr string
	// Engine selects the transport; "" means Reactor where it is available
	// (Linux, macOS, the BSDs) and Std elsewhere. Asking for Reactor where
	// it is not available is a configuration error.
	Engine Kind
	// Inline runs handlers on the event loop instead of the worker pool
	// (reactor engine only). Only for handlers that never block.
	Inline bool
	// EventLoops is the number of gnet event loops (reactor engine only);
	// 0 means one per physical core the process may use. Fewer loops than
	// cores spend less CPU per request when the server shares the machine
	// (each loop sleeps and wakes less often) at the price of latency: on
	// two vCPUs shared with the load generator, one loop took 0.77–0.88
	// times the stdlib engine's CPU per request inline at 64 and more
	// connections, against 0.93–1.23 with two, but nearly doubled the
	// median latency at 64 connections.
	EventLoops int
	// Workers bounds the worker pool that runs handlers (reactor engine);
	// 0 means 256 per logical CPU. When every worker is busy, connections
	// wait their turn; nothing is dropped.
	Workers int
	// MaxPayload is the payload limit in bytes for requests; 0 means 4 MiB.
	// A request declaring more is answered 402 from its header alone and
	// the connection closed.
	MaxPayload uint32
	// MaxConns bounds concurrent connections; 0 means no limit. A
	// connection beyond it is closed at once.
	MaxConns int
	// ReadTimeout bounds how long a partly received frame may take to
	// arrive in full; 0 means 30s, negative means none.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection with nothing pending for this long;
	// 0 means 5m, negative means none.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose pending answer has not moved
	// for this long (progress-based: a slow reader that keeps reading gets
	// every byte); 0 means 30s, negative means none (then a peer that
	// never reads a large answer keeps its connection: the idle timer
	// starts only once the answer has left). During a graceful shutdown it
	// also bounds how long a connection may take to receive its last
	// answer.
	WriteTimeout time.Duration
	// HandlerTimeout cancels a handler's context after this long and
	// answers it as timed out (504 on version-1 sessions, 500 "handler
	// timeout" on version 0) without waiting for it; the handler's late
	// result is discarded. 0 means none. [HandlerOptions.Timeout]
	// overrides it per handler. Inline handlers cannot be pre-empted: they
	// see it as their context's deadline, and one that returns after it is
	// answered as timed out.
	HandlerTimeout time.Duration
	// QueueTimeout bounds how long a request may wait for a worker (or for
	// a handler's [HandlerOptions.MaxConcurrent] slot) before it is
	// answered busy without running (503 on version-1 sessions, 500
	// "server busy" on version 0); 0 means 1s, negative means wait
	// forever.
	QueueTimeout time.Duration
	// MaxAbandoned bounds the handlers still running after their timeout
	// answered for them; past it new requests are answered busy instead of
	// started. 0 means the worker pool's size (reactor) or 1024 (std).
	MaxAbandoned int
	// MaxBuffered bounds the bytes held, across all connections, for
	// partly received frames and pipelined frames not yet served; 0 means
	// 64 MiB, or twice the largest payload limit (MaxPayload and those in
	// HandlerOptions) plus 1 MiB when that is more. When it is reached the
	// connections holding the most are closed (reactor) or made to wait
	// (std, which may go over by at most one 4 KiB first read per
	// connection), counted in Stats.Evicted.
	MaxBuffered int64
	// ShutdownTimeout bounds the graceful shutdown that the first SIGINT
	// or SIGTERM starts (a second signal closes at once); 0 means 30s.
	ShutdownTimeout time.Duration
	// MinProtocol is the lowest protocol version served: 0 (the default)
	// serves classic clients too; 1 refuses version-0 clients (497).
	MinProtocol uint8
	// Introspection enables the built-in requests petrel.handlers,
	// petrel.health and petrel.stats (subject to Middleware like any
	// request).
	Introspection bool
	// HandlerOptions gives per-handler options to handlers registered
	// through Handlers, by name.
	HandlerOptions map[string]HandlerOptions
	// TLS, when set, serves TLS with this configuration (both engines).
	// Set ClientAuth to tls.RequireAndVerifyClientCert for client
	// authentication.
	TLS *tls.Config
	// HandshakeTimeout bounds a TLS handshake; 0 means 10s.
	HandshakeTimeout time.Duration
	// MaxHandshakes bounds TLS handshakes in progress at once (reactor
	// engine); 0 means 1024. A connection takes a slot only once a whole
	// first TLS record has arrived; one beyond the bound is closed.
	MaxHandshakes int
	// MaxHandshakesPerAddr bounds the handshake slots one remote IP
	// address may hold at once (reactor engine); 0 means 8, negative
	// means no bound.
	MaxHandshakesPerAddr int
	// HMACKey, when set, makes the server verify every request's MAC
	// (answering 502 and closing on a mismatch) and sign every answer.
	HMACKey []byte
	// SocketMode is the file mode of a Unix socket; 0 means 0o600.
	SocketMode os.FileMode
	// Logger receives the server's events; nil means warnings and errors
	// to stderr. The server never logs a line per successful request.
	Logger *slog.Logger
	// IgnoreSignals turns off the default handling of SIGINT and SIGTERM
	// (a graceful shutdown of every Petrel server in the process), for
	// programs that handle signals themselves.
	IgnoreSignals bool
	// Handlers are registered before the server starts; more can be added
	// with [Server.Handle] while it runs.
	Handlers map[string]Handler
	// Middleware wraps every handler, the first element outermost.
	Middleware []Middleware
}

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		return c, fmt.Errorf("%w: empty address", ErrConfig)
	}
	switch c.Engine {
	case "":
		c.Engine = Std
		if reactorAvailable {
			c.Engine = Reactor
		}
	case Reactor, Std:
	default:
		return c, fmt.Errorf("%w: unknown engine %q", ErrConfig, c.Engine)
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = codec.DefaultMaxPayload
	}
	if c.MaxConns < 0 || c.Workers < 0 || c.EventLoops < 0 || c.MaxHandshakes < 0 || c.MaxAbandoned < 0 || c.MaxBuffered < 0 {
		return c, fmt.Errorf("%w: negative count", ErrConfig)
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.MaxBuffered == 0 {
		// Room for two of the largest frames any handler allows.
		c.MaxBuffered = max(64<<20, 2*int64(c.largestPayload())+1<<20)
	}
	if c.MaxHandshakesPerAddr == 0 {
		c.MaxHandshakesPerAddr = 8
	}
	if c.MinProtocol > 1 {
		return c, fmt.Errorf("%w: MinProtocol %d (0 or 1)", ErrConfig, c.MinProtocol)
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = 1024
	}
	if c.SocketMode == 0 {
		c.SocketMode = 0o600
	}
	if c.Logger == nil {
		c.Logger = defaultLogger()
	}
	if c.TLS != nil {
		c.TLS = c.TLS.Clone()
	}
	if c.HMACKey != nil {
		c.HMACKey = append([]byte(nil), c.HMACKey...)
	}
	return c, nil
}

func defaultLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// largestPayload is the largest payload limit of the server and of the
// handlers configured through HandlerOptions.
func (c Config) largestPayload() uint32 {
	n := c.MaxPayload
	for _, o := range c.HandlerOptions {
		n = max(n, o.MaxPayload)
	}
	return n
}
