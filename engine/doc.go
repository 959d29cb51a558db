// Package engine embeds Petrel servers in a program.
//
// [Listen] starts a server from a [Config] and returns once it listens on
// Config.Addr ("host:port", or "unix:///path.sock"). Every other field's
// zero value is a working default, stated on the field.
//
// # Engines
//
// [Reactor] (the default) runs gnet event loops: no goroutine per
// connection and 764 B of memory per idle one (10,000 idle connections,
// docs/design.md). [Std] runs a
// goroutine per connection on package net: the baseline, and the engine
// for platforms gnet does not support. Both sit behind the same API.
//
// # Handlers
//
// A [Handler] answers the requests of one name, registered in
// Config.Handlers or with [Server.Handle] while serving, and wrapped by
// Config.Middleware. It returns a status, a payload and an error: an
// error or a panic is answered 500. Its [Request] and payload are valid
// only during the call. Handlers run on a bounded worker pool
// (Config.Workers; a connection waits for a free worker, nothing is
// dropped) or, with Config.Inline on the reactor, on the event loop
// itself, where they must never block. Each connection is synchronous:
// one request at a time, answered in order. The handler's ctx is
// cancelled when its client goes, the server stops, or
// Config.HandlerTimeout passes. [Request.Conn] tells who is calling:
// addresses, the TLS state, and on a Unix socket the peer's credentials.
//
// # Stopping
//
// [Server.Shutdown] stops gracefully: every request already read is
// answered, then connections close. [Server.Close] stops at once. SIGINT
// and SIGTERM shut down every server in the process gracefully unless
// Config.IgnoreSignals is set. [Server.Wait] and [Server.Err] tell when
// and why a server stopped ([ErrServerClosed], an error wrapping
// [ErrSignal], or the listener's error).
//
// # Security and limits
//
// Config.TLS serves TLS 1.2/1.3 on both engines; with ClientAuth set to
// tls.RequireAndVerifyClientCert, handlers see the verified chain in
// Request.Conn.TLS. Handshakes are bounded by Config.HandshakeTimeout and
// Config.MaxHandshakes. Config.HMACKey verifies every request's MAC and
// signs every answer; the classic MAC covers the payload only, so use it
// beside TLS, not instead of it. A frame declaring more than
// Config.MaxPayload is refused from its header, before any of it is
// allocated or read; Config.MaxConns, ReadTimeout and IdleTimeout bound
// connections, slow senders and idle ones.
//
// [Server.Stats] and [Server.Var] report counters; Config.Logger receives
// events (never a line per successful request).
//
// How the engines move bytes, and what that costs, is in docs/design.md;
// the wire format is in docs/PROTOCOL.md (both in the repository).
package engine
