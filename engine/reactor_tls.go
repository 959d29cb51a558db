package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/petrel-rpc/petrel/codec"
)

// TLS on the reactor: see the package documentation for the design.

// errWouldBlock is the pipe's "no bytes yet" after the handshake.
var errWouldBlock = &wouldBlockError{}

type wouldBlockError struct{}

func (*wouldBlockError) Error() string   { return "petrel: tls pipe: would block" }
func (*wouldBlockError) Timeout() bool   { return true }
func (*wouldBlockError) Temporary() bool { return true }

// tlsPipe is the net.Conn crypto/tls runs on.
type tlsPipe struct {
	rc *rconn

	mu       sync.Mutex                 // guards in, closed, blocking, out
	cond     sync.Cond                  // signalled when in grows or closed is set
	in       *bytebufferpool.ByteBuffer // ciphertext fed by the loop, nil when empty
	inOff    int                        // read offset into in
	out      *bytebufferpool.ByteBuffer // ciphertext waiting for the loop, nil when empty
	closed   bool
	blocking bool // Read blocks (during the handshake)

	wakeSet atomic.Bool // a flush is already scheduled or running

	local, remote net.Addr
}

func newTLSPipe(rc *rconn) *tlsPipe {
	p := &tlsPipe{rc: rc, blocking: true, local: rc.info.LocalAddr, remote: rc.info.RemoteAddr}
	p.cond.L = &p.mu
	return p
}

// feed appends ciphertext from the socket. Loop goroutine.
func (p *tlsPipe) feed(b []byte) {
	p.mu.Lock()
	if p.in == nil {
		p.in = bytebufferpool.Get()
		p.in.B = p.in.B[:0]
		p.inOff = 0
	}
	p.in.B = append(p.in.B, b...)
	p.cond.Signal()
	p.mu.Unlock()
}

// buffered returns the ciphertext bytes fed but not yet read.
func (p *tlsPipe) buffered() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.in == nil {
		return 0
	}
	return len(p.in.B) - p.inOff
}

// Read implements net.Conn for crypto/tls.
func (p *tlsPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.in == nil && !p.closed {
		if !p.blocking {
			return 0, errWouldBlock
		}
		p.cond.Wait()
	}
	if p.in == nil {
		return 0, net.ErrClosed
	}
	n := copy(b, p.in.B[p.inOff:])
	p.inOff += n
	if p.inOff == len(p.in.B) {
		bytebufferpool.Put(p.in)
		p.in = nil
	}
	return n, nil
}

// Write implements net.Conn: it queues a copy (crypto/tls reuses its
// buffer) and never blocks.
func (p *tlsPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, net.ErrClosed
	}
	if p.out == nil {
		p.out = bytebufferpool.Get()
		p.out.B = p.out.B[:0]
	}
	p.out.B = append(p.out.B, b...)
	p.mu.Unlock()
	p.kick()
	return len(b), nil
}

// kick schedules a flush on the loop unless one is already due.
func (p *tlsPipe) kick() {
	if p.wakeSet.CompareAndSwap(false, true) {
		p.rc.gc.Wake(nil)
	}
}

// takeOut removes the queued ciphertext. Loop goroutine.
func (p *tlsPipe) takeOut() *bytebufferpool.ByteBuffer {
	p.mu.Lock()
	o := p.out
	p.out = nil
	p.mu.Unlock()
	return o
}

// Close wakes a blocked Read; the socket itself is closed by the loop.
func (p *tlsPipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	return nil
}

// release returns the pipe's buffers after the connection closed.
func (p *tlsPipe) release() {
	p.mu.Lock()
	if p.in != nil {
		bytebufferpool.Put(p.in)
		p.in = nil
	}
	if p.out != nil {
		bytebufferpool.Put(p.out)
		p.out = nil
	}
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *tlsPipe) stopBlocking() {
	p.mu.Lock()
	p.blocking = false
	p.mu.Unlock()
}

func (p *tlsPipe) LocalAddr() net.Addr              { return p.local }
func (p *tlsPipe) RemoteAddr() net.Addr             { return p.remote }
func (p *tlsPipe) SetDeadline(time.Time) error      { return nil }
func (p *tlsPipe) SetReadDeadline(time.Time) error  { return nil }
func (p *tlsPipe) SetWriteDeadline(time.Time) error { return nil }

// rtls is a reactor connection's TLS state.
type rtls struct {
	pipe        *tlsPipe
	conn        *tls.Conn
	started     bool        // the handshake goroutine was started (loop only)
	established atomic.Bool // the handshake succeeded; the loop may use conn
	failed      atomic.Bool // the handshake failed: close
	closeAfter  atomic.Bool // close once the queued ciphertext is flushed
	peerClosed  bool        // close_notify or EOF from the peer (loop only)
	plain       *bytebufferpool.ByteBuffer
	plainOff    int // start of undecoded plaintext in plain
}

