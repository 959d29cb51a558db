package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// stdTransport is the baseline engine: a goroutine per connection on the
// standard library's net package.
type stdTransport struct {
	srv *Server
	ln  net.Listener

	mu    sync.Mutex            // guards conns
	conns map[*stdConn]struct{} // open connections
	wg    sync.WaitGroup        // accept loop and connection goroutines
	idle  chan struct{}         // signalled when a connection closes during drain
	once  sync.Once
}

func newStdTransport(srv *Server, network, address string) (*stdTransport, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	t := &stdTransport{srv: srv, ln: ln, conns: map[*stdConn]struct{}{}, idle: make(chan struct{}, 1)}
	if network == "unix" {
		if err := os.Chmod(address, srv.cfg.SocketMode); err != nil {
			ln.Close()
			return nil, err
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(true)
	}
	if srv.cfg.TLS != nil {
		ln = tls.NewListener(ln, srv.cfg.TLS)
		t.ln = ln
	}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

func (t *stdTransport) addr() net.Addr { return t.ln.Addr() }

func (t *stdTransport) accept() {
	defer t.wg.Done()
	srv := t.srv
	var delay time.Duration
	for {
		nc, err := t.ln.Accept()
		if err != nil {
			if srv.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if isTimeout(err) || isTemporary(err) {
				// EMFILE and friends: back off as net/http does.
				if delay == 0 {
					delay = 5 * time.Millisecond
				} else if delay *= 2; delay > time.Second {
					delay = time.Second
				}
				srv.log.Warn("petrel: accept error; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			srv.fail(err)
			return
		}
		delay = 0
		if srv.closed.Load() || (srv.cfg.MaxConns > 0 && srv.stats.open.Load() >= int64(srv.cfg.MaxConns)) {
			srv.stats.refused.Add(1)
			nc.Close()
			continue
		}
		c := &stdConn{t: t, nc: nc}
		c.init(srv)
		c.info.LocalAddr, c.info.RemoteAddr = nc.LocalAddr(), nc.RemoteAddr()
		t.mu.Lock()
		if srv.closed.Load() {
			t.mu.Unlock()
			nc.Close()
			continue
		}
		t.conns[c] = struct{}{}
		srv.stats.open.Add(1)
		srv.stats.total.Add(1)
		t.wg.Add(1)
		t.mu.Unlock()
		go c.serve()
	}
}

func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

func (t *stdTransport) remove(c *stdConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.srv.stats.open.Add(-1)
	select {
	case t.idle <- struct{}{}:
	default:
	}
}

func (t *stdTransport) shutdown(ctx context.Context) error {
	t.ln.Close()
	for {
		t.mu.Lock()
		n := len(t.conns)
		for c := range t.conns {
			c.wakeIfIdle()
		}
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.idle:
		case <-time.After(50 * time.Millisecond):
			// Re-wake connections that became idle since the last pass.
		}
	}
}

func (t *stdTransport) close() error {
	var err error
	t.once.Do(func() {
		err = t.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		t.mu.Lock()
		for c := range t.conns {
			// Close first, then cancel: a handler woken by the
			// cancellation must find the connection closed, so that
			// nothing more is written on it (as on the reactor, where
			// OnClose marks the connection gone before cancelling).
			// Both happen before wg.Wait, so a handler waiting on its
			// context cannot hold it.
			c.nc.Close()
			c.ctx.cancel()
		}
		t.mu.Unlock()
		t.wg.Wait()
	})
	return err
}

// stdConn is one connection of the std engine, served by one goroutine.
type stdConn struct {
	session
	x  *exchange
	t  *stdTransport
	nc net.Conn

	mu   sync.Mutex // guards busy
	busy bool       // a frame has begun arriving or is being answered

	buf        []byte    // read buffer; frames are decoded in place
	frameStart time.Time // when the frame being read began arriving; zero between frames
	out        []byte    // small answers are assembled here
	vec        net.Buffers
	vecArr     [4][]byte // c.vec's backing array: header, request, payload, MAC

	// The watcher: while a handler that asked for ctx.Done runs, a
	// goroutine reads the socket so that the peer going away cancels the
	// handler's context. It owns peek, peeked and watchErr until
	// watchDone is closed.
	watchDone chan struct{}
	peek      [1]byte
	peeked    bool  // the watcher read a byte of the next frame into peek
	watchErr  error // the watcher's read error, if any
}

const (
	stdReadBuf     = 4 << 10  // initial read buffer
	stdKeepBuf     = 64 << 10 // larger buffers are dropped after use
	stdSmallAnswer = 4 << 10  // answers up to this size are copied into one write
)

// wakeIfIdle interrupts the connection's read when it waits for a new
// frame, so that a draining server can close it.
func (c *stdConn) wakeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

func (c *stdConn) setBusy(b bool) {
	c.mu.Lock()
	c.busy = b
	c.mu.Unlock()
}

func (c *stdConn) serve() {
	srv := c.srv
	defer c.t.wg.Done()
	defer func() {
		c.ctx.cancel()
		c.nc.Close()
		c.t.remove(c)
		srv.log.Debug("petrel: client disconnected", "conn", c.info.ID, "status", int(codec.StatusDisconnected))
	}()
	if tc, ok := c.nc.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(context.Background(), srv.cfg.HandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			srv.log.Info("petrel: TLS handshake failed", "conn", c.info.ID, "remote", c.info.RemoteAddr, "err", err)
			return
		}
		st := tc.ConnectionState()
		c.info.TLS = &st
	} else if uc, ok := c.nc.(*net.UnixConn); ok {
		c.info.PeerCred = peerCredOf(uc)
	}
	srv.log.Debug("petrel: client connected", "conn", c.info.ID, "remote", c.info.RemoteAddr, "status", int(codec.StatusConnected))
	opts := codec.Options{MaxPayload: srv.cfg.MaxPayload, MAC: srv.mac != nil}
	c.x = srv.newExchange()
	c.buf = make([]byte, 0, stdReadBuf)
	c.ctx.watch = c.startWatch
	for {
		// Decode whatever is buffered; read more only when needed.
		f, n, need, err := codec.Parse(c.buf, opts)
		if err != nil {
			c.setBusy(true)
			v := c.refusal(c.x, c.buf, err)
			c.write(v)
			return
		}
		if n == 0 {
			if !c.fill(need) {
				return
			}
			continue
		}
		c.setBusy(true)
		c.ctx.arm()
		r := c.dispatch(c.x, f)
		peerGone := c.stopWatch()
		c.frameStart = time.Time{}
		v := c.frame(c.x, f, r)
		srv.stats.answered(c.info.ID, r.status, n, vecLen(v))
		if !c.write(v) || r.closes || peerGone {
			return
		}
		// Keep unread bytes (pipelined frames) at the front of buf.
		rest := len(c.buf) - n
		if r.abandoned {
			nb := make([]byte, rest, max(stdReadBuf, rest))
			copy(nb, c.buf[n:])
			c.buf = nb
		} else {
			copy(c.buf, c.buf[n:])
			c.buf = c.buf[:rest]
			if cap(c.buf) > stdKeepBuf && rest < stdReadBuf {
				nb := make([]byte, rest, stdReadBuf)
				copy(nb, c.buf)
				c.buf = nb
			}
		}
		if rest == 0 {
			c.setBusy(false)
		}
	}
}

// startWatch starts the watcher. It runs with c.ctx.mu held, on whichever
// goroutine first asked for the handler's ctx.Done.
func (c *stdConn) startWatch() {
	c.watchDone = make(chan struct{})
	c.nc.SetReadDeadline(time.Time{}) // the handler may take its time
	go c.watchPeer()
}

func (c *stdConn) watchPeer() {
	defer close(c.watchDone)
	n, err := c.nc.Read(c.peek[:])
	c.peeked = n == 1
	if err != nil && !isTimeout(err) {
		c.watchErr = err
		c.ctx.cancel()
	}
}

// stopWatch stops the watcher, if the handler started it, and keeps the
// byte it may have read. It reports whether the peer has gone.
func (c *stdConn) stopWatch() bool {
	if !c.ctx.disarm() {
		return false
	}
	c.nc.SetReadDeadline(time.Unix(1, 0))
	<-c.watchDone
	if c.peeked {
		// f's slices lie within c.buf[:len]: appending cannot touch them.
		c.buf = append(c.buf, c.peek[0])
		c.peeked = false
	}
	err := c.watchErr
	c.watchErr = nil
	return err != nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fill reads until at least need more bytes are buffered. It applies the
// idle timeout while no byte of a frame has arrived and the read timeout
// after that. It reports false when the connection should close.
func (c *stdConn) fill(need int) bool {
	srv := c.srv
	want := len(c.buf) + need
	if want > cap(c.buf) {
		nb := make([]byte, len(c.buf), max(want, 2*cap(c.buf)))
		copy(nb, c.buf)
		c.buf = nb
	}
	for len(c.buf) < want {
		if len(c.buf) == 0 {
			c.setBusy(false)
			c.frameStart = time.Time{}
			if srv.closed.Load() {
				return false
			}
			c.setDeadline(srv.cfg.IdleTimeout)
		} else {
			c.setBusy(true)
			// The read timeout runs from the frame's first byte, not from
			// the last read: a peer trickling a byte at a time must not
			// hold the connection forever.
			if c.frameStart.IsZero() {
				c.frameStart = time.Now()
			}
			if rt := srv.cfg.ReadTimeout; rt > 0 {
				c.nc.SetReadDeadline(c.frameStart.Add(rt))
			} else {
				c.nc.SetReadDeadline(time.Time{})
			}
		}
		m, err := c.nc.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+m]
		if m > 0 {
			c.setBusy(true)
		}
		if err != nil {
			if len(c.buf) >= want {
				return true
			}
			if isTimeout(err) {
				if len(c.buf) == 0 && srv.closed.Load() {
					return false
				}
				srv.log.Info("petrel: connection timed out", "conn", c.info.ID, "partial", len(c.buf) > 0)
				return false
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				srv.log.Debug("petrel: read error", "conn", c.info.ID, "status", int(codec.StatusReadError), "err", err)
			}
			return false
		}
	}
	return true
}

func (c *stdConn) setDeadline(d time.Duration) {
	if d > 0 {
		c.nc.SetReadDeadline(time.Now().Add(d))
	} else {
		c.nc.SetReadDeadline(time.Time{})
	}
}

// write sends an answer: small ones in one write from a reused buffer,
// large ones with writev so the payload is not copied.
func (c *stdConn) write(v [][]byte) bool {
	var err error
	if n := vecLen(v); n <= stdSmallAnswer {
		c.out = c.out[:0]
		for _, b := range v {
			c.out = append(c.out, b...)
		}
		_, err = c.nc.Write(c.out)
	} else {
		// WriteTo consumes c.vec from the front, leaving it with no
		// capacity: rebuild it on the fixed array, or every large answer
		// would allocate a new slice.
		c.vec = append(net.Buffers(c.vecArr[:0:len(c.vecArr)]), v...)
		_, err = c.vec.WriteTo(c.nc)
	}
	if err != nil {
		c.srv.log.Debug("petrel: write error", "conn", c.info.ID, "status", int(codec.StatusWriteError), "err", err)
		return false
	}
	return true
}
