package engine

import (
	"time"

	"github.com/petrel-rpc/petrel/engine/internal/lifecycle"
)

// The connection lifecycle (phases, deadlines, the drain rule, the
// decisions and the one decode loop) is written once, in
// engine/internal/lifecycle; the transports only move bytes.

// closeGrace bounds how long Close waits for handlers that ignore their
// cancelled context; those still running are abandoned.
const closeGrace = time.Second

// timeouts are the durations the lifecycle applies.
func (c Config) timeouts() lifecycle.Timeouts {
	return lifecycle.Timeouts{Handshake: c.HandshakeTimeout, Idle: c.IdleTimeout, Read: c.ReadTimeout, Write: c.WriteTimeout}
}

// drainLingers reports whether a connection the drain closes in phase p
// must linger (shut its write side, then discard what the peer still
// sends) instead of closing outright: when the peer is in the middle of a
// frame, or unread() says the kernel holds bytes it sent. Closing then
// would make the kernel reset the connection, which can destroy answers
// still on their way. A forced close (Close) never lingers.
func (s *Server) drainLingers(p lifecycle.Phase, unread func() int) bool {
	if !s.closed.Load() || s.halt.Load() {
		return false
	}
	switch p {
	case lifecycle.Reading:
		return true
	case lifecycle.Idle, lifecycle.Handshake:
		return unread() > 0
	}
	return false
}

// unixNow is the std engine's clock for the lifecycle.
func unixNow() int64 { return time.Now().UnixNano() }

// bigAnswer is the answer size above which a transport watches the
// kernel's send buffer drain before it counts the answer as sent (the
// idle timer starts then). Smaller answers leave at once and cost no
// system call.
const bigAnswer = 64 << 10
