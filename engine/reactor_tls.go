//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine/internal/lifecycle"
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
	eof      bool // the peer has half-closed: Read ends with io.EOF once in is empty
	blocking bool // Read blocks (during the handshake)

	wakeSet atomic.Bool // a flush is already scheduled or running

	local, remote net.Addr
}

func newTLSPipe(rc *rconn) *tlsPipe {
	p := &tlsPipe{rc: rc, blocking: true, local: rc.localAddr(), remote: rc.remote}
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
	for p.in == nil && !p.closed && !p.eof {
		if !p.blocking {
			return 0, errWouldBlock
		}
		p.cond.Wait()
	}
	if p.in == nil {
		if p.closed {
			return 0, net.ErrClosed
		}
		return 0, io.EOF
	}
	n := copy(b, p.in.B[p.inOff:])
	p.inOff += n
	if p.inOff == len(p.in.B) {
		bytebufferpool.Put(p.in)
		p.in = nil
	}
	return n, nil
}

// Write implements net.Conn and never blocks. When nothing is queued ahead
// of it, it writes straight to the socket (under the connection's write
// mutex, which OnClose also takes, so the descriptor cannot have been
// closed and reused); what the socket does not take, or everything when
// ciphertext is already queued or being flushed, is queued as a copy
// (crypto/tls reuses its buffer) for the loop, which is woken once.
func (p *tlsPipe) Write(b []byte) (int, error) {
	rc := p.rc
	rc.wmu.Lock()
	if rc.gone.Load() && rc.orphaned {
		// Half-closed: the orphan's owner finishes on the duplicate.
		rc.wmu.Unlock()
		return rc.writeTLSOrphan(b)
	}
	p.mu.Lock()
	if p.closed || rc.gone.Load() {
		p.mu.Unlock()
		rc.wmu.Unlock()
		return 0, net.ErrClosed
	}
	rest := b
	if p.out == nil && !rc.tls.flushing && !rc.tls.outPending {
		n, err := unix.Write(rc.gc.Fd(), b)
		if n > 0 {
			rest = b[n:]
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			p.mu.Unlock()
			rc.wmu.Unlock()
			rc.srv.rt.call(func() { rc.gc.Close() })
			return 0, err
		}
	}
	if len(rest) == 0 {
		p.mu.Unlock()
		rc.wmu.Unlock()
		return len(b), nil
	}
	if p.out == nil {
		p.out = bytebufferpool.Get()
		p.out.B = p.out.B[:0]
	}
	p.out.B = append(p.out.B, rest...)
	p.mu.Unlock()
	rc.wmu.Unlock()
	p.kick()
	return len(b), nil
}

// writeTLSOrphan writes ciphertext b on a half-closed connection's
// duplicate descriptor, after what gnet and the pipe still held at the FIN.
// The orphan's owner only (one goroutine).
func (rc *rconn) writeTLSOrphan(b []byte) (int, error) {
	o := rc.srv.rt.orphan(rc)
	if o == nil {
		return 0, net.ErrClosed // finished
	}
	if out := o.out; out != nil {
		o.out = nil
		if !rc.writeOrphan(o.nc, [][]byte{out}) {
			return 0, net.ErrClosed
		}
	}
	if !rc.writeOrphan(o.nc, [][]byte{b}) {
		return 0, net.ErrClosed
	}
	return len(b), nil
}

