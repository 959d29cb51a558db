//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/cpuid/v2"
	"github.com/panjf2000/ants/v2"
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"
	"golang.org/x/sys/unix"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine/internal/lifecycle"
)

// reactorAvailable reports whether this platform has the reactor engine.
const reactorAvailable = true

// Ownership states of a reactor connection (rconn.state).
const (
	stateIdle        int32 = iota // no request in flight; the loop may decode
	stateBusy                     // a worker owns the request
	stateBusyPending              // busy, and bytes wait in the inbound buffer
)

// reactorTransport is the default engine: gnet event loops (with no
// listener of their own: the Server's acceptor hands them each accepted
// socket) decode frames in place and hand each request to a bounded
// worker pool, or run it on the loop when it is non-blocking.
type reactorTransport struct {
	gnet.BuiltinEventEngine

	srv      *Server
	to       lifecycle.Timeouts
	cli      *gnet.Client
	enrollWG sync.WaitGroup // goroutines enrolling an accepted socket
	pool     *ants.Pool     // nil in inline mode
	workers  int
	wheel    *wheel
	clock    func() int64 // wheel.now.Load, bound once: the lifecycle's clock on the loops
	tickD    time.Duration
	overflow overflowQueue
	spilling atomic.Bool    // a spill goroutine drains overflow
	spillWG  sync.WaitGroup // spill goroutines

	backlogLimit int // TLS: most inbound bytes buffered behind a request in flight

	handshakes atomic.Int64        // TLS handshakes in progress
	hsMu       sync.Mutex          // guards hsByAddr, hsWait and each rtls.waiting
	hsByAddr   map[string]int      // handshake slots held per remote IP
	hsWait     map[string][]*rconn // connections waiting for a slot of their IP, oldest first
	hsWG       sync.WaitGroup      // TLS handshake goroutines

	// gate orders cross-goroutine gnet calls (Wake, AsyncWritev, Close
	// from a worker, the ticker or a handshake) before the engine stops:
	// they hold it for reading and check stopped; close takes it for
	// writing, so no such call reaches an event loop gnet has closed.
	gate    sync.RWMutex
	stopped bool

	unixLocal net.Addr // on a Unix listener, its address: every connection's local address (gnet renames theirs); nil on TCP
	peerCreds sync.Map // *rconn → *PeerCred of Unix connections (TCP ones do not pay for the field)

	orphanMu sync.Mutex         // guards orphans
	orphans  map[*rconn]*orphan // half-closed connections still answering
	orphanWG sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// defaultEventLoops is one event loop per physical core this process may
// use. cpuid reports the machine's cores (in a VM, often the host's); the
// scheduler's CPU count bounds it to what the process can actually run on.
func defaultEventLoops() int {
	usable := min(runtime.NumCPU(), runtime.GOMAXPROCS(0))
	n := cpuid.CPU.PhysicalCores
	if tpc := cpuid.CPU.ThreadsPerCore; n <= 0 || n > usable {
		n = usable
		if tpc > 1 {
			n = max(1, usable/tpc)
		}
	}
	return max(1, n)
}

func newReactorTransport(srv *Server) (*reactorTransport, error) {
	cfg := srv.cfg
	t := &reactorTransport{
		srv:      srv,
		to:       cfg.timeouts(),
		hsByAddr: map[string]int{},
		hsWait:   map[string][]*rconn{},
		orphans:  map[*rconn]*orphan{},
	}
	srv.rt = t
	if ua, ok := srv.ln.Addr().(*net.UnixAddr); ok {
		t.unixLocal = &net.UnixAddr{Name: ua.Name, Net: ua.Net}
	}
	largest := codec.Header{RequestLen: codec.MaxRequestLen, PayloadLen: cfg.largestPayload()}.FrameLen(true)
	t.backlogLimit = largest + 64<<10
	t.tickD = tickFor(cfg.ReadTimeout, cfg.IdleTimeout, cfg.WriteTimeout, lifecycle.LingerTime)
	t.wheel = newWheel(t.tickD, 512)
	t.clock = t.wheel.now.Load
	if !cfg.Inline {
		t.workers = cfg.Workers
		if t.workers == 0 {
			t.workers = 256 * runtime.GOMAXPROCS(0)
		}
		p, err := ants.NewPool(t.workers, ants.WithNonblocking(true), ants.WithLogger(gnetLogger{srv.log}))
		if err != nil {
			return nil, fmt.Errorf("petrel: worker pool: %w", err)
		}
		t.pool = p
		srv.onAbandon = func(delta int) {
			p.Tune(p.Cap() + delta)
			if delta > 0 && t.overflow.n.Load() > 0 {
				// A worker more: let it take a queued request.
				_ = p.Submit(t.drainOverflow)
			}
		}
	}
	loops := cfg.EventLoops
	if loops == 0 {
		loops = defaultEventLoops()
	}
	cli, err := gnet.NewClient(t,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(loops),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{srv.log}),
	)
	if err == nil {
		err = cli.Start()
	}
	if err != nil {
		if t.pool != nil {
			t.pool.Release()
		}
		return nil, fmt.Errorf("petrel: event loops: %w", err)
	}
	t.cli = cli
	return t, nil
}

// tickFor picks the timing wheel's resolution: a tenth of the shortest
// timeout, between 10 ms and 100 ms.
func tickFor(timeouts ...time.Duration) time.Duration {
	d := 100 * time.Millisecond
	for _, to := range timeouts {
		if to > 0 && to/10 < d {
			d = to / 10
		}
	}
	return max(d, 10*time.Millisecond)
}

// call runs f, a gnet call from outside the loops, unless the engine has
// stopped. It reports whether f ran.
func (t *reactorTransport) call(f func()) bool {
	t.gate.RLock()
	defer t.gate.RUnlock()
	if t.stopped {
		return false
	}
	f()
	return true
}

// wake asks rc's loop to look at it (OnTraffic). Any goroutine.
func (t *reactorTransport) wake(rc *rconn) {
	t.call(func() { rc.gc.Wake(nil) })
}

// open hands an accepted socket to an event loop.
func (t *reactorTransport) open(nc net.Conn) bool {
	srv := t.srv
	switch nc.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		srv.logRated("accept", slog.LevelError, "petrel: the reactor engine serves TCP and Unix sockets only; closing", "type", fmt.Sprintf("%T", nc))
		return false
	}
	rc := &rconn{}
	rc.init(srv)
	rc.remote = nc.RemoteAddr()
	if uc, ok := nc.(*net.UnixConn); ok {
		if pc := peerCredOf(uc); pc != nil {
			t.peerCreds.Store(rc, pc)
		}
	}
	// Enrolling waits for the loop to open the socket: do it off the
	// acceptor, so that a loop blocked by an inline handler stalls only
	// its own new connections.
	t.enrollWG.Add(1)
	go func() {
		defer t.enrollWG.Done()
		var err error
		if !t.call(func() { _, err = t.cli.EnrollContext(nc, rc) }) {
			err = net.ErrClosed
		}
		if err != nil {
			nc.Close()
			t.peerCreds.Delete(rc)
			srv.acc.release()
			t.enrollFailed(err)
		}
	}()
	return true
}

