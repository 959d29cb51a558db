package engine

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// acceptor is Petrel's own accept loop, shared by both engines: it backs
// off on EMFILE, ENFILE and other temporary errors as net/http does,
// reserves a MaxConns slot atomically before a connection counts, and
// fails the server (599) on any other listener error.
type acceptor struct {
	srv   *Server
	ln    net.Listener
	slots atomic.Int64 // connections holding a MaxConns slot
	// open hands an accepted connection, holding a slot, to the engine.
	// It returns false when the engine could not take it; the acceptor
	// then closes it and releases the slot.
	open func(nc net.Conn) bool

	wg       sync.WaitGroup
	stopOnce sync.Once
	stopped  chan struct{} // closed by stop: the loop exits
}

func newAcceptor(srv *Server, ln net.Listener, open func(net.Conn) bool) *acceptor {
	return &acceptor{srv: srv, ln: ln, open: open, stopped: make(chan struct{})}
}

func (a *acceptor) start() {
	a.wg.Add(1)
	go a.loop()
}

// release gives back a connection's slot.
func (a *acceptor) release() { a.slots.Add(-1) }

// stop closes the listener and waits for the loop to exit.
func (a *acceptor) stop() {
	a.stopOnce.Do(func() {
		close(a.stopped)
		a.ln.Close()
	})
	a.wg.Wait()
}

// retryable reports whether an accept error is worth retrying after a
// pause: out of descriptors or buffers, an aborted connection, or any
// error that says it is temporary.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	return isTimeout(err) || isTemporary(err)
}

func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (a *acceptor) loop() {
	defer a.wg.Done()
	srv := a.srv
	var delay time.Duration
	for {
		nc, err := a.ln.Accept()
		if err != nil {
			select {
			case <-a.stopped:
				return
			default:
			}
			if retryable(err) {
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				srv.logRated("accept", slog.LevelWarn, "petrel: accept error; retrying", "err", err, "delay", delay)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-a.stopped:
					t.Stop()
					return
				}
				continue
			}
			srv.fail(err)
			return
		}
		delay = 0
		if srv.closed.Load() {
			srv.stats.refused.Add(1)
			nc.Close()
			continue
		}
		if n := a.slots.Add(1); srv.cfg.MaxConns > 0 && n > int64(srv.cfg.MaxConns) {
			a.slots.Add(-1)
			srv.stats.refused.Add(1)
			srv.logRated("refusal", slog.LevelInfo, "petrel: connection refused: at MaxConns", "remote", nc.RemoteAddr(), "max", srv.cfg.MaxConns)
			nc.Close()
			continue
		}
		if !a.open(nc) {
			a.slots.Add(-1)
			nc.Close()
		}
	}
}

// connOpened counts a connection that an engine has taken.
func (s *Server) connOpened(c *session) {
	s.stats.open.Add(1)
	s.stats.total.Add(1)
	s.log.Debug("petrel: client connected", "conn", c.id, "remote", c.remote, "status", int(codec.StatusConnected))
}

// connClosed counts a connection's end and gives back its slot.
func (s *Server) connClosed(c *session, err error) {
	s.acc.release()
	s.stats.open.Add(-1)
	s.log.Debug("petrel: client disconnected", "conn", c.id, "status", int(codec.StatusDisconnected), "err", err)
	s.signalClosed()
}