// setEOF records the peer's FIN: once the ciphertext fed so far is read,
// Read reports io.EOF (crypto/tls then ends the session's input).
func (p *tlsPipe) setEOF() {
	p.mu.Lock()
	p.eof = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// kick schedules a flush on the loop unless one is already due.
func (p *tlsPipe) kick() {
	if p.wakeSet.CompareAndSwap(false, true) {
		p.rc.srv.rt.wake(p.rc)
	}
}

// pending returns the bytes of ciphertext queued for the loop.
func (p *tlsPipe) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.out == nil {
		return 0
	}
	return len(p.out.B)
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
	started     atomic.Bool          // the handshake goroutine was started
	hello       atomic.Bool          // a whole first record has arrived: the full handshake timeout applies
	slotAddr    string               // the remote IP holding a per-address handshake slot, "" if none
	waiting     bool                 // queued for a slot of its address (guarded by the transport's hsMu)
	established atomic.Bool          // the handshake succeeded; the loop may use conn
	failed      atomic.Bool          // the handshake failed: close
	peerEOF     bool                 // crypto/tls reported the end of the peer's stream (loop only)
	plainBuf    *[]byte              // pooled backing of plain, nil if plain is not pooled
	plain       []byte               // decrypted bytes not yet served; nil when none
	plainOff    int                  // start of undecoded plaintext in plain
	state       *tls.ConnectionState // ConnInfo.TLS, once established
	flushing    bool                 // the loop is writing queued ciphertext (guarded by rconn.wmu)
	outPending  bool                 // gnet still held unsent ciphertext at the last flush (guarded by rconn.wmu)
}

const tlsReadChunk = 16 << 10 // room for one full TLS record per Read

func (t *reactorTransport) openTLS(rc *rconn) {
	rc.tls = &rtls{}
	rc.tls.pipe = newTLSPipe(rc)
	rc.tls.conn = tls.Server(rc.tls.pipe, t.srv.cfg.TLS)
}

// processTLS is OnTraffic for a TLS connection: the lifecycle's check,
// then the traffic (handshake or decoding), then the flush of queued
// ciphertext. When the flush finishes the answer being sent, it looks
// again at once: frames may wait behind that answer, or the server may be
// draining, and no further event would come for either. Loop goroutine.
func (rc *rconn) processTLS() gnet.Action {
	x := rc.tls
	for round := 0; ; round++ {
		x.pipe.wakeSet.Store(true) // writes made now are flushed below
		var act gnet.Action
		if a, stop := rc.check(); stop {
			act = a
		} else if rc.lc.Phase() == lifecycle.Lingering {
			act = rc.discardLinger()
		} else {
			act = rc.trafficTLS()
		}
		if !rc.flushTLS() {
			return gnet.None // gnet closed the connection
		}
		if act == gnet.None && x.failed.Load() {
			act = gnet.Close
		}
		if act != gnet.None || rc.state.Load() != stateIdle || rc.lc.Phase() != lifecycle.Writing {
			return act
		}
		// The flush may have finished the answer: look again.
		if a, stop := rc.check(); stop {
			return a
		}
		if rc.lc.Phase() == lifecycle.Writing {
			return gnet.None // the wheel looks again at its next tick
		}
		if round == maxTLSRounds {
			// Many answers in a row finished in their flush: go on in a
			// later event, so that other connections get their turn.
			x.pipe.wakeSet.Store(false)
			x.pipe.kick()
			return gnet.None
		}
	}
}

// maxTLSRounds bounds the rounds of processTLS in one event.
const maxTLSRounds = 16

// flushTLS writes the ciphertext queued in the pipe to gnet, looping until
// no writer slipped in between the flush and clearing the wake flag. It
// reports false when gnet has closed the connection. Loop goroutine.
func (rc *rconn) flushTLS() bool {
	x := rc.tls
	c := rc.gc
	for {
		rc.wmu.Lock()
		o := x.pipe.takeOut()
		x.flushing = o != nil
		rc.wmu.Unlock()
		if o != nil {
			_, err := c.Write(o.B)
			bytebufferpool.Put(o)
			rc.wmu.Lock()
			x.flushing = false
			if err == nil {
				// Writers may go straight to the socket again only once
				// gnet holds nothing of ours.
				x.outPending = c.OutboundBuffered() > 0
			}
			rc.wmu.Unlock()
			if err != nil {
				return false
			}
		} else if x.outPending {
			rc.wmu.Lock()
			x.outPending = c.OutboundBuffered() > 0
			rc.wmu.Unlock()
		}
		x.pipe.wakeSet.Store(false)
		x.pipe.mu.Lock()
		pending := x.pipe.out != nil
		x.pipe.mu.Unlock()
		if !pending || !x.pipe.wakeSet.CompareAndSwap(false, true) {
			return true
		}
	}
}