// enrollFailed deals with a socket the loops could not take: out of
// descriptors is logged (the acceptor backs off on its own); anything else
// means the loops have stopped, and the server fails (599).
func (t *reactorTransport) enrollFailed(err error) {
	srv := t.srv
	if retryable(err) {
		srv.logRated("accept", slog.LevelWarn, "petrel: cannot take connection; closing it", "err", err)
		return
	}
	if !srv.closed.Load() {
		srv.fail(fmt.Errorf("event loops stopped: %w", err))
	}
}

// OnOpen sets up an enrolled connection. Loop goroutine.
func (t *reactorTransport) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	rc, ok := c.Context().(*rconn)
	if !ok {
		return nil, gnet.Close
	}
	rc.gc = c
	now := t.wheel.now.Load()
	if t.srv.cfg.TLS != nil {
		t.openTLS(rc)
		rc.lc.Enter(lifecycle.Handshake, now)
	} else {
		rc.lc.Enter(lifecycle.Idle, now)
	}
	t.srv.connOpened(&rc.session)
	t.wheel.add(rc)
	if t.srv.closed.Load() {
		return nil, gnet.Close
	}
	return nil, gnet.None
}

// OnClose runs on the loop before gnet closes the socket. Taking wmu here
// guarantees no worker writes to the descriptor after it is closed (and
// possibly reused for another client). A connection whose request is with
// a worker when the peer half-closes keeps a duplicate of its descriptor,
// so that the answer still goes out.
func (t *reactorTransport) OnClose(c gnet.Conn, err error) gnet.Action {
	rc, ok := c.Context().(*rconn)
	if !ok {
		return gnet.None
	}
	eof := errors.Is(err, io.EOF) && !t.srv.halt.Load()
	drained := false
	if eof && rc.tls != nil {
		drained = rc.tlsAtFIN(c)
	}
	rc.wmu.Lock()
	// Gone first: a worker finishing its answer looks at gone after it
	// gives the connection back (finish), so either it sees gone or we
	// see the connection idle.
	rc.gone.Store(true) // under wmu: no direct write can follow
	// The peer shut down its write side (legal TCP half-close): it may
	// still read the answers to what it sent: the request in flight, and
	// whole frames gnet holds behind it (or, on an idle connection, that
	// the loop has not decoded yet).
	//
	// An idle connection (no worker: the loop owns rc.in) is orphaned when
	// frames wait behind its last answer, or when gnet still holds part of
	// that answer: gnet would write only what the socket takes at once
	// and drop the rest, so the orphan takes it from gnet (takeOutbound)
	// and sends it first. Where it cannot, a torn answer ends in a reset,
	// and nothing follows it (answers behind a cut one would corrupt the
	// stream). A worker that has written its whole answer directly and is
	// giving the connection back (finishing) serves the orphan itself, in
	// finish; one whose answer is on its way to gnet (in transit) hands it
	// to the orphan in afterAsyncWrite, when gnet refuses it.
	//
	// Over TLS (tlsOrphanWanted), the orphan's owner is the worker in
	// flight, the handshake goroutine, or a goroutine of its own.
	var rest []byte              // plain connections: what gnet holds behind the request in flight
	held := c.OutboundBuffered() // bytes of an answer gnet still holds
	if rc.tls == nil {
		rest, _ = c.Peek(-1)
	}
	st := rc.state.Load()
	finishing := st != stateIdle && !rc.unanswered && rc.direct && rc.tls == nil && held == 0
	transit := st != stateIdle && !rc.unanswered && !rc.direct && !rc.closeAfter && rc.tls == nil
	idle := st == stateIdle && rc.tls == nil && rc.in == nil
	waiting := (finishing || idle) && rc.frameWaits(rest)
	tlsWanted, byHandshake := false, false
	if rc.tls != nil {
		tlsWanted, byHandshake = rc.tlsOrphanWanted(st, held, drained)
		finishing = tlsWanted && st != stateIdle && !byHandshake
	}
	idleOrphan := false
	plainWanted := rc.tls == nil && (rc.unanswered || waiting || transit || (idle && held > 0))
	if eof && (plainWanted || tlsWanted) {
		var nc net.Conn
		var out []byte
		if held > 0 {
			var ok bool
			if out, ok = takeOutbound(c); !ok {
				_ = c.SetLinger(0) // torn: a reset, and no orphan to follow it
			}
		}
		if rc.tls != nil && (held == 0 || out != nil) {
			// Ciphertext the loop had not yet handed to gnet follows
			// what gnet held.
			if q := rc.tls.pipe.takeOut(); q != nil {
				out = append(out, q.B...)
				bytebufferpool.Put(q)
			}
		}
		if held == 0 || out != nil {
			nc = dupConn(c.Fd())
		}
		if nc != nil {
			o := &orphan{nc: nc, out: out, info: rc.connInfo(), byHandshake: byHandshake,
				byFinish: finishing}
			if len(rest) > 0 {
				// Frames pipelined behind the request in flight were read
				// before the FIN: they are answered after it, and stay
				// charged to the inbound budget (over it, they go).
				if t.srv.budget.set(&rc.hold, int64(len(rest)), rc) {
					t.srv.stats.evicted.Add(1)
				} else {
					o.rest = append([]byte(nil), rest...)
				}
			}
			rc.orphaned = true
			idleOrphan = !rc.unanswered && !o.byFinish && !transit && !byHandshake
			t.orphanMu.Lock()
			t.orphans[rc] = o
			t.orphanWG.Add(1)
			t.orphanMu.Unlock()
			if t.srv.halt.Load() {
				// Close began after our look at halt and may have swept
				// the orphans before we filed this one: it closes now.
				nc.Close()
			}
			if o.rest == nil {
				t.srv.budget.set(&rc.hold, 0, rc)
			}
			if afterOrphaned != nil {
				afterOrphaned()
			}
		} else if out != nil {
			_ = c.SetLinger(0) // the answer's rest is lost: a reset, not a clean close
		}
	}
	if !rc.orphaned {
		t.srv.budget.set(&rc.hold, 0, rc)
		if t.srv.halt.Load() && (st != stateIdle || held > 0 || rc.lc.Phase() == lifecycle.Writing ||
			(rc.tls != nil && rc.tls.pipe.pending() > 0)) {
			// Close cuts an answer short (or one still to come): a
			// reset, never a torn frame that ends like a clean close.
			_ = c.SetLinger(0)
		}
	}
	// The worker that answers an orphan (its holding's owner from now on)
	// starts after this.
	orphan := rc.orphaned
	rc.wmu.Unlock()
	if rc.tls != nil && !orphan {
		rc.closeTLS() // an orphan's owner does, when it ends
	}
	if rc.state.Load() == stateIdle && rc.in != nil {
		bytebufferpool.Put(rc.in)
		rc.in = nil
	}
	if t.unixLocal != nil {
		t.peerCreds.Delete(rc)
	}
	// The handler's context ends with the connection (as net/http's does
	// when its client goes away), also on a half-close: its answer, if
	// any, still goes out on the duplicate.
	rc.ctx.cancel()
	if idleOrphan {
		// No worker owns it: answer the frames on a goroutine of their
		// own (waited for by close, with the orphans).
		go rc.finishOrphan(nil)
		return gnet.None
	}
	if orphan {
		// The worker answers on the duplicate, then ends the connection.
		return gnet.None
	}
	rc.lc.Enter(lifecycle.Closed, 0)
	t.srv.connClosed(&rc.session, err)
	return gnet.None
}

