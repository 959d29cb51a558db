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

// unixNow is the std engine's clock for the lifecycle.
func unixNow() int64 { return time.Now().UnixNano() }