func (rc *rconn) trafficTLS() gnet.Action {
	x := rc.tls
	t := rc.srv.rt
	c := rc.gc
	if buf, _ := c.Peek(-1); len(buf) > 0 {
		// As on plain TCP: a backlog counts while a request is in
		// flight or its answer is still leaving.
		busy := rc.state.Load() != stateIdle || rc.lc.Phase() == lifecycle.Writing
		if busy && x.pipe.buffered()+len(buf) > t.backlogLimit && rc.backlogged() {
			t.srv.stats.evicted.Add(1)
			t.srv.logRated("refusal", slog.LevelWarn, "petrel: pipelined backlog over the limit; closing", "conn", rc.id)
			return gnet.Close
		}
		x.pipe.feed(buf)
		c.Discard(len(buf))
		if rc.charge(int64(x.pipe.buffered())) {
			return gnet.Close
		}
	}
	if !x.established.Load() && t.srv.closed.Load() {
		return gnet.Close // draining: a handshake has nothing to answer
	}
	if !x.started.Load() {
		switch firstRecord(x.pipe) {
		case recordPartial:
			return gnet.None // no slot until a whole first record is here
		case recordBad:
			t.srv.logRated("handshake", slog.LevelInfo, "petrel: not a TLS ClientHello; closing", "conn", rc.id, "remote", rc.remote)
			return gnet.Close
		}
		x.hello.Store(true)
		switch t.takeHandshakeSlot(rc) {
		case slotRefused:
			return gnet.Close
		case slotWait:
			return gnet.None // woken when its address frees a slot
		}
		x.started.Store(true)
		rc.lc.Enter(lifecycle.Handshake, t.wheel.now.Load())
		t.hsWG.Add(1)
		go rc.handshake()
	}
	if !x.established.Load() {
		if t.srv.closed.Load() {
			return gnet.Close
		}
		return gnet.None
	}
	if rc.lc.Phase() == lifecycle.Writing || rc.markPending() {
		return gnet.None
	}
	return rc.decodeTLS()
}

// First-record checks before a handshake takes a slot.
const (
	recordPartial = iota
	recordWhole
	recordBad
)

// firstRecord reports whether the pipe holds a whole first TLS record
// that can be a ClientHello (a handshake record of a plausible length).
func firstRecord(p *tlsPipe) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.in == nil {
		return recordPartial
	}
	b := p.in.B[p.inOff:]
	if len(b) >= 1 && b[0] != 0x16 {
		return recordBad
	}
	if len(b) < 5 {
		return recordPartial
	}
	n := int(b[3])<<8 | int(b[4])
	if n == 0 || n > 16384+2048 {
		return recordBad
	}
	if len(b) < 5+n {
		return recordPartial
	}
	return recordWhole
}

// Outcomes of takeHandshakeSlot.
const (
	slotTaken   = iota
	slotWait    // the address's share is in use: wait for one of its slots
	slotRefused // MaxHandshakes is in use: close
)

// takeHandshakeSlot reserves a slot of MaxHandshakes and of the remote
// address's share of them. When MaxHandshakes is full the connection is
// refused (counted, logged at a bounded rate); when only its address's
// share is, it waits for one of that address's handshakes to end (within
// its own handshake deadline), so that one address cannot crowd others
// out, and a burst from one address is delayed, not refused. Loop
// goroutine.
func (t *reactorTransport) takeHandshakeSlot(rc *rconn) int {
	srv := t.srv
	var key string
	per := srv.cfg.MaxHandshakesPerAddr
	if ta, ok := rc.remote.(*net.TCPAddr); ok && per > 0 {
		key = string(ta.IP.To16())
		t.hsMu.Lock()
		if t.hsByAddr[key] >= per {
			if !rc.tls.waiting {
				rc.tls.waiting = true
				t.hsWait[key] = append(t.hsWait[key], rc)
			}
			t.hsMu.Unlock()
			srv.logRated("handshake", slog.LevelInfo, "petrel: TLS handshakes from one address at its limit; waiting",
				"conn", rc.id, "remote", rc.remote, "max", per)
			return slotWait
		}
		t.hsByAddr[key]++
		t.hsMu.Unlock()
	}
	if t.handshakes.Add(1) > int64(srv.cfg.MaxHandshakes) {
		t.handshakes.Add(-1)
		if key != "" {
			t.releaseAddrSlot(key)
		}
		srv.stats.refused.Add(1)
		srv.logRated("handshake", slog.LevelWarn, "petrel: too many TLS handshakes in progress; closing", "conn", rc.id)
		return slotRefused
	}
	rc.tls.slotAddr = key
	return slotTaken
}

