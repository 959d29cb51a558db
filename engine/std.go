package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine/internal/lifecycle"
)

// stdTransport is the baseline engine: a goroutine per connection on the
// standard library's net package. Its connections follow the shared
// lifecycle (engine/internal/lifecycle): every read and write deadline comes from the
// connection's phase.
type stdTransport struct {
	srv *Server
	to  lifecycle.Timeouts

	mu    sync.Mutex            // guards conns
	conns map[*stdConn]struct{} // open connections
	wg    sync.WaitGroup        // connection goroutines
}

func newStdTransport(srv *Server) (*stdTransport, error) {
	return &stdTransport{srv: srv, to: srv.cfg.timeouts(), conns: map[*stdConn]struct{}{}}, nil
}

func (t *stdTransport) open(nc net.Conn) bool {
	srv := t.srv
	if srv.cfg.TLS != nil {
		nc = tls.Server(&progressConn{Conn: nc, d: t.to.Write}, srv.cfg.TLS)
	}
	c := &stdConn{t: t, nc: nc}
	c.init(srv)
	c.local, c.remote = nc.LocalAddr(), nc.RemoteAddr()
	t.mu.Lock()
	if srv.forcedNow() {
		t.mu.Unlock()
		return false
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1) // Done in c.end
	t.mu.Unlock()
	srv.connOpened(&c.session)
	go c.serve()
	return true
}