// frameWaits reports whether buf begins with a frame to answer: a whole
// one, or one to refuse.
func (rc *rconn) frameWaits(buf []byte) bool {
	v, _, _, _, _ := rc.Next(buf)
	return v == lifecycle.Whole || v == lifecycle.Refuse
}

// orphan is a half-closed connection still answering (gnet closes a
// connection at the peer's FIN): a duplicate of its descriptor to answer
// on, and the frames read behind its request in flight before the FIN.
type orphan struct {
	nc       net.Conn
	out      []byte   // what gnet held of the last answer, sent first; nil once sent
	rest     []byte   // plain TCP and Unix only; owned by the worker once the loop has filed it
	info     ConnInfo // what the loop knew of the connection, for the handlers of rest
	byFinish bool     // the worker finishing its answer serves it (finish), not a goroutine of its own
	// byHandshake: TLS, the handshake goroutine serves it when the
	// handshake ends.
	byHandshake bool
}

// orphan returns rc's orphan record: the duplicate descriptor a
// half-closed connection answers on, and its pipelined frames.
func (t *reactorTransport) orphan(rc *rconn) *orphan {
	t.orphanMu.Lock()
	defer t.orphanMu.Unlock()
	return t.orphans[rc]
}

// orphanLeft returns rc's orphan record when OnClose has filed one, nil
// when it has not (or when it has already finished). Any goroutine.
func (rc *rconn) orphanLeft() *orphan {
	rc.wmu.Lock() // OnClose files the orphan under wmu
	defer rc.wmu.Unlock()
	if !rc.gone.Load() || !rc.orphaned {
		return nil
	}
	return rc.srv.rt.orphan(rc)
}

// localAddr is rc's local address. Loop goroutine (gnet clears its own
// when it releases a connection).
func (rc *rconn) localAddr() net.Addr {
	if ua := rc.srv.rt.unixLocal; ua != nil {
		return ua
	}
	return rc.gc.LocalAddr()
}

// describe sets what of x's ConnInfo the session does not know. Loop
// goroutine, when a request is handed on.
func (rc *rconn) describe(x *exchange) { rc.fillInfo(&x.info) }

// fillInfo sets the local address, TLS state and peer credentials of
// info. Loop goroutine (gnet clears its addresses when it releases a
// connection).
func (rc *rconn) fillInfo(info *ConnInfo) {
	info.LocalAddr = rc.localAddr()
	if rc.srv.rt.unixLocal != nil {
		if pc, ok := rc.srv.rt.peerCreds.Load(rc); ok {
			info.PeerCred = pc.(*PeerCred)
		}
	}
	if rc.tls != nil && rc.tls.established.Load() {
		info.TLS = rc.tls.state
	}
}

// connInfo is what fillInfo sets, as a value. Loop goroutine.
func (rc *rconn) connInfo() ConnInfo {
	var info ConnInfo
	rc.fillInfo(&info)
	return info
}

// dupConn duplicates fd as a net.Conn for a worker to finish an answer on,
// or returns nil.
func dupConn(fd int) net.Conn {
	nfd, err := unix.Dup(fd)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(nfd), "petrel-halfclosed")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil
	}
	return nc
}

// finishOrphan writes the answer of a half-closed connection on its
// duplicate descriptor (v; nil when already written, or when no request
// was in flight), then answers the frames read behind it, then ends the
// connection. Worker goroutine (or the timer answering a timed-out
// handler, or a goroutine of its own for an idle connection).
func (rc *rconn) finishOrphan(v [][]byte) {
	t := rc.srv.rt
	o := t.orphan(rc)
	ok := !t.srv.forcedNow()
	if ok && o.out != nil {
		ok = rc.writeOrphan(o.nc, [][]byte{o.out})
		o.out = nil
	}
	ok = ok && (v == nil || rc.writeOrphan(o.nc, v))
	// After a closing answer (a refusal), nothing more is served.
	ok = ok && !rc.closeAfter
	if ok && o.rest != nil {
		lifecycle.Decode(&rc.session, orphanSource{rc: rc, o: o}, &rc.lc, &t.srv.closed, unixNow)
	}
	if x := rc.tls; x != nil {
		if ok && x.established.Load() && !x.failed.Load() {
			// Every frame crypto/tls still holds or will decrypt from
			// the ciphertext read before the FIN.
			rc.lc.Enter(lifecycle.Idle, unixNow())
			lifecycle.Decode(&rc.session, tlsOrphanSource{rc: rc, o: o}, &rc.lc, &t.srv.closed, unixNow)
		}
		x.pipe.release()
		x.releasePlain()
	}
	o.nc.Close()
	t.srv.budget.set(&rc.hold, 0, rc)
	t.orphanMu.Lock()
	delete(t.orphans, rc)
	t.orphanMu.Unlock()
	rc.lc.Enter(lifecycle.Closed, 0)
	t.srv.connClosed(&rc.session, nil)
	t.orphanWG.Done()
}

// writeOrphan writes v on nc, a half-closed connection's duplicate, under
// the write timeout (by progress, as std writes), and reports whether it
// all went. An answer torn by the write timeout ends in a reset.
func (rc *rconn) writeOrphan(nc net.Conn, v [][]byte) bool {
	t := rc.srv.rt
	for _, b := range v {
		if _, err := writeProgress(nc, b, t.to.Write, time.Time{}); err != nil {
			if isTimeout(err) {
				t.srv.writeTimedOut(rc.id, nc)
			}
			return false
		}
	}
	return true
}

// orphanSource is a half-closed connection's side of the decode loop, once
// its request in flight is answered: the frames read behind it before the
// peer's FIN, answered one by one on the worker, on the duplicate
// descriptor. Nothing more will arrive. A handler timeout here ends the
// handler's context and answers timed out when it returns, as on a loop.
type orphanSource struct {
	rc *rconn
	o  *orphan
}

func (s orphanSource) Inbound() []byte { return s.o.rest }

func (s orphanSource) More(lifecycle.Verdict, []byte, int) lifecycle.Step {
	return lifecycle.Close // the peer has finished sending
}

func (s orphanSource) Refuse(buf []byte, err error) lifecycle.Step {
	return s.rc.refuseOrphan(s.o, buf, err)
}

// ReadAhead: the peer has half-closed; everything it sent is in rest.
func (s orphanSource) ReadAhead(int) bool { return false }

