package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// transport is what an engine provides to a Server. The Server owns the
// listener and the accept loop (see acceptor) and hands each accepted
// connection to the transport.
type transport interface {
	// open takes an accepted connection that holds a MaxConns slot. It
	// reports false when it cannot (the caller closes nc and releases the
	// slot); once it has reported true, the transport calls
	// Server.connClosed exactly once for nc.
	open(nc net.Conn) bool
	// drain makes every connection look at the draining flag now: idle
	// ones and those with a partial frame close at once, the others once
	// their answer is fully written.
	drain()
	// close closes every connection now, cancels the handlers' contexts
	// and stops the engine's goroutines, waiting at most bound for
	// handlers that ignore their context (they are abandoned).
	close(bound time.Duration) error
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
	exchanges      sync.Pool         // *exchange, for the reactor
	rt             *reactorTransport // the reactor engine's transport; nil on std

	t   transport
	acc *acceptor
	ln  net.Listener

	connGone chan struct{} // signalled (non-blocking) when a connection closes
	budget   *budget       // Config.MaxBuffered
	// onAbandon, set by the transport before serving, hears of handlers
	// abandoned (+1) and returning (−1).
	onAbandon func(delta int)

	// Fields owned by the dispatch layer (dispatch.go and its files),
	// set up by initDispatch.
	disp dispatchState

	stopOnce  sync.Once     // guards the transition to stopped
	stopMu    sync.Mutex    // guards err and drainWhy
	err       error         // why the server stopped; nil while running
	drainWhy  error         // why a graceful shutdown began; nil if none did
	done      chan struct{} // closed once stopped
	closed    atomic.Bool   // a Close or Shutdown has begun: the server drains
	forceOnce sync.Once     // guards forced
	forced    chan struct{} // closed by Close: stop now
	halt      atomic.Bool   // set first thing by Close: write no more answers
}

// Listen starts a server as cfg says and returns once it is listening. The
// server runs until [Server.Shutdown] or [Server.Close], a listener failure,
// or (unless cfg.IgnoreSignals) SIGINT or SIGTERM.
func Listen(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	network, address, err := parseAddr(c.Addr)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := prepareUnixSocket(address); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("petrel: listen %s: %w", cfg.Addr, err)
	}
	if ul, ok := ln.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(true)
		if err := os.Chmod(address, c.SocketMode); err != nil {
			ln.Close()
			return nil, fmt.Errorf("petrel: unix socket mode: %w", err)
		}
	}
	s, err := serve(ln, c)
	if err != nil {
		ln.Close()
	}
	return s, err
}

// Serve starts a server on a listener the caller brings (systemd socket
// activation, an inherited descriptor for a zero-downtime restart, a test
// listener) and returns once it serves. cfg.Addr is ignored. The server
// owns ln from then on and closes it when it stops. The reactor engine
// serves the *net.TCPConn and *net.UnixConn connections ln accepts (it
// hands each socket to its event loops); the std engine serves any
// net.Conn.
func Serve(ln net.Listener, cfg Config) (*Server, error) {
	if ln == nil {
		return nil, fmt.Errorf("%w: nil listener", ErrConfig)
	}
	cfg.Addr = addrString(ln.Addr())
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return serve(ln, c)
}

