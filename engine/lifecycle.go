package engine

import (
	"math"
	"sync/atomic"
	"time"
)

// The connection lifecycle, written once for every transport.
//
// A connection is always in one phase. The transports (reactor plain,
// reactor TLS, std) only move bytes; every decision about time and closing
// is made here, from the phase and the moment it began:
//
//	phase        deadline                  when draining
//	handshake    since + handshake timeout close at once
//	idle         since + IdleTimeout       close at once
//	reading      since + ReadTimeout       close at once (a partial frame)
//	dispatched   none (the handler's own)  wait for the answer
//	writing      since + WriteTimeout      wait until fully written
//	lingering    since + lingerTime        (already closing)
//
// "since" is when the phase began, except for writing, where it is the
// last time an unsent answer made progress: a slow reader that keeps
// reading is never cut off, one that stops is.
type phase int32

const (
	phaseHandshake  phase = iota // TLS handshake in progress (or not begun)
	phaseIdle                    // nothing pending: waiting for a request
	phaseReading                 // a frame has begun arriving
	phaseDispatched              // a handler runs (or waits for a worker)
	phaseWriting                 // an answer is queued, not yet fully sent
	phaseLingering               // a refusal was answered: discarding input before the close
	phaseClosed
)

var phaseNames = [...]string{"handshake", "idle", "reading", "dispatched", "writing", "lingering", "closed"}

func (p phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "phase?"
}

// noDeadline marks a phase that cannot time out.
const noDeadline = math.MaxInt64

// Lingering after an "answer, then close" refusal: the write side is shut,
// then input is read and discarded for at most this long and this many
// bytes, so that the kernel does not answer the client's unread bytes with
// a reset that would destroy the refusal in flight (as HTTP servers do).
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

// closeGrace bounds how long Close waits for handlers that ignore their
// cancelled context; those still running are abandoned.
const closeGrace = time.Second

// lifecycle is a connection's phase and when it began, in one word: the
// phase in the low three bits, the moment (unix nanoseconds, to 8 ns) in
// the rest, so that any goroutine reads the two together. Transitions are
// made by whichever goroutine owns the connection at the time (the loop,
// the worker, std's goroutine).
type lifecycle struct {
	v atomic.Int64
}

const phaseBits = 7 // the low bits of lifecycle.v holding the phase

func (l *lifecycle) phase() phase { return phase(l.v.Load() & phaseBits) }

// since is when the phase began (for writing: the last progress).
func (l *lifecycle) since() int64 { return l.v.Load() &^ phaseBits }

// state is the phase and when it began, read together.
func (l *lifecycle) state() (phase, int64) {
	v := l.v.Load()
	return phase(v & phaseBits), v &^ phaseBits
}

// enter moves to p at time now (unix nanoseconds).
func (l *lifecycle) enter(p phase, now int64) { l.v.Store(now&^phaseBits | int64(p)) }

// progress records that an unsent answer moved at now.
func (l *lifecycle) progress(now int64) {
	l.v.Store(now&^phaseBits | l.v.Load()&phaseBits)
}

// timeouts are the durations the lifecycle applies; zero or negative
// means none.
type timeouts struct {
	handshake, idle, read, write time.Duration
}

func (c Config) timeouts() timeouts {
	return timeouts{handshake: c.HandshakeTimeout, idle: c.IdleTimeout, read: c.ReadTimeout, write: c.WriteTimeout}
}

// deadline returns when a connection in phase p since since times out, in
// unix nanoseconds, or noDeadline.
func (to timeouts) deadline(p phase, since int64) int64 {
	var d time.Duration
	switch p {
	case phaseHandshake:
		d = to.handshake
	case phaseIdle:
		d = to.idle
	case phaseReading:
		d = to.read
	case phaseWriting:
		d = to.write
	case phaseLingering:
		d = lingerTime
	default:
		return noDeadline
	}
	if d <= 0 {
		return noDeadline
	}
	return since + int64(d)
}

// deadlineTime is deadline as a time.Time; the zero Time for none.
func (to timeouts) deadlineTime(p phase, since int64) time.Time {
	dl := to.deadline(p, since)
	if dl == noDeadline {
		return time.Time{}
	}
	return time.Unix(0, dl)
}

// await is the lifecycle's decision for a connection waiting for bytes,
// the same on every transport: v is what the decoder found, vEmpty
// (between frames) or vPartial (a frame begun). The connection enters
// idle, or reading (timed from the frame's first byte, so a trickling peer
// cannot extend the read timeout), at clock() when its phase changes. It
// reports whether the connection must close now: a draining server closes
// it, as nothing it has read is left unanswered.
func (l *lifecycle) await(v verdict, draining bool, clock func() int64) (closeNow bool) {
	p := phaseIdle
	if v == vPartial {
		p = phaseReading
	}
	if l.phase() != p {
		l.enter(p, clock())
	}
	return draining && closesWhenDraining(p)
}

// answered is the lifecycle's decision once an answer has been handed to
// the socket, the same on every transport: while part of it is unsent
// the connection is writing (the write timeout counts from its last
// progress); once it has all left, a closing refusal lingers (the
// transport shuts its write side, then enters lingering) and anything
// else is idle, the idle timeout starting now.
func (l *lifecycle) answered(unsent, closes bool, now int64) phase {
	switch {
	case unsent:
		l.enter(phaseWriting, now)
		return phaseWriting
	case closes:
		return phaseLingering
	}
	l.enter(phaseIdle, now)
	return phaseIdle
}

// unixNow is the std engine's clock for the lifecycle.
func unixNow() int64 { return time.Now().UnixNano() }

// closesWhenDraining reports whether a draining server closes a connection
// in phase p at once: nothing it has read is left unanswered.
func closesWhenDraining(p phase) bool {
	switch p {
	case phaseHandshake, phaseIdle, phaseReading:
		return true
	}
	return false
}