func (s orphanSource) Serve(f codec.Frame, raw []byte) lifecycle.Step {
	rc := s.rc
	if rc.srv.forcedNow() || rc.hold.evicted() {
		return lifecycle.Close
	}
	goOn := rc.answerOrphan(s.o, f, raw)
	s.o.rest = s.o.rest[len(raw):]
	rc.srv.budget.set(&rc.hold, int64(len(s.o.rest)), rc)
	if !goOn {
		return lifecycle.Close
	}
	return lifecycle.Continue
}

// answerOrphan answers f (raw, read before the peer's FIN) of a
// half-closed connection on the orphan's goroutine and reports whether
// the connection goes on. A handler timeout here ends the handler's
// context and answers timed out when it returns, as on a loop.
func (rc *rconn) answerOrphan(o *orphan, f codec.Frame, raw []byte) bool {
	srv := rc.srv
	x := srv.getExchange()
	x.canWait = false
	x.info = o.info
	if rc.tls != nil {
		x.info.TLS = rc.tls.state // set by the handshake, after OnClose took info
	}
	x.cur = f
	rc.lc.Enter(lifecycle.Dispatched, unixNow())
	r := rc.dispatch(x, f)
	v := rc.frame(x, f, r)
	srv.stats.answered(rc.id, r.status, len(raw), vecLen(v))
	ok := rc.writeOrphanAnswer(o, v)
	srv.putExchange(x)
	return ok && !r.closes
}

// refuseOrphan answers the refusal (err) of a half-closed connection's
// frame whose bytes so far are buf; the connection closes after it.
func (rc *rconn) refuseOrphan(o *orphan, buf []byte, err error) lifecycle.Step {
	x := rc.srv.getExchange()
	rc.writeOrphanAnswer(o, rc.refusal(x, buf, err))
	rc.srv.putExchange(x)
	return lifecycle.Close
}

// writeOrphanAnswer writes an answer of a half-closed connection on its
// duplicate descriptor (through crypto/tls over TLS) and reports whether
// it all went.
func (rc *rconn) writeOrphanAnswer(o *orphan, v [][]byte) bool {
	if rc.tls != nil {
		rc.writeTLS(v) // tlsPipe.Write: on the duplicate
		return !rc.tls.failed.Load()
	}
	return rc.writeOrphan(o.nc, v)
}

// OnTick advances the timing wheel: connections whose deadline has passed,
// and connections with an answer still being sent, are woken so that
// their loop decides (see rconn.check); requests that waited for a worker
// longer than the queue timeout are answered busy.
func (t *reactorTransport) OnTick() (time.Duration, gnet.Action) {
	now := time.Now().UnixNano()
	t.wheel.advance(now, t.wake)
	if t.pool != nil {
		t.expireQueued(now)
	}
	return t.tickD, gnet.None
}

// OnTraffic looks at the connection's lifecycle, then decodes and
// dispatches buffered frames unless a request is already in flight.
// Loop goroutine.
func (t *reactorTransport) OnTraffic(c gnet.Conn) gnet.Action {
	rc, ok := c.Context().(*rconn)
	if !ok {
		return gnet.Close
	}
	if rc.tls != nil {
		return rc.processTLS()
	}
	if act, stop := rc.check(); stop {
		return act
	}
	if rc.lc.Phase() == lifecycle.Lingering {
		return rc.discardLinger()
	}
	// gnet keeps reading while a request is in flight or answers are not
	// being read: a client that floods pipelined frames is cut off once
	// its backlog outgrows the next frame plus some slack, and the backlog
	// counts against the server's inbound budget.
	if rc.state.Load() != stateIdle || rc.lc.Phase() == lifecycle.Writing {
		if ib := c.InboundBuffered(); ib > pipelineSlack {
			if limit := rc.backlogAllowance(ib); ib > limit && rc.backlogged() {
				t.srv.stats.evicted.Add(1)
				t.srv.logRated("refusal", slog.LevelWarn, "petrel: pipelined backlog over the limit; closing", "conn", rc.id,
					"backlog", ib, "limit", limit)
				return gnet.Close
			}
		}
		if rc.charge(int64(c.InboundBuffered())) {
			return gnet.Close
		}
	}
	if rc.lc.Phase() == lifecycle.Writing || rc.markPending() {
		return gnet.None
	}
	return rc.process()
}

func (t *reactorTransport) drain() {
	t.wheel.all(t.wake)
}

func (t *reactorTransport) close(bound time.Duration) error {
	t.closeOnce.Do(func() {
		deadline := time.Now().Add(bound)
		t.orphanMu.Lock()
		for rc, o := range t.orphans {
			resetOnClose(o.nc) // its answer is cut short
			o.nc.Close()
			rc.ctx.cancel()
		}
		t.orphanMu.Unlock()
		// Cancel handlers first, so that those honouring their context
		// finish while the loops close.
		t.wheel.all(func(rc *rconn) { rc.ctx.cancel() })
		// Take the gate, unless a call holding it is stuck behind a loop
		// that an inline handler blocks: then the loops cannot be
		// stopped anyway, and Close returns at its bound.
		for !t.gate.TryLock() {
			if time.Now().After(deadline) {
				t.srv.log.Warn("petrel: event loops blocked; abandoned")
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.stopped = true
		t.gate.Unlock()
		stopped := make(chan error, 1)
		go func() { stopped <- t.cli.Stop() }()
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		select {
		case err := <-stopped:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				t.closeErr = err
			}
		case <-timer.C:
			// A loop is blocked (an inline handler that does not return):
			// leave it; the process can still exit.
			t.srv.log.Warn("petrel: event loops did not stop within the bound; abandoned")
			return
		}
		waitUntil(deadline, &t.hsWG, &t.spillWG, &t.orphanWG, &t.enrollWG)
		if t.pool != nil {
			if err := t.pool.ReleaseTimeout(max(time.Until(deadline), 10*time.Millisecond)); err != nil {
				t.srv.log.Warn("petrel: handlers still running after Close; abandoned", "count", t.pool.Running())
			}
		}
	})
	return t.closeErr
}

// waitUntil waits for every wg, or until deadline.
func waitUntil(deadline time.Time, wgs ...*sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() {
		for _, wg := range wgs {
			wg.Wait()
		}
		close(done)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
		return true
	case <-timer.C:
		return false
	}
}

// overflowQueue holds connections whose request found the worker pool
// full. Workers drain it when they finish; the ticker answers busy those
// that waited past the queue timeout. At most one entry per connection,
// so its size is bounded by the connection count.
type overflowQueue struct {
	mu sync.Mutex   // guards q
	q  []queued     // waiting connections, oldest first
	n  atomic.Int32 // len(q), read without the lock
}

type queued struct {
	rc *rconn
	at int64 // unix nanoseconds when it queued
}

func (o *overflowQueue) push(rc *rconn, now int64) {
	o.mu.Lock()
	o.q = append(o.q, queued{rc, now})
	o.n.Store(int32(len(o.q)))
	o.mu.Unlock()
}

// pop takes the oldest entry; with before > 0, only one that queued
// before it.
func (o *overflowQueue) pop(before int64) *rconn {
	if o.n.Load() == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.q) == 0 || (before > 0 && o.q[0].at >= before) {
		return nil
	}
	rc := o.q[0].rc
	o.q[0] = queued{}
	o.q = o.q[1:]
	o.n.Store(int32(len(o.q)))
	return rc
}

