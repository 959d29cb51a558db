package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
)

// Connection states of the reactor (rconn.state).
const (
	stateIdle        int32 = iota // no request in flight; the loop may decode
	stateBusy                     // a worker owns the request
	stateBusyPending              // busy, and bytes wait in the inbound buffer
)

// reactorTransport is the default engine: gnet event loops decode frames
// in place and hand each request to a bounded worker pool (or run it on the
// loop when Config.Inline is set).
type reactorTransport struct {
	gnet.BuiltinEventEngine

	srv      *Server
	network  string
	address  string
	opts     codec.Options
	eng      gnet.Engine
	laddr    net.Addr
	pool     *ants.Pool // nil in inline mode
	wheel    *wheel
	tickD    time.Duration
	overflow overflowQueue
	spilling atomic.Bool    // a spill goroutine drains overflow
	spillWG  sync.WaitGroup // spill goroutines

	booted  chan struct{} // closed by OnBoot
	runDone chan struct{} // closed when gnet.Run returns
	runErr  error         // gnet.Run's result; read after runDone

	afterWriteFn gnet.AsyncCallback // t.afterAsyncWrite, bound once
	backlogLimit int                // most inbound bytes buffered behind a request in flight

	stalledMu sync.Mutex // guards stalled
	stalled   []*rconn   // connections not reading their answers, woken by OnTick

	handshakes atomic.Int64   // TLS handshakes in progress
	hsWG       sync.WaitGroup // TLS handshake goroutines

	closed    chan struct{} // signalled (non-blocking) by OnClose
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

func newReactorTransport(srv *Server, network, address string) (*reactorTransport, error) {
	cfg := srv.cfg
	t := &reactorTransport{
		srv:     srv,
		network: network,
		address: address,
		opts:    codec.Options{MaxPayload: cfg.MaxPayload, MAC: srv.mac != nil},
		booted:  make(chan struct{}),
		runDone: make(chan struct{}),
		closed:  make(chan struct{}, 1),
	}
	t.afterWriteFn = t.afterAsyncWrite
	largest := codec.Header{RequestLen: codec.MaxRequestLen, PayloadLen: cfg.MaxPayload}.FrameLen(true)
	t.backlogLimit = largest + 64<<10
	t.tickD = tickFor(cfg.ReadTimeout, cfg.IdleTimeout)
	t.wheel = newWheel(t.tickD, 512)
	if !cfg.Inline {
		workers := cfg.Workers
		if workers == 0 {
			workers = 256 * runtime.GOMAXPROCS(0)
		}
		p, err := ants.NewPool(workers, ants.WithNonblocking(true), ants.WithLogger(gnetLogger{srv.log}))
		if err != nil {
			return nil, fmt.Errorf("petrel: worker pool: %w", err)
		}
		t.pool = p
	}
	loops := cfg.EventLoops
	if loops == 0 {
		loops = defaultEventLoops()
	}
	proto := network + "://" + address
	go func() {
		defer close(t.runDone)
		t.runErr = gnet.Run(t, proto,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(loops),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReusePort(false),
			gnet.WithReuseAddr(true), // rebind at once after a restart, as net.Listen does
			gnet.WithLogger(gnetLogger{srv.log}),
		)
	}()
	select {
	case <-t.booted:
	case <-t.runDone:
		if t.pool != nil {
			t.pool.Release()
		}
		if t.runErr == nil {
			t.runErr = errors.New("engine stopped before it started")
		}
		return nil, fmt.Errorf("petrel: listen %s: %w", proto, t.runErr)
	}
	if network == "unix" {
		if err := os.Chmod(address, cfg.SocketMode); err != nil {
			t.close()
			return nil, fmt.Errorf("petrel: unix socket mode: %w", err)
		}
	}
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

func (t *reactorTransport) addr() net.Addr { return t.laddr }

// OnBoot records the engine and the real listening address.
func (t *reactorTransport) OnBoot(eng gnet.Engine) gnet.Action {
	t.eng = eng
	if t.network == "unix" {
		t.laddr = &net.UnixAddr{Net: "unix", Name: t.address}
	} else if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			t.laddr = sockaddrToTCP(sa)
		}
		unix.Close(fd)
	}
	if t.laddr == nil {
		t.laddr = &net.TCPAddr{}
	}
	close(t.booted)
	return gnet.None
}

