package engine

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Handler timeouts without a goroutine per request.
//
// A handler with a timeout runs on the goroutine that would run it anyway
// (a worker, std's goroutine, the loop), with a reqContext whose deadline
// is the timeout. One timer per exchange, reused, fires at the deadline:
// it cancels the context and, where the transport can (a worker or std's
// goroutine runs the handler), answers for the handler at once; the
// handler is then abandoned (counted in Stats.Abandoned until it returns)
// and its late result discarded. On an event loop nothing can pre-empt the
// handler: one that returns after its deadline is answered as timed out.

// Exchange states of a timed request (exchange.timed.state).
const (
	timedRunning int32 = iota + 1 // the handler runs
	timedDone                     // the handler returned in time
	timedFiring                   // the timer is deciding (briefly)
	timedOut                      // the deadline passed first: the timer answers
)

// timedState is the part of an exchange that times its handler. The
// goroutine running the handler owns it, except state and fired, which
// the timer's goroutine also changes.
type timedState struct {
	state   atomic.Int32
	fired   atomic.Int64 // timer callbacks that have made their decision
	expect  int64        // callbacks known to have fired (runTimed only)
	canWait bool         // the handler runs where the timer may answer for it; set before arming
	sess    *session     // the session of the request being timed; set before arming (exchanges move between sessions)
	ctx     reqContext
	timer   *time.Timer // made on first use, then Reset per request
}

// runTimed runs e under timeout d on the calling goroutine. It returns the
// handler's result, or the timeout's; abandoned is set when the timer has
// already answered for the handler (the caller then does nothing more
// with the request: the exchange and its bytes belong to the handler).
func (s *session) runTimed(x *exchange, e *entry, req *Request, d time.Duration) (r result, abandoned bool) {
	ts := &x.timed
	ts.canWait = x.canWait
	ts.sess = s
	ts.ctx.reset(&s.ctx, x.std, time.Now().Add(d))
	ts.state.Store(timedRunning)
	if ts.timer == nil {
		// The callback finds the session through the exchange: on the
		// reactor an exchange serves many connections in turn.
		ts.timer = time.AfterFunc(d, x.expire)
	} else {
		ts.timer.Reset(d)
	}
	st, p := s.call(&ts.ctx, e, req)
	if !ts.timer.Stop() {
		// The callback has run or is running: wait for its decision, so
		// that it can never act on the exchange's next request.
		ts.expect++
		for ts.fired.Load() < ts.expect {
			runtime.Gosched()
		}
	}
	if ts.state.Load() == timedOut {
		// The timer answered for us: we were abandoned.
		s.srv.abandon(-1)
		return result{answered: true}, true
	}
	ts.state.Store(timedDone)
	ts.sess = nil // the exchange may go back to a pool: hold no session
	ts.ctx.detach()
	if !ts.canWait && time.Now().After(ts.ctx.deadline) {
		// A handler on the event loop that overran: answered as timed out.
		s.srv.logRated("timeout", slog.LevelWarn, "petrel: handler overran its timeout", "request", e.name, "conn", s.id, "timeout", d)
		return s.timeoutResult(), false
	}
	return result{status: st, payload: p}, false
}

// expire runs on the timer's goroutine at the deadline.
func (x *exchange) expire() {
	ts := &x.timed
	if !ts.state.CompareAndSwap(timedRunning, timedFiring) {
		ts.fired.Add(1) // the handler returned first
		return
	}
	// The state's store of timedRunning, which this swap read, came after
	// runTimed set sess.
	s := ts.sess
	if !ts.canWait {
		// On a loop: only the context ends; decided when the handler
		// returns.
		ts.ctx.expire()
		ts.state.Store(timedRunning)
		ts.fired.Add(1)
		return
	}
	// Decide first, then cancel: a handler woken by the cancellation must
	// find itself abandoned, not race the timer to answer.
	s.srv.abandon(1)
	ts.state.Store(timedOut)
	ts.ctx.expire()
	ts.fired.Add(1)
	// The exchange now belongs to the abandoned handler: nothing reuses
	// it while we answer for it.
	s.srv.logRated("timeout", slog.LevelWarn, "petrel: handler timed out; answered for it", "conn", s.id)
	r := s.timeoutResult()
	r.abandoned = true
	x.answerTimedOut(r)
}

// answerTimedOut answers for a handler whose timeout passed, through the
// transport that runs it.
func (x *exchange) answerTimedOut(r result) {
	switch {
	case x.std != nil:
		x.std.answerTimedOut(x, r)
	default:
		x.answerReactor(r)
	}
}

// reqContext is the context of one timed request: done at its deadline or
// when the connection's context is.
type reqContext struct {
	mu       sync.Mutex // guards the fields below
	parent   *connContext
	std      *stdConn // std: the connection, whose watcher the first Done starts (stdContext)
	deadline time.Time
	done     chan struct{} // made on first Done
	err      error
}

func (c *reqContext) reset(parent *connContext, std *stdConn, deadline time.Time) {
	c.mu.Lock()
	c.parent, c.std, c.deadline, c.done, c.err = parent, std, deadline, nil, nil
	c.mu.Unlock()
	parent.attach(c)
	if parent.Err() != nil {
		c.cancel(context.Canceled)
	}
}

// detach unlinks c from its connection once the handler has returned.
func (c *reqContext) detach() {
	if c.parent != nil {
		c.parent.attach(nil)
	}
}

func (c *reqContext) expire() { c.cancel(context.DeadlineExceeded) }

func (c *reqContext) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
}

func (c *reqContext) Deadline() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deadline, true
}

func (c *reqContext) Done() <-chan struct{} {
	if c.std != nil {
		stdContext{c.std}.Done() // start watching for the peer going away
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.err != nil {
			return closedChan
		}
		c.done = make(chan struct{})
	}
	return c.done
}

func (c *reqContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *reqContext) Value(any) any  { return nil }
func (c *reqContext) String() string { return "petrel.reqContext" }

// abandon counts handlers abandoned (+1) or back (−1). On the reactor an
// abandoned handler keeps its worker, so the pool grows by one for as long
// as it runs: the others are served as before, and MaxAbandoned bounds
// the growth.
func (s *Server) abandon(delta int64) {
	s.stats.abandoned.Add(delta)
	if s.onAbandon != nil {
		s.onAbandon(int(delta))
	}
}