// releaseHandshakeSlot gives back what takeHandshakeSlot took.
func (t *reactorTransport) releaseHandshakeSlot(rc *rconn) {
	t.handshakes.Add(-1)
	if key := rc.tls.slotAddr; key != "" {
		t.releaseAddrSlot(key)
	}
}

// releaseAddrSlot gives back one of key's slots and wakes the oldest
// connection of that address waiting for one.
func (t *reactorTransport) releaseAddrSlot(key string) {
	t.hsMu.Lock()
	if t.hsByAddr[key]--; t.hsByAddr[key] <= 0 {
		delete(t.hsByAddr, key)
	}
	var next *rconn
	for q := t.hsWait[key]; len(q) > 0 && next == nil; q = t.hsWait[key] {
		next, t.hsWait[key] = q[0], q[1:]
		if next.gone.Load() {
			next = nil
		}
	}
	if len(t.hsWait[key]) == 0 {
		delete(t.hsWait, key)
	}
	if next != nil {
		next.tls.waiting = false
	}
	t.hsMu.Unlock()
	if next != nil {
		t.wake(next)
	}
}

// handshake runs crypto/tls's handshake on its own goroutine.
func (rc *rconn) handshake() {
	t := rc.srv.rt
	defer t.hsWG.Done()
	defer t.releaseHandshakeSlot(rc)
	x := rc.tls
	ctx, cancel := context.WithTimeout(context.Background(), t.srv.cfg.HandshakeTimeout)
	err := x.conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		t.srv.logRated("handshake", slog.LevelInfo, "petrel: TLS handshake failed", "conn", rc.id, "remote", rc.remote, "err", err)
		x.failed.Store(true)
	} else {
		st := x.conn.ConnectionState()
		x.state = &st
		x.pipe.stopBlocking()
		rc.lc.Enter(lifecycle.Idle, t.wheel.now.Load())
		x.established.Store(true)
	}
	// The peer may have half-closed during the handshake: OnClose (which
	// saw it unfinished: failed and established are stored before this
	// look) then left the connection to this goroutine, to answer what
	// came with the client's Finished on the duplicate descriptor.
	if o := rc.orphanLeft(); o != nil && o.byHandshake {
		go rc.finishOrphan(nil) // counted in orphanWG by OnClose
		return
	}
	// The first request often arrived with the client's Finished and sits
	// inside crypto/tls already: no socket event will come for it.
	x.pipe.wakeSet.Store(false)
	x.pipe.kick()
}

// decodeTLS decrypts everything crypto/tls can give now, then serves the
// frames in it through the decode loop. Draining first means that when a
// request is handed to a worker, any bytes behind it are already in plain,
// where the hand-off can see them. Loop goroutine, state idle, handshake
// done.
func (rc *rconn) decodeTLS() gnet.Action {
	rc.drainTLS()
	st := lifecycle.Decode(&rc.session, tlsSource{rc}, &rc.lc, &rc.srv.closed, rc.srv.rt.clock)
	if st == lifecycle.Close && !rc.tls.peerEOF && rc.srv.drainLingers(rc.lc.Phase(), rc.unread) {
		return rc.startLinger(rc.srv.rt.clock())
	}
	return gnetAction(st)
}