func sockaddrToTCP(sa unix.Sockaddr) *net.TCPAddr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: append(net.IP(nil), a.Addr[:]...), Port: a.Port}
	}
	return &net.TCPAddr{}
}

// OnTick advances the timing wheel and looks again at connections whose
// answers were not being read.
func (t *reactorTransport) OnTick() (time.Duration, gnet.Action) {
	t.wheel.advance(time.Now().UnixNano(), t.expire)
	t.stalledMu.Lock()
	stalled := t.stalled
	t.stalled = nil
	t.stalledMu.Unlock()
	for _, rc := range stalled {
		if !rc.gone.Load() {
			rc.gc.Wake(nil)
		}
	}
	return t.tickD, gnet.None
}

// outboundHighWater is how many unsent answer bytes a connection may have
// queued before the reactor stops decoding its next frames.
const outboundHighWater = 256 << 10

// stall records a connection whose outbound queue is over the high-water
// mark, to be woken on the next tick.
func (t *reactorTransport) stall(rc *rconn) {
	t.stalledMu.Lock()
	t.stalled = append(t.stalled, rc)
	t.stalledMu.Unlock()
}

func (t *reactorTransport) expire(rc *rconn) {
	t.srv.log.Info("petrel: connection timed out", "conn", rc.info.ID, "remote", rc.info.RemoteAddr)
	rc.gc.Close()
}

// OnOpen sets up a connection, or refuses it when the server is draining
// or at its connection limit.
func (t *reactorTransport) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	srv := t.srv
	if srv.closed.Load() || (srv.cfg.MaxConns > 0 && srv.stats.open.Load() >= int64(srv.cfg.MaxConns)) {
		srv.stats.refused.Add(1)
		return nil, gnet.Close
	}
	rc := &rconn{t: t, gc: c, fd: c.Fd()}
	rc.init(srv)
	rc.info.LocalAddr, rc.info.RemoteAddr = c.LocalAddr(), c.RemoteAddr()
	if t.network == "unix" {
		rc.info.PeerCred = peerCredFd(rc.fd)
	}
	rc.idle()
	if srv.cfg.TLS != nil {
		t.openTLS(rc)
	}
	c.SetContext(rc)
	srv.stats.open.Add(1)
	srv.stats.total.Add(1)
	t.wheel.add(rc, rc.deadline.Load())
	srv.log.Debug("petrel: client connected", "conn", rc.info.ID, "remote", rc.info.RemoteAddr, "status", int(codec.StatusConnected))
	return nil, gnet.None
}

// OnClose runs on the loop before gnet closes the socket. Taking wmu here
// guarantees no worker writes to the descriptor after it is closed (and
// possibly reused for another client).
func (t *reactorTransport) OnClose(c gnet.Conn, err error) gnet.Action {
	rc, ok := c.Context().(*rconn)
	if !ok {
		return gnet.None
	}
	rc.wmu.Lock()
	rc.gone.Store(true) // under wmu: no direct write can follow
	rc.wmu.Unlock()
	rc.ctx.cancel()
	if rc.tls != nil {
		rc.closeTLS()
	}
	if rc.state.Load() == stateIdle && rc.in != nil {
		bytebufferpool.Put(rc.in)
		rc.in = nil
	}
	t.srv.stats.open.Add(-1)
	t.srv.log.Debug("petrel: client disconnected", "conn", rc.info.ID, "status", int(codec.StatusDisconnected), "err", err)
	select {
	case t.closed <- struct{}{}:
	default:
	}
	return gnet.None
}