func serve(ln net.Listener, cfg Config) (*Server, error) {
	s := &Server{
		cfg:            cfg,
		log:            cfg.Logger,
		handlers:       newRegistry(cfg.Middleware),
		inlineHandlers: cfg.Engine == Reactor && cfg.Inline,
		stats:          newCounters(),
		done:           make(chan struct{}),
		forced:         make(chan struct{}),
		connGone:       make(chan struct{}, 1),
		ln:             ln,
		budget:         newBudget(cfg.MaxBuffered),
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
	var err error
	switch cfg.Engine {
	case Std:
		s.t, err = newStdTransport(s)
	default:
		s.t, err = newReactorTransport(s)
	}
	if err != nil {
		return nil, err
	}
	s.acc = newAcceptor(s, ln, s.t.open)
	s.acc.start()
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
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// AddrString returns the listening address as a client dials it:
// "host:port", or "unix:///path" for a Unix socket.
func (s *Server) AddrString() string { return addrString(s.ln.Addr()) }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	st := s.stats.snapshot()
	if s.budget != nil {
		st.Buffered = s.budget.used.Load()
	}
	return st
}

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
// closes idle connections and partly received frames at once, answers
// every request already received (read, or waiting in the kernel when its
// connection would close), and closes each remaining connection once its
// answer is fully written (each bounded by WriteTimeout). It returns when
// all are closed. If ctx ends first, or [Server.Close] is called meanwhile,
// the rest are closed at once and Shutdown returns an error wrapping
// [ErrDrainCut] (and ctx's error). Calling Shutdown on a stopped server
// returns net.ErrClosed.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.stop(ctx, ErrServerClosed)
}

// Close stops the server at once: it closes the listener and every
// connection and cancels every handler's context; requests in flight are
// not answered. It works at any time, also during a Shutdown, which it
// cuts short. It returns once the engine's goroutines have exited, waiting
// at most one second for handlers that ignore their cancelled context:
// those are abandoned (they keep running, their count is logged) and their
// results are discarded. A second Close returns net.ErrClosed.
func (s *Server) Close() error { return s.forceStop(nil) }

// forceStop closes the server at once; why is what Err reports (nil: the
// reason a graceful shutdown in progress had, marked cut short, or
// ErrServerClosed).
func (s *Server) forceStop(why error) error {
	first := false
	s.forceOnce.Do(func() { first = true })
	if !first {
		<-s.done
		return net.ErrClosed
	}
	s.halt.Store(true)
	s.closed.Store(true)
	close(s.forced)
	s.acc.stop()
	err := s.t.close(closeGrace)
	if why == nil {
		s.stopMu.Lock()
		why = s.drainWhy
		s.stopMu.Unlock()
		if why == nil {
			why = ErrServerClosed
		} else {
			why = errors.Join(why, ErrDrainCut)
		}
	}
	s.finish(why)
	return err
}

// stop is Shutdown with why as the reason the server reports.
func (s *Server) stop(ctx context.Context, why error) error {
	if !s.closed.CompareAndSwap(false, true) {
		<-s.done
		return net.ErrClosed
	}
	s.stopMu.Lock()
	s.drainWhy = why
	s.stopMu.Unlock()
	s.log.Log(context.Background(), codec.StatusShuttingDown.Level(), "petrel: server shutting down",
		"addr", s.AddrString(), "status", int(codec.StatusShuttingDown))
	s.acc.stop()
	s.t.drain()
	var cut error
	for cut == nil && s.stats.open.Load() > 0 {
		select {
		case <-ctx.Done():
			cut = fmt.Errorf("%w: %w", ErrDrainCut, ctx.Err())
		case <-s.forced:
			cut = fmt.Errorf("%w: closed meanwhile", ErrDrainCut)
		case <-s.connGone:
		}
	}
	if cut != nil {
		s.forceStop(nil)
		return cut
	}
	if err := s.forceStop(why); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// forcedNow reports whether Close has begun.
func (s *Server) forcedNow() bool {
	select {
	case <-s.forced:
		return true
	default:
		return false
	}
}

// signalClosed wakes a Shutdown waiting for connections to close.
func (s *Server) signalClosed() {
	select {
	case s.connGone <- struct{}{}:
	default:
	}
}

// fail stops the server after a listener or engine failure (status 599):
// Done closes and Err says why.
func (s *Server) fail(err error) {
	s.log.Error("petrel: listener failed", "addr", s.AddrString(), "status", int(codec.StatusListenerFailed), "err", err)
	s.stopMu.Lock()
	s.drainWhy = nil
	s.stopMu.Unlock()
	go s.forceStop(fmt.Errorf("petrel: listener failed (status %d): %w", codec.StatusListenerFailed, err))
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