// tlsSource is a TLS reactor connection's side of the decode loop: the
// plaintext crypto/tls has produced, decoded in place. Loop goroutine.
type tlsSource struct{ *rconn }

func (rc tlsSource) Inbound() []byte { return rc.tls.plain[rc.tls.plainOff:] }

func (rc tlsSource) More(v lifecycle.Verdict, buf []byte, _ int) lifecycle.Step {
	if v == lifecycle.Empty {
		rc.tls.releasePlain()
		rc.charge(0)
	} else if rc.charge(int64(len(buf))) {
		return lifecycle.Close
	}
	if rc.tls.peerEOF {
		return lifecycle.Close // nothing more will come
	}
	return lifecycle.Pause
}

func (rc tlsSource) Refuse(buf []byte, err error) lifecycle.Step {
	x := rc.tls
	ex := rc.srv.getExchange()
	rc.writeTLS(rc.refusal(ex, buf, err))
	rc.srv.putExchange(ex)
	x.plainOff = len(x.plain)
	rc.tlsSent(true, 0)
	return lifecycle.Pause
}

// ReadAhead: as plainSource's; the kernel holds ciphertext.
func (rc tlsSource) ReadAhead(need int) bool { return rc.unread() >= max(need, 1) }

func (rc tlsSource) Serve(f codec.Frame, raw []byte) lifecycle.Step {
	x := rc.tls
	srv := rc.srv
	x.plainOff += len(raw)
	if onLoop, nonBlocking := rc.onLoop(f); onLoop {
		ex := srv.getExchange()
		r, vec := rc.answerOnLoop(ex, f, nonBlocking, len(raw))
		size := vecLen(vec)
		rc.writeTLS(vec)
		srv.putExchange(ex)
		if rc.tlsSent(r.closes, size) {
			// Decoding stops here: the connection holds what follows the
			// answered frame.
			srv.budget.set(&rc.hold, int64(len(x.plain)-x.plainOff), rc)
			return lifecycle.Pause
		}
		return lifecycle.Continue
	}
	ex := srv.getExchange()
	ex.canWait = true
	rc.handOff(ex, f, x.plainOff < len(x.plain) || x.peerEOF)
	return lifecycle.Pause
}

// tlsSent moves the connection on after an answer (size bytes of
// plaintext) was encrypted: to writing while ciphertext is still queued
// (in the pipe, in gnet, or, for a large answer, in the kernel), else to
// idle. It reports whether decoding must stop. Any goroutine that owns
// the connection.
func (rc *rconn) tlsSent(closes bool, size int) bool {
	rc.wmu.Lock()
	queued := rc.tls.outPending || rc.tls.flushing || rc.tls.pipe.pending() > 0
	if !queued && size > bigAnswer && !rc.gone.Load() {
		// As on plain TCP: a large answer the kernel took may not have
		// left it yet. (Under wmu: the descriptor is still ours.)
		queued = unsentBytes(rc.gc.Fd()) > 0
	}
	rc.wmu.Unlock()
	now := rc.srv.rt.wheel.now.Load()
	rc.closeAfter = closes
	rc.progress = math.MaxInt32
	// A closing answer waits in writing for its ciphertext to leave;
	// check then lingers.
	return rc.lc.Answered(queued || closes, closes, now) == lifecycle.Writing
}