// expireQueued answers busy every request that has waited for a worker
// longer than the queue timeout. Ticker goroutine.
func (t *reactorTransport) expireQueued(now int64) {
	qt := t.srv.cfg.QueueTimeout
	if qt < 0 {
		return
	}
	var expired []*rconn
	for rc := t.overflow.pop(now - int64(qt)); rc != nil; rc = t.overflow.pop(now - int64(qt)) {
		expired = append(expired, rc)
	}
	if len(expired) == 0 {
		return
	}
	// Answering checks each request's MAC first (a busy request uses up
	// its seq): not on the ticker, which keeps every loop's time.
	t.spillWG.Add(1)
	go func() {
		defer t.spillWG.Done()
		for _, rc := range expired {
			rc.answer(rc.refuseBusy(rc.x, rc.x.cur))
		}
	}()
}

// rconn is one reactor connection.
//
// Ownership: while state is stateIdle the event loop owns everything here;
// while busy, the worker running the request owns in and x, and the loop
// only reads state. OnClose sets gone under wmu, which a worker holds for
// the duration of a direct write to fd. An idle connection holds no buffer
// and no exchange: only this struct and gnet's.
//
// Every idle connection has one, so it is kept to 160 bytes (a size class;
// pinned by TestRconnSize): what a handler's ConnInfo is made from is read
// from gnet's connection when a request is handed on, a half-closed
// connection's duplicate descriptor lives in the transport's orphans, and
// the flags share a word.
type rconn struct {
	session
	lc   lifecycle.State
	hold holding
	gc   gnet.Conn // its Fd is the socket: constant until gnet releases the conn

	in  *bytebufferpool.ByteBuffer // frame bytes owned by this conn: accumulating while idle, or in flight
	x   *exchange                  // the request in flight, nil when idle
	tls *rtls                      // nil without TLS

	wmu sync.Mutex // guards orphaned, rtls's flushing and outPending, and the setting of gone; held during a direct write

	state      atomic.Int32
	progress   int32       // the loop's (and a worker's in finish, before it enters writing): writing, the unsent answer at the last look, in progressUnits; lingering, the bytes discarded
	gone       atomic.Bool // closed (set under wmu); the wheel drops it
	orphaned   bool        // after a half-close: the transport's orphans hold a duplicate descriptor to answer on
	unanswered bool        // a worker owns a request whose answer it has not yet written
	direct     bool        // the worker may write to the socket itself
	closeAfter bool        // close (lingering) once the answer is fully sent (the loop's; a worker's while busy, under wmu, when its write failed)
}

// dueAt is when rc's lifecycle deadline passes (see also wheel.advance,
// which wakes a connection sending an answer at every tick).
func (rc *rconn) dueAt(now int64) int64 {
	p, since := rc.lc.Load()
	dl := rc.srv.rt.to.Deadline(p, since)
	if p == lifecycle.Handshake && rc.tls != nil && !rc.tls.hello.Load() {
		dl = min(dl, since+int64(handshakeSilence))
	}
	return dl
}

// progressUnit is the granularity of write progress: an answer whose
// unsent part has not shrunk by a unit since the last look has not moved
// (a unit, not a byte, so that the count fits 32 bits for any answer).
const progressUnit = 16

// unsentUnits is n unsent bytes in progressUnits, rounded up.
func unsentUnits(n int) int32 {
	return int32(min((n+progressUnit-1)/progressUnit, math.MaxInt32))
}

// handshakeSilence bounds a TLS handshake whose first record has not
// arrived in full: a client that has sent nothing useful is not given the
// whole handshake timeout.
const handshakeSilence = 2 * time.Second

// evict closes rc for the inbound budget. Any goroutine.
func (rc *rconn) evict() {
	rc.srv.stats.evicted.Add(1)
	rc.srv.rt.call(func() { rc.gc.Close() })
}

// charge records that rc holds n inbound bytes; when that takes the server
// over its budget, the connections holding the most are closed. It reports
// whether rc itself was closed. Loop goroutine.
func (rc *rconn) charge(n int64) bool {
	b := rc.srv.budget
	if !b.set(&rc.hold, n, rc) {
		return false
	}
	rc.srv.logRated("budget", slog.LevelWarn, "petrel: inbound budget exceeded; closing the largest holders",
		"limit", b.limit, "used", b.used.Load())
	b.evictLargest(&rc.hold, rc)
	return rc.hold.evicted()
}

// check applies the lifecycle on the loop: timeouts, the end of an
// answer's sending, and the drain rules. It reports stop when OnTraffic
// must return act at once. Loop goroutine.
func (rc *rconn) check() (act gnet.Action, stop bool) {
	if rc.hold.evicted() {
		return gnet.Close, true
	}
	now := rc.srv.rt.wheel.now.Load() // the wheel's clock: no system call per event
	p := rc.lc.Phase()
	if p == lifecycle.Writing {
		ob := rc.gc.OutboundBuffered()
		if rc.tls != nil {
			ob += rc.tls.pipe.pending()
		}
		// Progress counts what the kernel still holds too: a big send
		// buffer drains without gnet writing anything.
		unsent := ob + unsentBytes(rc.gc.Fd())
		switch {
		case unsent == 0:
			if rc.lc.Answered(false, rc.closeAfter, now) == lifecycle.Lingering {
				return rc.startLinger(now), true
			}
			p = lifecycle.Idle
		case unsentUnits(unsent) < rc.progress:
			rc.progress = unsentUnits(unsent)
			rc.lc.Progress(now)
		default:
			rc.progress = unsentUnits(unsent)
		}
	}
	if rc.dueAt(now) <= now {
		rc.srv.stats.timedOut.Add(1)
		rc.srv.logRated("timeout", slog.LevelInfo, "petrel: connection timed out", "conn", rc.id,
			"remote", rc.remote, "phase", p.String())
		if p == lifecycle.Writing {
			// A torn answer must not look like a clean close: reset.
			_ = rc.gc.SetLinger(0)
		}
		return gnet.Close, true
	}
	if rc.srv.closed.Load() && lifecycle.ClosesWhenDraining(p) && rc.state.Load() == stateIdle &&
		rc.tls == nil && rc.gc.InboundBuffered() == 0 {
		// Nothing read is left unanswered. (With bytes buffered, the
		// decoder serves the frames already here and closes after them.)
		if p == lifecycle.Idle && (plainSource{rc}).ReadAhead(0) {
			// Frames the peer sent wait in the kernel: gnet's
			// level-triggered poller reports them next, and the decode
			// loop answers them.
			return gnet.None, true
		}
		if p == lifecycle.Reading && rc.in != nil {
			// So does the rest of a frame begun, when it has all arrived.
			if v, _, _, need, _ := rc.Next(rc.in.B); v == lifecycle.Partial && (plainSource{rc}).ReadAhead(need) {
				return gnet.None, true
			}
		}
		if rc.srv.drainLingers(p, rc.unread) {
			return rc.startLinger(now), true
		}
		return gnet.Close, true
	}
	return gnet.None, false
}