const tlsReadChunk = 16 << 10 // room for one full TLS record per Read

func (t *reactorTransport) openTLS(rc *rconn) {
	rc.tls = &rtls{}
	rc.tls.pipe = newTLSPipe(rc)
	rc.tls.conn = tls.Server(rc.tls.pipe, t.srv.cfg.TLS)
	// Until the handshake is done, the handshake timeout applies.
	rc.deadline.Store(t.wheel.now.Load() + int64(t.srv.cfg.HandshakeTimeout))
}

// processTLS is OnTraffic for a TLS connection. Loop goroutine.
func (rc *rconn) processTLS() gnet.Action {
	x := rc.tls
	c := rc.gc
	x.pipe.wakeSet.Store(true) // writes made now are flushed below
	act := rc.trafficTLS()
	// Flush queued ciphertext; loop until no writer slipped in between the
	// flush and clearing the flag.
	for {
		if o := x.pipe.takeOut(); o != nil {
			c.Write(o.B)
			bytebufferpool.Put(o)
		}
		x.pipe.wakeSet.Store(false)
		x.pipe.mu.Lock()
		pending := x.pipe.out != nil
		x.pipe.mu.Unlock()
		if !pending || !x.pipe.wakeSet.CompareAndSwap(false, true) {
			break
		}
	}
	if act == gnet.None && (x.failed.Load() || x.closeAfter.Load()) {
		act = gnet.Close
	}
	return act
}

func (rc *rconn) trafficTLS() gnet.Action {
	x := rc.tls
	t := rc.t
	c := rc.gc
	if buf, _ := c.Peek(-1); len(buf) > 0 {
		if rc.state.Load() != stateIdle && x.pipe.buffered()+len(buf) > t.backlogLimit {
			t.srv.log.Warn("petrel: pipelined backlog over the limit; closing", "conn", rc.info.ID)
			return gnet.Close
		}
		x.pipe.feed(buf)
		c.Discard(len(buf))
		if !x.started {
			x.started = true
			if t.handshakes.Add(1) > int64(t.srv.cfg.MaxHandshakes) {
				t.handshakes.Add(-1)
				t.srv.stats.refused.Add(1)
				t.srv.log.Warn("petrel: too many TLS handshakes in progress; closing", "conn", rc.info.ID)
				return gnet.Close
			}
			t.hsWG.Add(1)
			go rc.handshake()
		}
	}
	if !x.established.Load() {
		if t.srv.draining.Load() {
			return gnet.Close
		}
		return gnet.None
	}
	if rc.state.Load() != stateIdle {
		return gnet.None
	}
	return rc.decodeTLS()
}

// handshake runs crypto/tls's handshake on its own goroutine.
func (rc *rconn) handshake() {
	t := rc.t
	defer t.hsWG.Done()
	defer t.handshakes.Add(-1)
	x := rc.tls
	ctx, cancel := context.WithTimeout(context.Background(), t.srv.cfg.HandshakeTimeout)
	err := x.conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		t.srv.log.Info("petrel: TLS handshake failed", "conn", rc.info.ID, "remote", rc.info.RemoteAddr, "err", err)
		x.failed.Store(true)
		x.pipe.wakeSet.Store(false)
		x.pipe.kick()
		return
	}
	st := x.conn.ConnectionState()
	rc.info.TLS = &st
	x.pipe.stopBlocking()
	rc.idle(t.wheel.now.Load())
	x.established.Store(true)
	// The first request often arrived with the client's Finished and sits
	// inside crypto/tls already: no socket event will come for it.
	x.pipe.wakeSet.Store(false)
	x.pipe.kick()
}