// drainTLS moves all the plaintext crypto/tls can produce now into plain,
// compacting it first, and sets peerEOF once the peer has finished
// (close_notify, EOF or a TLS error). Loop goroutine.
func (rc *rconn) drainTLS() {
	x := rc.tls
	if x.peerEOF {
		return
	}
	if x.plainOff > 0 {
		rest := copy(x.plain, x.plain[x.plainOff:])
		x.plain = x.plain[:rest]
		x.plainOff = 0
	}
	for {
		if x.plain == nil {
			x.plainBuf = tlsPlainPool.Get().(*[]byte)
			x.plain = (*x.plainBuf)[:0]
			x.plainOff = 0
		}
		if cap(x.plain)-len(x.plain) < tlsReadChunk {
			// Grow geometrically: a large frame arrives a record at a time.
			nb := make([]byte, len(x.plain), max(2*cap(x.plain), len(x.plain)+2*tlsReadChunk))
			copy(nb, x.plain)
			x.plain = nb
		}
		n, err := x.conn.Read(x.plain[len(x.plain):cap(x.plain)])
		x.plain = x.plain[:len(x.plain)+n]
		if err == nil {
			if n == 0 {
				return
			}
			continue
		}
		if isTimeout(err) {
			return
		}
		if !errors.Is(err, io.EOF) {
			rc.srv.log.Debug("petrel: TLS read error", "conn", rc.id, "err", err)
		}
		x.peerEOF = true
		return
	}
}

// tlsPlainPool holds plaintext buffers for TLS connections, so an idle
// connection holds none and a busy one does not allocate per request.
var tlsPlainPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 2*tlsReadChunk)
	return &b
}}

// releasePlain returns the plaintext buffer to its pool (buffers grown for
// a large frame are left to the collector).
func (x *rtls) releasePlain() {
	if x.plainBuf != nil {
		if cap(x.plain) <= 4*tlsReadChunk {
			*x.plainBuf = x.plain[:0]
			tlsPlainPool.Put(x.plainBuf)
		}
		x.plainBuf = nil
	}
	x.plain = nil
	x.plainOff = 0
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
		rc.tls.failed.Store(true)
	}
}

// answerTLS is the worker's half for a TLS connection: answer, then hand
// the connection back to the loop, waking it when it has work.
func (rc *rconn) answerTLS(r result) {
	srv := rc.srv
	ex := rc.x
	f := ex.cur
	v := rc.frame(ex, f, r)
	size := vecLen(v)
	srv.stats.answered(rc.id, r.status, codec.Len(f, srv.mac != nil), size)
	if !srv.halt.Load() {
		rc.writeTLS(v)
	}
	rc.wmu.Lock()
	rc.unanswered = false
	rc.wmu.Unlock()
	// The frame is answered: the connection no longer holds it (the loop,
	// woken for what follows, charges that again).
	if rc.hold.holds() {
		srv.budget.set(&rc.hold, 0, rc)
	}
	if afterAnswerWritten != nil {
		afterAnswerWritten()
	}
	rc.x = nil
	if !r.abandoned {
		srv.putExchange(ex)
	}
	if r.abandoned && rc.tls.plain != nil {
		// The timed-out handler may still read the plaintext buffer:
		// give the connection a copy of what follows and leave the old
		// buffer to the collector.
		rest := append([]byte(nil), rc.tls.plain[rc.tls.plainOff:]...)
		rc.tls.plain, rc.tls.plainBuf, rc.tls.plainOff = rest, nil, 0
	}
	writing := rc.tlsSent(r.closes, size)
	old := rc.state.Swap(stateIdle)
	// OnClose stores gone before it reads the state: if it saw the
	// connection busy, it left the orphan to this worker, which sees gone
	// here; if it saw it idle, it took the connection itself.
	if rc.gone.Load() {
		if o := rc.orphanLeft(); o != nil && o.byFinish {
			rc.finishOrphan(nil)
		}
		return
	}
	if old == stateBusyPending || writing || srv.closed.Load() {
		rc.tls.pipe.wakeSet.Store(false)
		rc.tls.pipe.kick()
	}
}

// tlsAtFIN prepares a TLS connection whose peer has half-closed for the
// orphan that may finish it: what gnet still holds goes to crypto/tls's
// pipe, whose input then ends (the handshake goroutine, if any, sees the
// end instead of waiting), and on an idle connection crypto/tls decrypts
// it all now (drained), so that OnClose sees whether frames wait. Loop goroutine,
// in OnClose, before wmu (crypto/tls may write while it reads).
func (rc *rconn) tlsAtFIN(c gnet.Conn) (drained bool) {
	x := rc.tls
	if buf, _ := c.Peek(-1); len(buf) > 0 {
		x.pipe.feed(buf)
		c.Discard(len(buf))
	}
	x.pipe.setEOF()
	if x.established.Load() && !x.failed.Load() && rc.state.Load() == stateIdle && rc.lc.Phase() != lifecycle.Lingering {
		rc.drainTLS()
		return true
	}
	return false
}