// startLinger shuts the write side after a closing refusal has been sent
// and discards input for a while before the close. Loop goroutine.
func (rc *rconn) startLinger(now int64) gnet.Action {
	rc.closeAfter = false
	rc.progress = 0
	if unix.Shutdown(rc.gc.Fd(), unix.SHUT_WR) != nil {
		return gnet.Close
	}
	rc.lc.Enter(lifecycle.Lingering, now)
	return rc.discardLinger()
}

// discardLinger throws away what a lingering connection receives.
func (rc *rconn) discardLinger() gnet.Action {
	n := rc.gc.InboundBuffered()
	rc.gc.Discard(n)
	if rc.progress = int32(min(int(rc.progress)+n, lifecycle.LingerBytes)); rc.progress >= lifecycle.LingerBytes {
		return gnet.Close
	}
	return gnet.None
}

// markPending reports whether a request is in flight; if so it records
// that bytes wait behind it, so the worker wakes the loop when done.
// Loop goroutine.
func (rc *rconn) markPending() bool {
	if rc.state.Load() == stateIdle {
		return false
	}
	// The worker may go idle between the load and the swap: then the
	// loop serves the bytes itself.
	return rc.state.CompareAndSwap(stateBusy, stateBusyPending) || rc.state.Load() == stateBusyPending
}

// process decodes and serves buffered frames through the decode loop,
// after moving what has arrived of a frame collecting in rc.in there: a
// frame these bytes complete was read whole, and is answered also when
// the server is draining. Loop goroutine only, with state idle and no
// answer being sent.
func (rc *rconn) process() gnet.Action {
	if rc.in != nil && !rc.collect() {
		return gnet.Close
	}
	st := lifecycle.Decode(&rc.session, plainSource{rc}, &rc.lc, &rc.srv.closed, rc.srv.rt.clock)
	if st == lifecycle.Close && rc.srv.drainLingers(rc.lc.Phase(), rc.unread) {
		return rc.startLinger(rc.srv.rt.clock())
	}
	return gnetAction(st)
}

// unread is what the kernel holds received on rc's socket, not yet read
// by gnet. Loop goroutine.
func (rc *rconn) unread() int { return unreadBytes(rc.gc.Fd()) }

// collect copies into rc.in what gnet holds of the frame collecting there
// (its header, parsed again, says how much is missing). It reports false
// when that takes the connection over the inbound budget. Loop goroutine.
func (rc *rconn) collect() bool {
	_, _, _, need, _ := rc.Next(rc.in.B)
	got, _ := rc.gc.Peek(-1)
	take := min(len(got), need)
	if take == 0 {
		return true
	}
	rc.in.B = append(rc.in.B, got[:take]...)
	rc.gc.Discard(take)
	return !rc.charge(int64(len(rc.in.B)))
}

// gnetAction is what OnTraffic returns after the decode loop's step.
func gnetAction(st lifecycle.Step) gnet.Action {
	if st == lifecycle.Close {
		return gnet.Close
	}
	return gnet.None
}

// plainSource is a plain reactor connection's side of the decode loop:
// frames are decoded in place in gnet's inbound buffer, except a large one,
// which collects in rc.in as it arrives, so that each byte is copied once,
// not re-assembled per read. Loop goroutine.
type plainSource struct{ *rconn }

func (rc plainSource) Inbound() []byte {
	if rc.in != nil {
		return rc.in.B
	}
	buf, _ := rc.gc.Peek(-1)
	return buf
}

func (rc plainSource) More(v lifecycle.Verdict, buf []byte, need int) lifecycle.Step {
	c := rc.gc
	switch {
	case v == lifecycle.Empty:
		rc.charge(0)
		return lifecycle.Pause
	case rc.in != nil:
		// A frame is collecting in rc.in, and process has moved there
		// all that has arrived of it.
		return lifecycle.Pause
	case len(buf) >= codec.HeaderLen && len(buf) >= codec.HeaderLen+int(buf[6]):
		// The header and request text are here and the frame is within
		// its limit: collect the rest in our own buffer.
		rc.in = bytebufferpool.Get()
		rc.in.B = append(rc.in.B[:0], buf...)
		c.Discard(len(buf))
		buf = rc.in.B
	}
	if rc.charge(int64(len(buf))) {
		return lifecycle.Close
	}
	return lifecycle.Pause
}

func (rc plainSource) Refuse(buf []byte, err error) lifecycle.Step {
	if !rc.writeRefusal(buf, err) {
		return lifecycle.Pause // gnet closed it; OnClose released rc.in
	}
	if rc.in != nil {
		// Only a handler registered since the frame began can change its
		// verdict once it collects: it is refused now.
		bytebufferpool.Put(rc.in)
		rc.in = nil
	} else {
		rc.gc.Discard(len(buf))
	}
	return stepOf(rc.sent(true, 0))
}

// stepOf is the decode loop's step for an action of sent: close, or
// pause (the answer is still leaving, or the connection lingers).
func stepOf(act gnet.Action) lifecycle.Step {
	if act == gnet.Close {
		return lifecycle.Close
	}
	return lifecycle.Pause
}

// ReadAhead: gnet reads what arrives as it arrives, unless an inline
// handler held the loop: then frames the peer sent may wait in the kernel,
// and the loop waits for gnet to read them.
func (rc plainSource) ReadAhead(need int) bool { return rc.unread() >= max(need, 1) }

// Serve answers f, whose bytes are raw (rc.in when the frame collected
// there). On the loop (inline mode, a non-blocking request, or a busy
// answer) it answers at once and goes on to the next frame while the
// answer has left; otherwise it hands f to a worker (copying it out of
// gnet's buffer first, and discarding it there).
func (rc plainSource) Serve(f codec.Frame, raw []byte) lifecycle.Step {
	srv := rc.srv
	c := rc.gc
	owned := rc.in != nil
	behind := c.InboundBuffered() // after the frame, unless it is in gnet's buffer
	if !owned {
		behind -= len(raw)
	}
	pending := behind > 0
	if onLoop, nonBlocking := rc.onLoop(f); onLoop {
		x := srv.getExchange()
		r, v := rc.answerOnLoop(x, f, nonBlocking, len(raw))
		size := vecLen(v)
		_, werr := c.Writev(v)
		srv.putExchange(x)
		if werr != nil {
			// gnet has closed the connection inside Writev: OnClose ran
			// and released rc.in.
			return lifecycle.Pause
		}
		if owned {
			bytebufferpool.Put(rc.in)
			rc.in = nil
		} else {
			c.Discard(len(raw))
		}
		if act := rc.sent(r.closes, size); act != gnet.None || rc.lc.Phase() != lifecycle.Idle {
			// Decoding stops here: the connection holds what follows the
			// answered frame. (Going on, the loop charges that itself.)
			srv.budget.set(&rc.hold, int64(c.InboundBuffered()), rc)
			return stepOf(act)
		}
		return lifecycle.Continue
	}
	if !owned {
		rc.in = bytebufferpool.Get()
		rc.in.B = append(rc.in.B[:0], raw...)
		c.Discard(len(raw))
		_, f, _, _, _ = rc.Next(rc.in.B)
	}
	x := srv.getExchange()
	x.canWait = true
	rc.direct = c.OutboundBuffered() == 0
	rc.handOff(x, f, pending)
	return lifecycle.Pause
}

