// Package engine embeds Petrel servers in a program.
//
// [Listen] starts a server from a [Config] and returns once it listens on
// Config.Addr ("host:port", or "unix:///path.sock"); [Serve] serves a
// listener the caller brings (socket activation, a restart's inherited
// descriptor, a test). Every other field's zero value is a working
// default, stated on the field.
//
// # Engines
//
// [Reactor] (the default where gnet runs: Linux, macOS, the BSDs) runs
// gnet event loops: no goroutine per connection. [Std] runs a goroutine
// per connection on package net: the baseline, and the default elsewhere.
// Both sit behind the same API and one connection lifecycle.
//
// # Handlers
//
// A [Handler] answers the requests of one name, registered in
// Config.Handlers or with [Server.Handle] while serving, and wrapped by
// Config.Middleware. It returns a status, a payload and an error: an
// error or a panic is answered 500. Its [Request] and payload are valid
// only during the call. Handlers run on a bounded worker pool
// (Config.Workers) or, with Config.Inline on the reactor, on the event
// loop itself, where they must never block. Each connection is
// synchronous: one request at a time, answered in order. [Request.Conn]
// tells who is calling: addresses, the TLS state, the protocol version,
// and on a Unix socket the peer's credentials.
//
// [HandlerOptions], in Config.HandlerOptions or as Handle's last
// argument, give one handler its own Timeout, MaxPayload and
// MaxConcurrent, or mark it NonBlocking so that it runs on the event loop
// without a worker. The handler's ctx is cancelled when its client goes,
// the server stops, or its timeout (Config.HandlerTimeout by default)
// passes; an overrunning handler is answered timed out at once and
// abandoned, and at most Config.MaxAbandoned may be. A request that waits
// longer than Config.QueueTimeout for a worker is answered busy without
// running. With Config.Introspection the server answers
// [IntrospectHandlers], [IntrospectHealth] and [IntrospectStats].
//
// # Stopping
//
// [Server.Shutdown] stops gracefully: idle connections and partial frames
// close at once, every request already received (read, or waiting in the
// kernel) is answered, and each connection closes once its answer is
// written; it returns an error wrapping [ErrDrainCut] if its context ends
// first. [Server.Close] stops
// at once, at any time, within about a second. A first SIGINT or SIGTERM
// shuts every server in the process down, bounded by
// Config.ShutdownTimeout; a second closes them (unless
// Config.IgnoreSignals). [Server.Wait] and [Server.Err] tell when and why
// a server stopped.
//
// # Security and limits
//
// Config.TLS serves TLS 1.2/1.3 on both engines; handshakes are bounded by
// Config.HandshakeTimeout, Config.MaxHandshakes and
// Config.MaxHandshakesPerAddr. With Config.HMACKey, a protocol version 1
// session tags every frame under a per-session key (header, request text
// and payload) and enforces the sequence; a version-0 (classic) session's
// MAC covers the payload only. Config.MinProtocol 1 refuses version-0
// clients. A frame over its handler's payload limit is refused from its
// header and request text, before its payload is read. Config.MaxConns,
// ReadTimeout, IdleTimeout and WriteTimeout (which closes a connection
// whose answer stops moving) bound connections; Config.MaxBuffered bounds
// the bytes held for unfinished frames across all of them.
//
// [Server.Stats] reports counters (examples/server publishes them through
// expvar, engine/petrelprom to Prometheus); Config.Logger receives
// events, rate-limited (never a line per successful request).
//
// How the engines move bytes, and what that costs, is in docs/design.md;
// the wire format is in docs/PROTOCOL.md (both in the repository).
package engine