// tlsOrphanWanted reports whether a TLS connection whose peer has
// half-closed must be finished on a duplicate descriptor, and whether the
// handshake goroutine is to finish it (the handshake is still running).
// Otherwise a worker owns it (st busy) or, idle, a goroutine of its own:
// when ciphertext of an answer is still queued, or plaintext waits to be
// decoded, or when the handshake ended after tlsAtFIN looked (drained
// false: crypto/tls may hold frames that came with the client's
// Finished). A connection closing after a refusal is finished only as
// far as that refusal's rest. Loop goroutine, in OnClose, under wmu.
func (rc *rconn) tlsOrphanWanted(st int32, held int, drained bool) (want, byHandshake bool) {
	x := rc.tls
	switch {
	case st != stateIdle:
		return true, false // the worker finishes (and gives up if the session failed)
	case x.failed.Load() || !x.started.Load():
		return false, false // no session: nothing to answer
	case !x.established.Load():
		return true, true
	case rc.lc.Phase() == lifecycle.Lingering:
		return false, false // its refusal is sent
	case rc.closeAfter:
		// A closing answer still leaving: the orphan sends its rest,
		// and serves nothing after it (finishOrphan).
		return held > 0 || x.pipe.pending() > 0, false
	}
	return !drained || held > 0 || x.pipe.pending() > 0 || (x.plain != nil && x.plainOff < len(x.plain)), false
}

// closeTLS releases TLS state when the connection closes. Loop goroutine.
func (rc *rconn) closeTLS() {
	x := rc.tls
	x.pipe.release()
	if rc.state.Load() == stateIdle {
		x.releasePlain()
	}
}

// tlsOrphanSource is a half-closed TLS connection's side of the decode
// loop once the reactor has let go of it: the plaintext still to come out
// of crypto/tls, whose input ends at the peer's FIN, answered one frame
// at a time on the orphan's goroutine, written on the duplicate
// descriptor (tlsPipe.Write).
type tlsOrphanSource struct {
	rc *rconn
	o  *orphan
}

func (s tlsOrphanSource) Inbound() []byte { return s.rc.tls.plain[s.rc.tls.plainOff:] }

func (s tlsOrphanSource) More(lifecycle.Verdict, []byte, int) lifecycle.Step {
	rc, x := s.rc, s.rc.tls
	if x.peerEOF || x.failed.Load() {
		return lifecycle.Close // nothing more will come
	}
	rc.drainTLS() // to the FIN: the pipe ends there
	if rc.srv.budget.set(&rc.hold, int64(len(x.plain)-x.plainOff), rc) {
		rc.srv.stats.evicted.Add(1)
		return lifecycle.Close
	}
	return lifecycle.Continue
}

func (s tlsOrphanSource) Refuse(buf []byte, err error) lifecycle.Step {
	return s.rc.refuseOrphan(s.o, buf, err)
}

// ReadAhead: until crypto/tls has read to the FIN, More has more to
// decrypt (also while draining: all of it was sent before the FIN).
func (s tlsOrphanSource) ReadAhead(int) bool {
	x := s.rc.tls
	return !x.peerEOF && !x.failed.Load()
}

func (s tlsOrphanSource) Serve(f codec.Frame, raw []byte) lifecycle.Step {
	rc, x := s.rc, s.rc.tls
	if rc.srv.forcedNow() || rc.hold.evicted() || x.failed.Load() {
		return lifecycle.Close
	}
	goOn := rc.answerOrphan(s.o, f, raw)
	x.plainOff += len(raw)
	rc.srv.budget.set(&rc.hold, int64(len(x.plain)-x.plainOff), rc)
	if !goOn {
		return lifecycle.Close
	}
	return lifecycle.Continue
}