// writeRefusal writes the library's refusal of the frame whose bytes so
// far are buf, and reports whether the connection is still open (gnet
// closes it inside Writev on a write error). Loop goroutine.
func (rc *rconn) writeRefusal(buf []byte, err error) bool {
	x := rc.srv.getExchange()
	_, werr := rc.gc.Writev(rc.refusal(x, buf, err))
	rc.srv.putExchange(x)
	return werr == nil
}

// onLoop reports whether f is answered on the event loop (inline mode, a
// non-blocking request, or a busy answer when too many handlers are
// abandoned), and whether it is non-blocking. Loop goroutine.
func (rc *rconn) onLoop(f codec.Frame) (onLoop, nonBlocking bool) {
	nonBlocking = rc.nonBlocking(f.Request)
	return rc.srv.rt.pool == nil || nonBlocking || rc.mustRefuseBusy(), nonBlocking
}

// answerOnLoop answers f on the event loop, with exchange x: busy when it
// would need a worker, else through the handler. The returned slices
// alias x and f. Loop goroutine.
func (rc *rconn) answerOnLoop(x *exchange, f codec.Frame, nonBlocking bool, n int) (result, [][]byte) {
	x.canWait = false
	rc.describe(x)
	rc.lc.Enter(lifecycle.Dispatched, rc.srv.rt.wheel.now.Load())
	var r result
	if rc.srv.rt.pool != nil && !nonBlocking {
		r = rc.refuseBusy(x, f)
	} else {
		r = rc.dispatch(x, f)
	}
	v := rc.frame(x, f, r)
	rc.srv.stats.answered(rc.id, r.status, n, vecLen(v))
	return r, v
}

// pipelineSlack is how many bytes a connection may have buffered behind
// the request in flight beyond the next frame.
const pipelineSlack = 256 << 10

// backlogAllowance is how many inbound bytes rc may hold behind the
// request in flight: the next frame (as its header declares, within its
// handler's limit) plus pipelineSlack. ib is what it holds. Loop
// goroutine.
func (rc *rconn) backlogAllowance(ib int) int {
	head, _ := rc.gc.Peek(min(ib, codec.HeaderLen+codec.MaxRequestLen))
	v, _, n, need, _ := rc.Next(head)
	switch v {
	case lifecycle.Whole:
		return n + pipelineSlack
	case lifecycle.Partial:
		return len(head) + need + pipelineSlack
	}
	return pipelineSlack // refused once it is decoded
}

// backlogged reports whether what rc holds behind its request is a
// pipelined backlog: the answer is still owed (a worker has not written
// it) or still leaving. Once the worker has written it, the client may
// have read it and sent its next frame before the worker gives the
// connection back: that frame is not a backlog, and the loop serves it (a
// refusal from its header included) once the worker is done. The inbound
// budget still bounds what it holds. Loop goroutine.
func (rc *rconn) backlogged() bool {
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	return rc.unanswered || (rc.state.Load() == stateIdle && rc.lc.Phase() == lifecycle.Writing)
}

// mustRefuseBusy reports whether a blocking request must be answered busy
// at once because too many timed-out handlers are still running.
func (rc *rconn) mustRefuseBusy() bool {
	return rc.srv.stats.abandoned.Load() >= rc.srv.disp.maxAbandoned
}

// sent moves the connection on after an answer was written on the loop:
// to writing while gnet still holds part of it, else to idle (or, after a
// closing refusal, to lingering). Loop goroutine.
func (rc *rconn) sent(closes bool, size int) gnet.Action {
	now := rc.srv.rt.wheel.now.Load()
	rc.closeAfter = closes
	ob := rc.gc.OutboundBuffered()
	unsent := ob
	if size > bigAnswer {
		// A large answer may sit in the kernel's send buffer long after
		// gnet has handed it over: the idle timer waits for it. (Small
		// ones leave at once; they cost no system call.)
		unsent += unsentBytes(rc.gc.Fd())
	}
	rc.progress = unsentUnits(unsent)
	if rc.lc.Answered(unsent > 0, closes, now) == lifecycle.Lingering {
		return rc.startLinger(now)
	}
	return gnet.None
}

// handOff gives frame f, with exchange x, to a worker: the connection is
// busy (pending says more bytes wait behind f). Loop goroutine.
func (rc *rconn) handOff(x *exchange, f codec.Frame, pending bool) {
	x.rc = rc
	x.cur = f
	rc.describe(x)
	rc.x = x
	rc.lc.Enter(lifecycle.Dispatched, rc.srv.rt.wheel.now.Load())
	// No lock: OnClose, which reads it, runs on this same loop goroutine,
	// and the worker that clears it (under wmu) starts after this.
	rc.unanswered = true
	if pending {
		rc.state.Store(stateBusyPending)
	} else {
		rc.state.Store(stateBusy)
	}
	rc.submit()
}

// submit hands the connection's request to the worker pool; when the pool
// is full the connection queues and the next worker to finish takes it, or
// the ticker answers it busy after the queue timeout.
func (rc *rconn) submit() {
	t := rc.srv.rt
	if err := t.pool.Submit(rc.x.runFn); err == nil {
		return
	} else if !errors.Is(err, ants.ErrPoolOverload) {
		// The pool is closed: the server is stopping.
		rc.gc.Close()
		return
	}
	t.overflow.push(rc, time.Now().UnixNano())
	// A worker that was busy when Submit failed drains the queue when it
	// finishes; try once more in case all of them finished meanwhile.
	if t.pool.Submit(t.drainOverflow) != nil {
		// A worker that has just found the queue empty may not be back
		// in the pool yet, so nothing would ever drain rc: drain on a
		// goroutine of our own (one at a time, waited for by close).
		t.spill()
	}
}