func (t *stdTransport) remove(c *stdConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// drain interrupts every connection's read: one waiting for a frame, or in
// the middle of one, sees the draining flag and closes; one whose handler
// runs finishes its answer first.
func (t *stdTransport) drain() {
	t.mu.Lock()
	for c := range t.conns {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
	t.mu.Unlock()
	t.srv.budget.wake() // connections waiting for room are mid-frame: they close
}

func (t *stdTransport) close(bound time.Duration) error {
	t.mu.Lock()
	for c := range t.conns {
		// Close first, then cancel: a handler woken by the cancellation
		// finds the connection closed and cannot answer on it. One whose
		// answer is running or being written is reset: a torn frame must
		// not end like a clean close.
		if p := c.lc.Phase(); p == lifecycle.Dispatched || p == lifecycle.Writing {
			c.cutOnClose()
		}
		c.nc.Close()
		c.ctx.cancel()
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		// Handlers that ignore their context: abandoned. Their goroutines
		// end when they return (the connection is closed under them).
		t.mu.Lock()
		n := len(t.conns)
		t.mu.Unlock()
		t.srv.log.Warn("petrel: handlers still running after Close; abandoned", "count", n)
	}
	return nil
}

// stdConn is one connection of the std engine, served by one goroutine.
type stdConn struct {
	session
	lc   lifecycle.State
	hold holding
	x    *exchange
	t    *stdTransport
	nc   net.Conn

	local    net.Addr             // ConnInfo.LocalAddr
	tlsState *tls.ConnectionState // ConnInfo.TLS, once the handshake is done
	peerCred *PeerCred            // ConnInfo.PeerCred on a Unix socket

	lastUnsent int   // bytes of answers the kernel still held at the last look; 0 once they have left
	sendSince  int64 // while lastUnsent > 0: when those bytes last moved (the write timeout counts from it)

	curLen int   // bytes of the frame being answered
	cause  error // why the read loop ended, if a read failed

	buf []byte // read buffer; frames are decoded in place
	out []byte // small answers are assembled here

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

func (c *stdConn) enter(p lifecycle.Phase) { c.lc.Enter(p, time.Now().UnixNano()) }

// serve is the connection's goroutine: the TLS handshake, then loop.
func (c *stdConn) serve() {
	srv := c.srv
	if tc, ok := c.nc.(*tls.Conn); ok {
		c.enter(lifecycle.Handshake)
		hctx, cancel := context.WithDeadline(context.Background(), c.t.to.DeadlineTime(lifecycle.Handshake, c.lc.Since()))
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			srv.logRated("handshake", slog.LevelInfo, "petrel: TLS handshake failed", "conn", c.id, "remote", c.remote, "err", err)
			c.end(err)
			return
		}
		st := tc.ConnectionState()
		c.tlsState = &st
	} else if uc, ok := c.nc.(*net.UnixConn); ok {
		c.peerCred = peerCredOf(uc)
	}
	c.x = c.newExchange()
	c.buf = make([]byte, 0, stdReadBuf)
	c.enter(lifecycle.Idle)
	c.loop()
}

func (c *stdConn) newExchange() *exchange {
	x := c.srv.newExchange()
	x.canWait = true
	x.std = c
	x.info = ConnInfo{LocalAddr: c.local, TLS: c.tlsState, PeerCred: c.peerCred}
	return x
}

// end closes the connection and counts it. The goroutine that owns the
// connection last calls it, once.
func (c *stdConn) end(cause error) {
	c.ctx.cancel()
	c.nc.Close()
	c.srv.budget.set(&c.hold, 0, c)
	c.t.remove(c)
	c.srv.connClosed(&c.session, cause)
	c.t.wg.Done()
}

// loop serves frames through the decode loop until the connection ends,
// or until a timed-out handler's answer hands the connection to a new
// goroutine.
func (c *stdConn) loop() {
	if lifecycle.Decode(&c.session, stdSource{c}, &c.lc, &c.srv.closed, unixNow) == lifecycle.Close {
		if c.srv.drainLingers(c.lc.Phase(), func() int { return connUnread(c.nc) }) {
			c.linger()
		}
		c.end(c.cause)
	}
}

// stdSource is a std connection's side of the decode loop: its read
// buffer, filled by blocking reads; frames are answered on the
// connection's goroutine.
type stdSource struct{ *stdConn }

func (c stdSource) Inbound() []byte { return c.buf }

func (c stdSource) More(_ lifecycle.Verdict, _ []byte, need int) lifecycle.Step {
	if c.cause = c.fill(need); c.cause != nil {
		return lifecycle.Close
	}
	return lifecycle.Continue
}

func (c stdSource) Refuse(buf []byte, err error) lifecycle.Step {
	c.enter(lifecycle.Writing)
	if c.write(c.refusal(c.x, buf, err)) {
		c.linger()
	}
	return lifecycle.Close
}

// ReadAhead: std reads only when it needs bytes, so at a drain the frames
// a peer sent may still be in the kernel.
func (c stdSource) ReadAhead(need int) bool { return connUnread(c.nc) >= max(need, 1) }

func (c stdSource) Serve(f codec.Frame, raw []byte) lifecycle.Step {
	srv := c.srv
	n := len(raw)
	c.enter(lifecycle.Dispatched)
	c.ctx.arm()
	c.x.cur = f
	c.curLen = n
	r := c.dispatch(c.x, f)
	if r.answered {
		// The handler overran its timeout: the timer answered for it
		// and a new goroutine serves the connection now.
		return lifecycle.Pause
	}
	peerGone := c.stopWatch()
	c.enter(lifecycle.Writing)
	vec := c.frame(c.x, f, r)
	size := vecLen(vec)
	srv.stats.answered(c.id, r.status, n, size)
	if srv.halt.Load() || !c.write(vec) || peerGone {
		return lifecycle.Close
	}
	// The answer has been written whole. A large one (or one behind an
	// answer that was still leaving) may still sit in the kernel's send
	// buffer: until it has left, the connection is writing (fill watches
	// it go), and only then does the idle timer start.
	unsent, prev := 0, c.lastUnsent
	if (size > bigAnswer || prev > 0) && !r.closes {
		unsent = connUnsent(c.nc)
	}
	now := unixNow()
	if unsent > 0 && (prev == 0 || unsent < prev+size) {
		// A new answer leaving, or the one before it moved.
		c.sendSince = now
	}
	// (Else nothing of the answer before moved: its clock runs on.)
	c.lastUnsent = unsent
	when := now
	if unsent > 0 {
		when = c.sendSince
	}
	if c.lc.Answered(unsent > 0, r.closes, when) == lifecycle.Lingering {
		c.linger()
		return lifecycle.Close
	}
	c.consume(n, r.abandoned)
	return lifecycle.Continue
}

// evict closes c for the inbound budget. Any goroutine.
func (c *stdConn) evict() { c.nc.Close() }

// answerTimedOut writes the timeout's answer for a handler still running
// on the connection's goroutine, then serves the connection on a new
// goroutine: the old one ends when its handler returns, and the handler
// keeps its exchange and the bytes of its frame. Timer goroutine.
func (c *stdConn) answerTimedOut(x *exchange, r result) {
	peerGone := c.stopWatch()
	c.enter(lifecycle.Writing)
	v := c.frame(x, x.cur, r)
	c.srv.stats.answered(c.id, r.status, c.curLen, vecLen(v))
	ok := !c.srv.halt.Load() && !peerGone && c.write(v)
	c.x = c.newExchange()
	c.consume(c.curLen, true)
	c.enter(lifecycle.Idle)
	if !ok {
		c.end(nil)
		return
	}
	go c.loop()
}

// consume drops the first n bytes of buf (a served frame), keeping
// pipelined bytes at the front.
func (c *stdConn) consume(n int, abandoned bool) {
	rest := len(c.buf) - n
	switch {
	case abandoned:
		// A timed-out handler may still read the frame's bytes.
		nb := make([]byte, rest, max(stdReadBuf, rest))
		copy(nb, c.buf[n:])
		c.buf = nb
	case cap(c.buf) > stdKeepBuf && rest < stdReadBuf:
		nb := make([]byte, rest, stdReadBuf)
		copy(nb, c.buf[n:])
		c.buf = nb
	default:
		copy(c.buf, c.buf[n:])
		c.buf = c.buf[:rest]
	}
	c.srv.budget.set(&c.hold, int64(len(c.buf)), c)
}

// stdContext is the context a std connection's handlers receive: the
// connection's (connContext), except that the first Done call while a
// handler runs starts the watcher, which cancels it if the peer goes away:
// the connection's goroutine, running the handler, cannot see that.
type stdContext struct{ c *stdConn }

func (s stdContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (s stdContext) Err() error                  { return s.c.ctx.Err() }
func (s stdContext) Value(any) any               { return nil }
func (s stdContext) String() string              { return "petrel.connContext" }

func (s stdContext) Done() <-chan struct{} {
	cc := &s.c.ctx
	cc.mu.Lock()
	if cc.armed && !cc.canceled {
		cc.armed, cc.watching = false, true
		s.c.startWatch()
	}
	cc.mu.Unlock()
	return cc.Done()
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
		// The peer has gone or half-closed: cancel the handler's context
		// (as net/http does); its answer is still written.
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
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// A half-close: the peer still reads. Answer it, and the frames
		// already read behind it, then close. (Under TLS a FIN after part
		// of a record is crypto/tls's unexpected EOF.)
		return false
	}
	return err != nil
}

// fill reads until at least need more bytes are buffered, under the
// deadline of the connection's phase (idle or reading). The buffer grows
// with the bytes that actually arrive, never to a frame's declared size
// up front. It returns why the connection should close, or nil.
// readsAhead reports whether a draining connection reads on: idle, with
// bytes waiting in the kernel, or reading a frame whose rest (to fill the
// buffer to want) is all there. Otherwise the drain closes it.
func (c *stdConn) readsAhead(want int) bool {
	switch c.lc.Phase() {
	case lifecycle.Idle:
		return connUnread(c.nc) > 0
	case lifecycle.Reading:
		return connUnread(c.nc) >= want-len(c.buf)
	}
	return false
}

func (c *stdConn) fill(need int) error {
	srv := c.srv
	want := len(c.buf) + need
	interrupted := false
	for len(c.buf) < want {
		grow := cap(c.buf)-len(c.buf) < min(want-len(c.buf), stdReadBuf) || len(c.buf) == cap(c.buf)
		size := cap(c.buf)
		if grow {
			size = min(want, max(2*cap(c.buf), stdReadBuf))
		}
		if len(c.buf) > 0 {
			// A buffer holding part of a frame is charged before it
			// grows: over the server's inbound budget, the growth is
			// given back and the connection waits for room for it (the
			// peer is held back by TCP meanwhile), within the read
			// deadline. So the budget bounds what is allocated, however
			// many connections wait.
			for waited := false; srv.budget.set(&c.hold, int64(size), c); waited = true {
				held := int64(cap(c.buf))
				srv.budget.set(&c.hold, held, c)
				if !waited {
					srv.stats.evicted.Add(1) // once per wait, however often it is woken
				}
				dl := c.t.to.DeadlineTime(c.lc.Phase(), c.lc.Since())
				if !srv.budget.waitRoom(int64(size)-held, dl, srv.forced, srv.closed.Load) {
					if srv.closed.Load() {
						return errDraining // a partial frame: closed at once
					}
					srv.stats.timedOut.Add(1)
					return errors.New("petrel: inbound budget exhausted")
				}
			}
		}
		if grow {
			nb := make([]byte, len(c.buf), size)
			copy(nb, c.buf)
			c.buf = nb
		}
		dl := c.t.to.DeadlineTime(c.lc.Phase(), c.lc.Since())
		if c.lastUnsent > 0 {
			// An answer is still leaving the kernel (the connection
			// writing, or already reading the next request): look at its
			// progress now and then.
			if p := time.Now().Add(writePoll(c.t.to.Write)); dl.IsZero() || p.Before(dl) {
				dl = p
			}
		}
		c.nc.SetReadDeadline(dl)
		if srv.closed.Load() && lifecycle.ClosesWhenDraining(c.lc.Phase()) {
			// The drain interrupts each connection's read once: when that
			// came between our last read and the deadline just set, it was
			// overwritten. Closed is set before the interruption, so
			// looking now cannot miss it.
			if !c.readsAhead(want) {
				return errDraining
			}
			// Frames the peer sent before the drain wait in the kernel
			// (or the rest of the frame begun, all of it): read them, as
			// the reactor reads what arrives, and answer those that are
			// whole. The read takes what is there; under
			// TLS a partial record could block, hence the linger bound.
			if ld := time.Now().Add(lifecycle.LingerTime); dl.IsZero() || ld.Before(dl) {
				c.nc.SetReadDeadline(ld)
			}
		}
		m, err := c.nc.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+m]
		if m > 0 && (c.lc.Phase() == lifecycle.Idle || c.lc.Phase() == lifecycle.Writing) {
			// A request (the next one, pipelined behind an answer still
			// leaving) is arriving: the read timeout applies.
			c.enter(lifecycle.Reading)
		}
		if err != nil {
			if len(c.buf) >= want {
				return nil
			}
			if isTimeout(err) && c.lastUnsent > 0 {
				if err := c.watchSending(); err != nil {
					return err
				}
				// Writing is timed by watchSending; another phase's own
				// deadline may not be due yet (NoDeadline never is).
				if p := c.lc.Phase(); p == lifecycle.Writing || unixNow() < c.t.to.Deadline(p, c.lc.Since()) {
					continue // only the look at the answer was due
				}
			}
			if isTimeout(err) {
				if srv.closed.Load() {
					if !interrupted && m == 0 && c.readsAhead(want) {
						// The drain's interruption came after our deadline:
						// look again, and read what the peer sent before.
						interrupted = true
						continue
					}
					return errDraining
				}
				srv.stats.timedOut.Add(1)
				srv.logRated("timeout", slog.LevelInfo, "petrel: connection timed out", "conn", c.id, "phase", c.lc.Phase().String())
				return err
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				srv.log.Debug("petrel: read error", "conn", c.id, "status", int(codec.StatusReadError), "err", err)
			}
			return err
		}
	}
	return nil
}

// watchSending looks at an answer the kernel is still sending, when
// fill's poll ends: once it has all left, a writing connection is idle
// (the idle timer starts now); while it shrinks, the write timeout counts
// from now; when it has not moved for the write timeout, the connection
// is closed, whatever it is reading meanwhile.
func (c *stdConn) watchSending() error {
	u := connUnsent(c.nc)
	writing := c.lc.Phase() == lifecycle.Writing
	switch {
	case u == 0:
		if writing {
			c.enter(lifecycle.Idle)
		}
	case u < c.lastUnsent:
		c.sendSince = unixNow()
		if writing {
			c.lc.Enter(lifecycle.Writing, c.sendSince)
		}
	case c.t.to.Write > 0 && time.Since(time.Unix(0, c.sendSince)) >= c.t.to.Write:
		c.writeTimedOut()
		return errWriteTimeout
	}
	c.lastUnsent = u
	return nil
}

// errWriteTimeout ends a connection whose answer stopped moving in the
// kernel for the write timeout.
var errWriteTimeout = errors.New("petrel: write timed out")

// write sends an answer: small ones in one write from a reused buffer,
// large ones from the caller's slices. A write that makes no progress for
// WriteTimeout ends the connection (reset: a torn answer must not look
// like a clean close); a peer that keeps reading is never cut off
// (writeProgress).
func (c *stdConn) write(v [][]byte) bool {
	var err error
	if n := vecLen(v); n <= stdSmallAnswer {
		c.out = c.out[:0]
		for _, b := range v {
			c.out = append(c.out, b...)
		}
		err = c.send(c.out)
	} else {
		for _, b := range v {
			if err = c.send(b); err != nil {
				break
			}
		}
	}
	if err != nil {
		if isTimeout(err) {
			c.writeTimedOut()
		}
		c.srv.log.Debug("petrel: write error", "conn", c.id, "status", int(codec.StatusWriteError), "err", err)
		return false
	}
	return true
}

// send writes b whole, under the write timeout. Under TLS the socket
// beneath crypto/tls applies it (a progressConn): a tls.Conn whose write
// timed out can never write again, so it must see a timeout only when
// the write timeout has passed.
func (c *stdConn) send(b []byte) error {
	if _, ok := c.nc.(*tls.Conn); ok {
		_, err := c.nc.Write(b)
		return err
	}
	_, err := writeProgress(c.nc, b, c.t.to.Write, time.Time{})
	return err
}

func (c *stdConn) writeTimedOut() {
	c.failTLS()
	c.srv.writeTimedOut(c.id, c.nc)
}

// cutOnClose makes the close of c, whose answer Close cuts short, reset
// it (also under TLS, with no close_notify).
func (c *stdConn) cutOnClose() {
	c.failTLS()
	resetOnClose(c.nc)
}

// failTLS makes a TLS connection's close send no close_notify (to a peer
// that may not read it): the close resets.
func (c *stdConn) failTLS() {
	if tc, ok := c.nc.(*tls.Conn); ok {
		if pc, ok := tc.NetConn().(*progressConn); ok {
			pc.failed.Store(true)
		}
	}
}

// writeTimedOut counts and logs a connection whose answer the write
// timeout cut, and makes closing nc reset it: a torn answer must not look
// like a clean close.
func (s *Server) writeTimedOut(id uint64, nc net.Conn) {
	s.stats.timedOut.Add(1)
	s.logRated("timeout", slog.LevelInfo, "petrel: write timed out", "conn", id)
	resetOnClose(nc)
}

// writePoll bounds how long a blocked write (or a connection waiting for
// the kernel to send an answer) goes without a look at its progress: an
// eighth of the write timeout, at most 250 ms. The write timeout is kept
// to within two of these (bytes the kernel took during one count from its
// end).
func writePoll(d time.Duration) time.Duration {
	if d <= 0 {
		return 250 * time.Millisecond // no write timeout: only the look at the kernel's queue
	}
	return max(min(d/8, 250*time.Millisecond), time.Millisecond)
}

// writeProgress writes b whole to nc, a socket, and fails with a timeout
// only once the write has made no progress for d (d <= 0: no timeout), or
// at the deadline dl when it is set. Progress is bytes the kernel took, or
// its send queue shrinking (the kernel wakes a blocked writer only once
// much of its buffer is free: on a Unix socket, three quarters of it).
func writeProgress(nc net.Conn, b []byte, d time.Duration, dl time.Time) (int, error) {
	if d <= 0 {
		return nc.Write(b) // no write timeout (a deadline dl is already set on nc)
	}
	poll := writePoll(d)
	written, lastUnsent := 0, -1
	now := time.Now()
	last := now
	for {
		next := now.Add(poll)
		if !dl.IsZero() && dl.Before(next) {
			next = dl
		}
		nc.SetWriteDeadline(next)
		n, err := nc.Write(b)
		written += n
		b = b[n:]
		if err == nil || !isTimeout(err) {
			return written, err
		}
		now = time.Now()
		if !dl.IsZero() && !now.Before(dl) {
			return written, err
		}
		u := connUnsent(nc)
		if n > 0 || (lastUnsent >= 0 && u < lastUnsent) {
			last = now
		}
		lastUnsent = u
		if now.Sub(last) >= d {
			return written, err
		}
	}
}

// progressConn is the socket beneath a std TLS connection: its writes
// apply the write timeout by progress (writeProgress), and a write
// deadline set on it (crypto/tls sets one to send close_notify) bounds
// them too.
type progressConn struct {
	net.Conn
	d      time.Duration
	dl     time.Time   // the write deadline set by the caller; zero for none
	failed atomic.Bool // a write timed out: later writes (crypto/tls's close_notify) fail at once
}

func (p *progressConn) Write(b []byte) (int, error) {
	if p.failed.Load() {
		return 0, errWriteTimeout
	}
	n, err := writeProgress(p.Conn, b, p.d, p.dl)
	if err != nil && isTimeout(err) {
		p.failed.Store(true)
	}
	return n, err
}

func (p *progressConn) SetWriteDeadline(t time.Time) error {
	p.dl = t
	return p.Conn.SetWriteDeadline(t)
}

func (p *progressConn) SetDeadline(t time.Time) error {
	p.dl = t
	return p.Conn.SetDeadline(t)
}

// errDraining ends a connection the drain closes while it waits for bytes.
var errDraining = errors.New("petrel: draining")

// resetOnClose makes closing nc reset a TCP connection (also under TLS),
// as the reactor does: an answer torn by the write timeout must not look
// like a clean close to the peer.
func resetOnClose(nc net.Conn) {
	nc = rawConn(nc)
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
}

// rawConn returns the socket beneath nc: under TLS, the one crypto/tls
// writes to.
func rawConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if pc, ok := nc.(*progressConn); ok {
		nc = pc.Conn
	}
	return nc
}

// linger closes the way HTTP servers do after an error answer: shut the
// write side (the answer goes out ahead of the FIN), then read and discard
// what the peer still sends, for at most lingerTime and lingerBytes, so
// that the kernel does not reset the connection under the answer.
func (c *stdConn) linger() {
	c.enter(lifecycle.Lingering)
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.nc.(closeWriter); ok {
		if cw.CloseWrite() != nil {
			return
		}
	}
	c.nc.SetReadDeadline(time.Now().Add(lifecycle.LingerTime))
	var scratch [4 << 10]byte
	for total := 0; total < lifecycle.LingerBytes; {
		n, err := c.nc.Read(scratch[:])
		total += n
		if err != nil {
			return
		}
	}
}