// OnTraffic decodes and dispatches buffered frames, unless a request is
// already in flight on this connection.
func (t *reactorTransport) OnTraffic(c gnet.Conn) gnet.Action {
	rc, ok := c.Context().(*rconn)
	if !ok {
		return gnet.Close
	}
	if rc.tls != nil {
		return rc.processTLS()
	}
	// gnet keeps reading while a request is in flight or answers are not
	// being read; a client that floods pipelined frames is cut off before
	// its backlog outgrows one maximal frame plus some slack.
	if c.InboundBuffered() > t.backlogLimit {
		t.srv.log.Warn("petrel: pipelined backlog over the limit; closing", "conn", rc.info.ID,
			"backlog", c.InboundBuffered(), "limit", t.backlogLimit)
		return gnet.Close
	}
	if rc.markPending() {
		return gnet.None
	}
	return rc.process()
}

func (t *reactorTransport) shutdown(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if t.srv.stats.open.Load() <= 0 {
			return nil
		}
		t.wheel.all(func(rc *rconn) { rc.gc.Wake(nil) })
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.closed:
		case <-tick.C:
		}
	}
}

func (t *reactorTransport) close() error {
	t.closeOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan error, 1)
		go func() { stopped <- t.eng.Stop(ctx) }()
		<-t.runDone
		cancel()
		<-stopped
		t.hsWG.Wait()
		t.spillWG.Wait()
		if t.pool != nil {
			_ = t.pool.ReleaseTimeout(5 * time.Second)
		}
		if t.runErr != nil && !errors.Is(t.runErr, net.ErrClosed) {
			t.closeErr = t.runErr
		}
	})
	return t.closeErr
}

// overflowQueue holds connections whose request found the worker pool
// full. Workers drain it when they finish; at most one entry per
// connection, so its size is bounded by the connection count.
type overflowQueue struct {
	mu sync.Mutex   // guards q
	q  []*rconn     // waiting connections, oldest first
	n  atomic.Int32 // len(q), read without the lock
}

func (o *overflowQueue) push(rc *rconn) {
	o.mu.Lock()
	o.q = append(o.q, rc)
	o.n.Store(int32(len(o.q)))
	o.mu.Unlock()
}

func (o *overflowQueue) pop() *rconn {
	if o.n.Load() == 0 {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.q) == 0 {
		return nil
	}
	rc := o.q[0]
	o.q[0] = nil
	o.q = o.q[1:]
	o.n.Store(int32(len(o.q)))
	return rc
}

// rconn is one reactor connection.
//
// Ownership: while state is stateIdle the event loop owns everything here;
// while busy, the worker running the request owns in and x, and the loop
// only reads state. OnClose sets gone under wmu, which a worker holds for
// the duration of a direct write to fd. An idle connection holds no buffer and
// no exchange: only this struct and gnet's.
type rconn struct {
	session
	t  *reactorTransport
	gc gnet.Conn
	fd int

	state    atomic.Int32
	gone     atomic.Bool  // closed (set under wmu); the wheel drops it
	deadline atomic.Int64 // unix nanoseconds, or noDeadline

	wmu        sync.Mutex // guards flushing, outPending and the setting of gone; held during a direct write
	flushing   bool       // TLS: the loop is writing queued ciphertext
	outPending bool       // TLS: gnet still held unsent ciphertext at the last flush

	in      *bytebufferpool.ByteBuffer // frame bytes owned by this conn (partial or in flight)
	want    int                        // total length of the frame accumulating in in, 0 if none
	reading bool                       // a frame has begun arriving; its read deadline is armed
	x       *exchange                  // the request in flight, nil when idle
	direct  bool                       // the worker may write to fd itself
	tls     *rtls                      // nil without TLS
}

// arm sets the connection's deadline to timeout from the wheel's clock;
// a timeout of zero or less means none.
func (rc *rconn) arm(timeout time.Duration) {
	if timeout > 0 {
		rc.deadline.Store(rc.t.wheel.now.Load() + int64(timeout))
	} else {
		rc.deadline.Store(noDeadline)
	}
}