// decodeTLS decrypts what it can and serves the frames in it. Loop
// goroutine, state idle, handshake done.
func (rc *rconn) decodeTLS() gnet.Action {
	x := rc.tls
	srv := rc.srv
	for {
		if rc.gc.OutboundBuffered() > outboundHighWater {
			rc.t.stall(rc)
			return gnet.None
		}
		// Serve the frames already decrypted.
		if x.plain != nil && x.plainOff < len(x.plain.B) {
			f, n, _, err := codec.Parse(x.plain.B[x.plainOff:], rc.t.opts)
			if err != nil {
				rc.logRefusal(err)
				ex := srv.getExchange()
				v := rc.refusal(ex, x.plain.B[x.plainOff:], err)
				srv.stats.answered(rc.info.ID, codec.StatusOf(err), len(x.plain.B)-x.plainOff, vecLen(v))
				rc.writeTLS(v)
				srv.putExchange(ex)
				x.closeAfter.Store(true)
				return gnet.None
			}
			if n > 0 {
				rc.reading = false
				x.plainOff += n
				if rc.t.pool == nil {
					ex := srv.getExchange()
					r := rc.dispatch(ex, f)
					v := rc.frame(ex, f, r)
					srv.stats.answered(rc.info.ID, r.status, n, vecLen(v))
					rc.writeTLS(v)
					srv.putExchange(ex)
					if r.status.ClosesConn() {
						x.closeAfter.Store(true)
						return gnet.None
					}
					continue
				}
				ex := srv.getExchange()
				ex.rc = rc
				ex.cur = f
				rc.x = ex
				rc.deadline.Store(noDeadline)
				rc.state.Store(stateBusy)
				rc.submit()
				return gnet.None
			}
			if !rc.reading {
				rc.reading = true
				rc.partial(rc.t.wheel.now.Load())
			}
		}
		// Compact, then decrypt more.
		if x.plain == nil {
			x.plain = bytebufferpool.Get()
			x.plain.B = x.plain.B[:0]
			x.plainOff = 0
		} else if x.plainOff > 0 {
			rest := copy(x.plain.B, x.plain.B[x.plainOff:])
			x.plain.B = x.plain.B[:rest]
			x.plainOff = 0
		}
		if cap(x.plain.B)-len(x.plain.B) < tlsReadChunk {
			// Grow geometrically: a large frame arrives a record at a time.
			nb := make([]byte, len(x.plain.B), max(2*cap(x.plain.B), len(x.plain.B)+2*tlsReadChunk))
			copy(nb, x.plain.B)
			x.plain.B = nb
		}
		n, err := x.conn.Read(x.plain.B[len(x.plain.B):cap(x.plain.B)])
		x.plain.B = x.plain.B[:len(x.plain.B)+n]
		if n > 0 {
			continue
		}
		var ne net.Error
		if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
			// Nothing more for now.
			if len(x.plain.B) == 0 {
				bytebufferpool.Put(x.plain)
				x.plain = nil
				rc.reading = false
				rc.idle(rc.t.wheel.now.Load())
				if srv.draining.Load() {
					return gnet.Close
				}
			} else if srv.draining.Load() {
				return gnet.Close
			}
			return gnet.None
		}
		if !errors.Is(err, io.EOF) {
			srv.log.Debug("petrel: TLS read error", "conn", rc.info.ID, "err", err)
		}
		x.peerClosed = true
		return gnet.Close
	}
}

// writeTLS encrypts an answer as one record stream. Any goroutine; the
// ciphertext is flushed by the loop.
func (rc *rconn) writeTLS(v [][]byte) {
	o := bytebufferpool.Get()
	o.B = o.B[:0]
	for _, b := range v {
		o.B = append(o.B, b...)
	}
	_, err := rc.tls.conn.Write(o.B)
	bytebufferpool.Put(o)
	if err != nil {
		rc.tls.closeAfter.Store(true)
	}
}

// handleTLS is the worker's half for a TLS connection: answer, then hand
// the connection back to the loop with one wake.
func (rc *rconn) handleTLS() {
	srv := rc.srv
	ex := rc.x
	f := ex.cur
	r := rc.dispatch(ex, f)
	v := rc.frame(ex, f, r)
	srv.stats.answered(rc.info.ID, r.status, codec.Len(f, srv.mac != nil), vecLen(v))
	rc.writeTLS(v)
	if r.status.ClosesConn() {
		rc.tls.closeAfter.Store(true)
	}
	rc.x = nil
	if !r.abandoned {
		srv.putExchange(ex)
	}
	if r.abandoned && rc.tls.plain != nil {
		// The timed-out handler may still read the plaintext buffer.
		rest := append([]byte(nil), rc.tls.plain.B[rc.tls.plainOff:]...)
		rc.tls.plain = &bytebufferpool.ByteBuffer{B: rest}
		rc.tls.plainOff = 0
	}
	rc.idle(rc.t.wheel.now.Load())
	rc.state.Store(stateIdle)
	rc.tls.pipe.wakeSet.Store(false)
	rc.tls.pipe.kick()
}

// closeTLS releases TLS state when the connection closes. Loop goroutine.
func (rc *rconn) closeTLS() {
	x := rc.tls
	x.pipe.release()
	if rc.state.Load() == stateIdle && x.plain != nil {
		bytebufferpool.Put(x.plain)
		x.plain = nil
	}
}