// spill drains the overflow queue on a goroutine outside the pool, unless
// one already does.
func (t *reactorTransport) spill() {
	if !t.spilling.CompareAndSwap(false, true) {
		return
	}
	t.spillWG.Add(1)
	go func() {
		defer t.spillWG.Done()
		for {
			t.drainOverflow()
			t.spilling.Store(false)
			// A push after our last pop whose spill found us still running.
			if t.overflow.n.Load() == 0 || !t.spilling.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

func (t *reactorTransport) drainOverflow() {
	for rc := t.overflow.pop(0); rc != nil; rc = t.overflow.pop(0) {
		rc.handle()
	}
}

// run is the worker pool task: serve the request, then any connections
// that queued while the pool was full.
func (x *exchange) run() {
	t := x.rc.srv.rt
	x.rc.handle()
	t.drainOverflow()
}

// handle runs the handler and writes the answer. Worker goroutine, state
// busy.
func (rc *rconn) handle() {
	x := rc.x
	r := rc.dispatch(x, x.cur)
	if r.answered {
		return // its timeout answered for it; the connection has moved on
	}
	rc.answer(r)
}

// answerReactor answers for a timed-out handler (timeout.go).
func (x *exchange) answerReactor(r result) { x.rc.answer(r) }

// answer writes r as the answer to the request in flight and hands the
// connection back to its loop. Any goroutine that owns the busy
// connection (a worker, or the ticker answering busy).
func (rc *rconn) answer(r result) {
	if rc.tls != nil {
		rc.answerTLS(r)
		return
	}
	srv := rc.srv
	x := rc.x
	f := x.cur
	v := rc.frame(x, f, r)
	total := vecLen(v)
	srv.stats.answered(rc.id, r.status, len(rc.in.B), total)
	x.res = r
	rc.wmu.Lock()
	rc.unanswered = false
	if rc.gone.Load() || srv.halt.Load() {
		rc.wmu.Unlock()
		if rc.orphaned {
			rc.closeAfter = r.closes // ours: the loop has let go
			rc.finishOrphan(v)
		}
		rc.release()
		return
	}
	if rc.direct && !r.closes {
		// Write straight to the socket: no wake of the event loop when the
		// kernel takes the whole answer, which it almost always does.
		n, err := writev(rc.gc.Fd(), v)
		if err != nil || n != total {
			rc.direct = false // OnClose: the answer is not whole; no orphan follows it
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			// The socket failed (a reset, which gnet reports to OnClose
			// as an EOF): the answer goes nowhere, so OnClose must not
			// take it for one on its way to gnet (transit) and leave an
			// orphan for it.
			rc.closeAfter = true
		}
		rc.wmu.Unlock()
		if err == nil && n == total {
			if afterAnswerWritten != nil {
				afterAnswerWritten()
			}
			rc.release()
			rc.finish(total)
			return
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			rc.release()
			rc.srv.rt.call(func() { rc.gc.Close() })
			return
		}
		v = skipBytes(v, max(n, 0))
	} else {
		rc.direct = false // OnClose: the answer goes through gnet; no orphan follows it
		rc.wmu.Unlock()
	}
	if beforeAsyncAnswer != nil {
		beforeAsyncAnswer()
	}
	t := rc.srv.rt
	var err error
	after := func(c gnet.Conn, err error) error { return t.afterAsyncWrite(rc, v, c, err) }
	if !t.call(func() { err = rc.gc.AsyncWritev(v, after) }) || err != nil {
		// gnet will not take it: the loops have stopped.
		rc.wmu.Lock()
		orphaned := rc.orphaned
		rc.wmu.Unlock()
		if orphaned {
			rc.finishOrphan(nil)
		}
		rc.release()
	}
}

// skipBytes drops the first n bytes from v.
func skipBytes(v [][]byte, n int) [][]byte {
	for len(v) > 0 && n >= len(v[0]) {
		n -= len(v[0])
		v = v[1:]
	}
	if n > 0 && len(v) > 0 {
		v[0] = v[0][n:]
	}
	return v
}

// afterAsyncWrite runs on the loop once gnet has taken rc's answer v, or
// has refused it (err) because the connection closed first. If the peer's
// FIN closed it, OnClose (on this loop, before) orphaned the connection,
// and v goes out on the duplicate descriptor.
func (t *reactorTransport) afterAsyncWrite(rc *rconn, v [][]byte, c gnet.Conn, err error) error {
	if err != nil && rc.gone.Load() {
		if rc.orphaned { // set by OnClose, on this goroutine
			rc.closeAfter = rc.x != nil && rc.x.res.closes
			t.orphanWG.Add(1)
			go func() {
				defer t.orphanWG.Done()
				rc.finishOrphan(v)
				rc.release()
			}()
			return nil
		}
		rc.release()
		return nil
	}
	closes := rc.x != nil && rc.x.res.closes
	size := 0
	if rc.in != nil {
		size = bigAnswer + 1 // unknown here: look at the kernel's buffer
	}
	rc.release()
	if err != nil {
		c.Close()
		return nil
	}
	act := rc.sent(closes, size)
	rc.state.Store(stateIdle)
	if act == gnet.None {
		// Frames may wait behind the answer, or the server may be
		// draining: look now, on the loop.
		act = t.OnTraffic(c)
	}
	if act == gnet.Close {
		c.Close()
	}
	return nil
}

// release returns the request buffer and the exchange to their pools,
// unless a timed-out handler may still read them.
func (rc *rconn) release() {
	x := rc.x
	abandoned := x != nil && x.res.abandoned
	if rc.in != nil {
		if !abandoned {
			bytebufferpool.Put(rc.in)
		}
		// The frame is answered: the connection no longer holds it. (A
		// backlog the loop charged meanwhile is charged again when the
		// loop decodes it; the worker wakes the loop for it.)
		if rc.hold.holds() {
			rc.srv.budget.set(&rc.hold, 0, rc)
		}
	}
	rc.in = nil
	if x != nil {
		rc.x = nil
		if !abandoned {
			rc.srv.putExchange(x)
		}
	}
}

// finish ends a request whose answer (size bytes) the kernel took whole:
// the connection becomes idle, or writing while a large answer still sits
// in the kernel's send buffer, and the loop is woken if frames wait in its
// buffer or the server is draining.
func (rc *rconn) finish(size int) {
	now := rc.srv.rt.wheel.now.Load()
	unsent := 0
	if size > bigAnswer {
		// As in sent: a large answer the kernel took may not have left
		// it; the connection is writing until it has (the idle timer
		// must not start, nor the write timeout be lost).
		unsent = unsentBytes(rc.gc.Fd())
	}
	rc.progress = unsentUnits(unsent)
	rc.lc.Answered(unsent > 0, false, now)
	old := rc.state.Swap(stateIdle)
	if rc.gone.Load() {
		// The peer's FIN came while we wrote: OnClose, which stored gone
		// before it looked at the state, may have left us the frames
		// behind our answer.
		if o := rc.orphanLeft(); o != nil && o.byFinish {
			rc.finishOrphan(nil)
		}
		return
	}
	if old == stateBusyPending || rc.srv.closed.Load() {
		rc.srv.rt.wake(rc)
	}
}

// gnetLogger adapts slog to gnet's and ants' logger interfaces. gnet's
// messages are about its own internals: they go out at Debug, errors at
// Warn; nothing is formatted unless the logger takes the level.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) log(level slog.Level, prefix, format string, args []any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, prefix+fmt.Sprintf(format, args...))
	}
}

func (g gnetLogger) Debugf(format string, args ...any) {
	g.log(slog.LevelDebug, "gnet: ", format, args)
}
func (g gnetLogger) Infof(format string, args ...any)  { g.log(slog.LevelDebug, "gnet: ", format, args) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.log(slog.LevelDebug, "gnet: ", format, args) }
func (g gnetLogger) Errorf(format string, args ...any) { g.log(slog.LevelWarn, "gnet: ", format, args) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.log(slog.LevelWarn, "gnet: ", format, args) }
func (g gnetLogger) Printf(format string, args ...any) { g.log(slog.LevelWarn, "ants: ", format, args) }