func (rc *rconn) idle()    { rc.arm(rc.srv.cfg.IdleTimeout) }
func (rc *rconn) partial() { rc.arm(rc.srv.cfg.ReadTimeout) }

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

// process decodes and serves buffered frames. Loop goroutine only, with
// state idle.
func (rc *rconn) process() gnet.Action {
	srv := rc.srv
	c := rc.gc
	for {
		if c.OutboundBuffered() > outboundHighWater {
			// The client is not reading its answers: serve nothing more
			// until they drain; the ticker looks again.
			rc.t.stall(rc)
			return gnet.None
		}
		buf, _ := c.Peek(-1)
		if rc.want > 0 {
			// A frame is accumulating in rc.in: copy what arrived.
			take := min(len(buf), rc.want-len(rc.in.B))
			rc.in.B = append(rc.in.B, buf[:take]...)
			c.Discard(take)
			if len(rc.in.B) < rc.want {
				return gnet.None
			}
			rc.want = 0
			rc.reading = false
			f, _, _, _ := codec.Parse(rc.in.B, rc.t.opts)
			if act, done := rc.serve(f, len(rc.in.B), true, len(buf) > take); done {
				return act
			}
			continue
		}
		if len(buf) == 0 {
			rc.reading = false
			rc.idle()
			if srv.closed.Load() {
				if c.OutboundBuffered() > 0 {
					// gnet's close sends only what the socket takes at
					// once: let the answer drain first; the ticker
					// looks again.
					rc.t.stall(rc)
					return gnet.None
				}
				return gnet.Close
			}
			return gnet.None
		}
		f, n, need, err := codec.Parse(buf, rc.t.opts)
		if err != nil {
			x := srv.getExchange()
			v := rc.refusal(x, buf, err)
			c.Writev(v)
			srv.putExchange(x)
			return gnet.Close
		}
		if n == 0 {
			if srv.closed.Load() {
				return gnet.Close
			}
			if !rc.reading {
				// The read timeout runs from a frame's first byte, not
				// from each read: a trickling peer cannot extend it.
				rc.reading = true
				rc.partial()
			}
			if len(buf) >= codec.HeaderLen {
				// The header is here: collect the rest in our own buffer
				// so each byte is copied once, not re-assembled per read.
				rc.in = bytebufferpool.Get()
				rc.in.B = append(rc.in.B[:0], buf...)
				rc.want = len(buf) + need
				c.Discard(len(buf))
			}
			return gnet.None
		}
		rc.reading = false
		if rc.t.pool == nil {
			// Inline: answer straight from gnet's buffer.
			act, done := rc.serve(f, n, false, false)
			c.Discard(n)
			if done {
				return act
			}
			continue
		}
		rc.in = bytebufferpool.Get()
		rc.in.B = append(rc.in.B[:0], buf[:n]...)
		c.Discard(n)
		f, _, _, _ = codec.Parse(rc.in.B, rc.t.opts)
		if act, done := rc.serve(f, n, true, len(buf) > n); done {
			return act
		}
	}
}

// serve answers frame f (n bytes). owned says f lives in rc.in; pending,
// that more bytes follow it in gnet's buffer. In inline mode it answers on
// the loop and reports done only when the connection must close; in pool
// mode it hands f to a worker and reports done.
func (rc *rconn) serve(f codec.Frame, n int, owned, pending bool) (gnet.Action, bool) {
	srv := rc.srv
	c := rc.gc
	x := srv.getExchange()
	if rc.t.pool == nil {
		r := rc.dispatch(x, f)
		v := rc.frame(x, f, r)
		srv.stats.answered(rc.info.ID, r.status, n, vecLen(v))
		_, werr := c.Writev(v)
		srv.putExchange(x)
		if werr != nil {
			// gnet has closed the connection inside Writev: OnClose ran
			// and released rc.in. Touch nothing of it any more.
			return gnet.None, true
		}
		if owned {
			bytebufferpool.Put(rc.in)
			rc.in = nil
		}
		if r.closes {
			return gnet.Close, true
		}
		return gnet.None, false
	}
	rc.direct = c.OutboundBuffered() == 0
	rc.handOff(x, f, pending)
	return gnet.None, true
}

