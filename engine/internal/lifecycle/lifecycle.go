// Package lifecycle is the connection lifecycle every Petrel transport
// follows (reactor plain, reactor TLS, std), written once: the phases and
// their deadlines, the drain rule, the decisions a connection takes while
// it waits for bytes and once an answer is handed to the socket, and the
// one decode loop that turns inbound bytes into frames. The transports
// only move bytes: each is a [Source].
//
// A connection is always in one phase. Every decision about time and
// closing is made from the phase and the moment it began:
//
//	phase        deadline                  when draining
//	handshake    since + handshake timeout close at once
//	idle         since + idle timeout      close at once
//	reading      since + read timeout      close at once (a partial frame)
//	dispatched   none (the handler's own)  wait for the answer
//	writing      since + write timeout     wait until fully written
//	lingering    since + LingerTime        (already closing)
//
// "since" is when the phase began, except for writing, where it is the
// last time an unsent answer made progress: a slow reader that keeps
// reading is never cut off, one that stops is.
package lifecycle

import (
	"math"
	"sync/atomic"
	"time"
)

// Phase is where a connection is in its lifecycle.
type Phase int32

// The phases.
const (
	Handshake  Phase = iota // TLS handshake in progress (or not begun)
	Idle                    // nothing pending: waiting for a request
	Reading                 // a frame has begun arriving
	Dispatched              // a handler runs (or waits for a worker)
	Writing                 // an answer is queued, not yet fully sent
	Lingering               // a refusal was answered: discarding input before the close
	Closed                  // the connection has ended
)

var phaseNames = [...]string{"handshake", "idle", "reading", "dispatched", "writing", "lingering", "closed"}

func (p Phase) String() string {
	if p >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase?"
}

// NoDeadline marks a phase that cannot time out.
const NoDeadline = math.MaxInt64

// Lingering after an "answer, then close" refusal: the write side is shut,
// then input is read and discarded for at most LingerTime and LingerBytes,
// so that the kernel does not answer the client's unread bytes with a
// reset that would destroy the refusal in flight (as HTTP servers do).
const (
	LingerTime  = 500 * time.Millisecond
	LingerBytes = 1 << 20
)

// State is a connection's phase and when it began, in one word: the phase
// in the low three bits, the moment (unix nanoseconds, to 8 ns) in the
// rest, so that any goroutine reads the two together. Transitions are made
// by whichever goroutine owns the connection at the time (the loop, the
// worker, std's goroutine). The zero State is handshake since 0.
type State struct {
	v atomic.Int64
}

const phaseBits = 7 // the low bits of State.v holding the phase

// Phase is the current phase.
func (l *State) Phase() Phase { return Phase(l.v.Load() & phaseBits) }

// Since is when the phase began (for writing: the last progress).
func (l *State) Since() int64 { return l.v.Load() &^ phaseBits }

// Load is the phase and when it began, read together.
func (l *State) Load() (Phase, int64) {
	v := l.v.Load()
	return Phase(v & phaseBits), v &^ phaseBits
}

// Enter moves to p at time now (unix nanoseconds).
func (l *State) Enter(p Phase, now int64) { l.v.Store(now&^phaseBits | int64(p)) }

// Progress records that an unsent answer moved at now.
func (l *State) Progress(now int64) {
	l.v.Store(now&^phaseBits | l.v.Load()&phaseBits)
}

// Await is the decision for a connection waiting for bytes, the same on
// every transport: v is what the decoder found, Empty (between frames) or
// Partial (a frame begun). The connection enters idle, or reading (timed
// from the frame's first byte, so a trickling peer cannot extend the read
// timeout), at clock() when its phase changes. It reports whether the
// connection must close now: a draining server closes it, as nothing it
// has read is left unanswered. A connection still writing its last answer
// stays writing while it waits between frames.
func (l *State) Await(v Verdict, draining bool, clock func() int64) (closeNow bool) {
	p := Idle
	if v == Partial {
		p = Reading
	}
	if p == Idle && l.Phase() == Writing {
		// The last answer is still leaving (a transport that reads on
		// meanwhile): idle, and closed by a drain, once it has left.
		return false
	}
	if l.Phase() != p {
		l.Enter(p, clock())
	}
	return draining && ClosesWhenDraining(p)
}

// Answered is the decision once an answer has been handed to the socket,
// the same on every transport: while part of it is unsent the connection
// is writing (the write timeout counts from its last progress); once it
// has all left, a closing refusal lingers (the transport shuts its write
// side, then enters lingering) and anything else is idle, the idle
// timeout starting now.
func (l *State) Answered(unsent, closes bool, now int64) Phase {
	switch {
	case unsent:
		l.Enter(Writing, now)
		return Writing
	case closes:
		return Lingering
	}
	l.Enter(Idle, now)
	return Idle
}

// ClosesWhenDraining reports whether a draining server closes a connection
// in phase p at once: nothing it has read is left unanswered.
func ClosesWhenDraining(p Phase) bool {
	switch p {
	case Handshake, Idle, Reading:
		return true
	}
	return false
}

// Timeouts are the durations the lifecycle applies; zero or negative means
// none.
type Timeouts struct {
	Handshake, Idle, Read, Write time.Duration
}

// Deadline returns when a connection in phase p since since times out, in
// unix nanoseconds, or NoDeadline.
func (to Timeouts) Deadline(p Phase, since int64) int64 {
	var d time.Duration
	switch p {
	case Handshake:
		d = to.Handshake
	case Idle:
		d = to.Idle
	case Reading:
		d = to.Read
	case Writing:
		d = to.Write
	case Lingering:
		d = LingerTime
	default:
		return NoDeadline
	}
	if d <= 0 {
		return NoDeadline
	}
	return since + int64(d)
}

// DeadlineTime is Deadline as a time.Time; the zero Time for none.
func (to Timeouts) DeadlineTime(p Phase, since int64) time.Time {
	dl := to.Deadline(p, since)
	if dl == NoDeadline {
		return time.Time{}
	}
	return time.Unix(0, dl)
}
