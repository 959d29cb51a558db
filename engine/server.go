package engine

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/petrel-rpc/petrel/codec"
)

// transport is what an engine provides to a Server.
type transport interface {
	// addr is the listening address.
	addr() net.Addr
	// shutdown stops accepting, lets every connection finish the requests
	// it has read, closes idle ones, and returns when none is left or ctx
	// ends (then with ctx's error, leaving the rest to close).
	shutdown(ctx context.Context) error
	// close closes the listener and every connection now and returns once
	// the engine's goroutines have exited.
	close() error
}

// Server is a running Petrel server. All methods are safe for concurrent
// use.
type Server struct {
	cfg            Config
	log            *slog.Logger
	handlers       *registry
	mac            *codec.MAC // template; each connection clones it
	inlineHandlers bool
	stats          *counters
	nextID         atomic.Uint64
	exchanges      sync.Pool // *exchange, for the reactor

	t transport

	// Fields owned by the dispatch layer (dispatch.go and its files),
	// set up by initDispatch.
	disp dispatchState

	stopOnce sync.Once     // guards the transition to stopped
	stopMu   sync.Mutex    // guards err
	err      error         // why the server stopped; nil while running
	done     chan struct{} // closed once stopped
	closed   atomic.Bool   // a Close or Shutdown has begun: the server drains
}

// Listen starts a server as cfg says and returns once it is listening. The
// server runs until [Server.Shutdown] or [Server.Close], a listener failure,
// or (unless cfg.IgnoreSignals) SIGINT or SIGTERM.
func Listen(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	network, address, err := parseAddr(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:            cfg,
		log:            cfg.Logger,
		handlers:       newRegistry(cfg.Middleware),
		inlineHandlers: cfg.Engine == Reactor && cfg.Inline,
		stats:          newCounters(),
		done:           make(chan struct{}),
	}
	if len(cfg.HMACKey) > 0 {
		s.mac = codec.NewMAC(cfg.HMACKey)
	}
	s.exchanges.New = func() any { return s.newExchange() }
	if err := s.initDispatch(); err != nil {
		return nil, err
	}
	for name, h := range cfg.Handlers {
		if err := s.handlers.add(name, h, cfg.HandlerOptions[name]); err != nil {
			return nil, err
		}
	}
	if network == "unix" {
		if err := prepareUnixSocket(address); err != nil {
			return nil, err
		}
	}
	switch cfg.Engine {
	case Std:
		s.t, err = newStdTransport(s, network, address)
	default:
		s.t, err = newReactorTransport(s, network, address)
	}
	if err != nil {
		return nil, err
	}
	if !cfg.IgnoreSignals {
		registerSignals(s)
	}
	s.log.Info("petrel: listening", "addr", s.AddrString(), "engine", string(cfg.Engine))
	return s, nil
}

// Handle registers h for requests named name, replacing any handler of that
// name. It may be called while the server runs. Names are 1 to 255 bytes;
// PROTOCHECK is built in.
func (s *Server) Handle(name string, h Handler, opts ...HandlerOptions) error {
	return s.handlers.add(name, h, oneOptions(opts))
}

// Addr returns the address the server listens on (with the real port when
// port 0 was asked for).
func (s *Server) Addr() net.Addr { return s.t.addr() }

// AddrString returns the listening address as a client dials it:
// "host:port", or "unix:///path" for a Unix socket.
func (s *Server) AddrString() string { return addrString(s.t.addr()) }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Var returns the server's statistics as an expvar.Var, for
// expvar.Publish.
func (s *Server) Var() expvar.Var { return expvar.Func(func() any { return s.Stats() }) }

// Done returns a channel closed when the server has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns why the server stopped: nil while it runs, [ErrServerClosed]
// after Shutdown or Close, an error wrapping [ErrSignal] after a signal, or
// the listener's error.
func (s *Server) Err() error {
	s.stopMu.Lock()
	defer s.stopMu.Unlock()
	return s.err
}

// Wait blocks until the server has stopped and returns [Server.Err].
func (s *Server) Wait() error {
	<-s.done
	return s.Err()
}

// Shutdown stops the server gracefully: it stops accepting connections,
// answers every request already read, closes connections as they become
// idle, and returns when all are closed. If ctx ends first, the remaining
// connections are closed at once and ctx's error is returned. Calling
// Shutdown on a stopped server returns net.ErrClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.stop(ctx, ErrServerClosed)
}

// Close stops the server at once, closing the listener and every
// connection; requests in flight are not answered. It returns once the
// server's goroutines have exited. A second Close returns net.ErrClosed.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		<-s.done
		return net.ErrClosed
	}
	err := s.t.close()
	s.finish(ErrServerClosed)
	return err
}

func (s *Server) stop(ctx context.Context, why error) error {
	if !s.closed.CompareAndSwap(false, true) {
		<-s.done
		return net.ErrClosed
	}
	s.log.Log(context.Background(), codec.StatusShuttingDown.Level(), "petrel: server shutting down",
		"addr", s.AddrString(), "status", int(codec.StatusShuttingDown))
	err := s.t.shutdown(ctx)
	if cerr := s.t.close(); err == nil && cerr != nil && !errors.Is(cerr, net.ErrClosed) {
		err = cerr
	}
	s.finish(why)
	return err
}

// fail stops the server after a listener failure (status 599).
func (s *Server) fail(err error) {
	s.log.Error("petrel: listener failed", "addr", s.AddrString(), "status", int(codec.StatusListenerFailed), "err", err)
	go func() {
		if s.closed.CompareAndSwap(false, true) {
			_ = s.t.close()
			s.finish(fmt.Errorf("petrel: listener failed: %w", err))
		}
	}()
}

func (s *Server) finish(why error) {
	s.stopOnce.Do(func() {
		unregisterSignals(s)
		s.stopMu.Lock()
		s.err = why
		s.stopMu.Unlock()
		close(s.done)
	})
}