// handOff gives frame f, with exchange x, to a worker: the connection is
// busy (pending says more bytes wait behind f) and has no read deadline
// until the answer is written. Loop goroutine.
func (rc *rconn) handOff(x *exchange, f codec.Frame, pending bool) {
	x.rc = rc
	x.cur = f
	rc.x = x
	rc.deadline.Store(noDeadline)
	if pending {
		rc.state.Store(stateBusyPending)
	} else {
		rc.state.Store(stateBusy)
	}
	rc.submit()
}

// submit hands the connection's request to the worker pool; when the pool
// is full the connection queues and the next worker to finish takes it.
func (rc *rconn) submit() {
	t := rc.t
	if err := t.pool.Submit(rc.x.runFn); err == nil {
		return
	} else if !errors.Is(err, ants.ErrPoolOverload) {
		// The pool is closed: the server is stopping.
		rc.gc.Close()
		return
	}
	t.overflow.push(rc)
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
// one already does. Loop goroutine only (close waits on spillWG after the
// loops have stopped).
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
	for rc := t.overflow.pop(); rc != nil; rc = t.overflow.pop() {
		rc.handle()
	}
}

// run is the worker pool task: serve the request, then any connections
// that queued while the pool was full.
func (x *exchange) run() {
	t := x.rc.t
	x.rc.handle()
	t.drainOverflow()
}

// handle runs the handler and writes the answer. Worker goroutine, state
// busy.
func (rc *rconn) handle() {
	if rc.tls != nil {
		rc.handleTLS()
		return
	}
	srv := rc.srv
	x := rc.x
	f := x.cur
	r := rc.dispatch(x, f)
	v := rc.frame(x, f, r)
	total := vecLen(v)
	srv.stats.answered(rc.info.ID, r.status, len(rc.in.B), total)
	x.res = r
	if rc.direct && !r.closes {
		// Write straight to the socket: no wake of the event loop when the
		// kernel takes the whole answer, which it almost always does.
		rc.wmu.Lock()
		if rc.gone.Load() {
			rc.wmu.Unlock()
			rc.release()
			return
		}
		n, err := unix.Writev(rc.fd, v)
		rc.wmu.Unlock()
		if err == nil && n == total {
			rc.release()
			rc.finish()
			return
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			rc.release()
			rc.gc.Close()
			return
		}
		v = skipBytes(v, max(n, 0))
	}
	if err := rc.gc.AsyncWritev(v, rc.t.afterWriteFn); err != nil {
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

// afterAsyncWrite runs on the loop once gnet has taken an answer.
func (t *reactorTransport) afterAsyncWrite(c gnet.Conn, err error) error {
	rc, ok := c.Context().(*rconn)
	if !ok {
		// Closed and released by gnet: the release in OnClose's
		// absence happens here.
		return nil
	}
	closes := rc.x != nil && rc.x.res.closes
	rc.release()
	if err != nil || closes {
		c.Close()
		return nil
	}
	rc.finish()
	return nil
}

// release returns the request buffer and the exchange to their pools,
// unless a timed-out handler may still read them.
func (rc *rconn) release() {
	x := rc.x
	abandoned := x != nil && x.res.abandoned
	if rc.in != nil && !abandoned {
		bytebufferpool.Put(rc.in)
	}
	rc.in = nil
	if x != nil {
		rc.x = nil
		if !abandoned {
			rc.srv.putExchange(x)
		}
	}
}

// finish ends a request: the connection becomes idle, and the loop is woken
// if frames wait in its buffer or the server is draining.
func (rc *rconn) finish() {
	rc.idle()
	if old := rc.state.Swap(stateIdle); old == stateBusyPending || rc.srv.closed.Load() {
		rc.gc.Wake(nil)
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
