package engine

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// Handler answers one request. It returns the answer's status (200 for
// success, and 0 means 200; any code the application likes, codes above
// 1024 being its own), the answer's payload, and an error.
//
// A non-nil error is logged (rate-limited) and answered with status 500:
// with the payload returned beside it when that is not nil (as the
// original Petrel does, so a [Classic] handler behaves as it did there),
// else with the payload "handler error". The error text is never sent to
// the client. A status of 500 with a payload and no error is sent as it
// is. A panic is recovered, logged (with its stack at most once per
// handler per log interval) and answered 500 "handler error".
//
// Codes 0–1024 belong to the protocol: on a version-0 (classic) session a
// code the original client's table lacks (201, 503, ...) is sent as 500
// with the handler's payload and a warning is logged (the original client
// crashes on such codes); a version-1 session gets every code as it is.
// Whatever the code, a handler's answer never closes the connection.
//
// ctx is cancelled when the connection drops (also when the peer only
// shuts down its write side: its answer is still written, as net/http
// does), the server stops, or the handler's timeout
// ([HandlerOptions.Timeout], else [Config.HandlerTimeout]) passes. A
// handler that overruns its timeout is answered for at once (504, or 500
// "handler timeout" on version 0) and its late result discarded; on an
// event loop, where nothing can pre-empt it, it is answered timed out when
// it returns.
//
// The request and its payload are valid only until the handler returns:
// copy what you keep. The returned payload may alias the request payload
// (an echo costs no copy); the server is done with it once the answer has
// been written, so a handler must not modify it afterwards.
//
// On the reactor engine with [Config.Inline] set, or registered with
// [HandlerOptions.NonBlocking], handlers run on the event loop and must
// never block.
type Handler func(ctx context.Context, req *Request) (status uint16, payload []byte, err error)

// Middleware wraps a handler, to add logging, metrics or authorisation to
// every handler in one place. See [Config.Middleware].
type Middleware func(next Handler) Handler

// Request is one request as a handler sees it. The server reuses Request
// values: do not keep the pointer after the handler returns.
type Request struct {
	// Name is the request (handler) name. It is the string the handler was
	// registered with, so reading it costs no allocation.
	Name string
	// Seq is the request's sequence number, echoed in the answer.
	Seq uint32
	// Payload is the request's payload. It is valid only during the call.
	Payload []byte
	// Conn describes the connection the request came on. Valid only during
	// the call.
	Conn *ConnInfo
}

// ConnInfo describes a connection: who is calling.
type ConnInfo struct {
	// ID is unique per server for the server's lifetime, starting at 1.
	ID uint64
	// LocalAddr and RemoteAddr are the connection's addresses.
	LocalAddr, RemoteAddr net.Addr
	// TLS is the state of the TLS connection, with the verified peer
	// certificate chain when client certificates are required; nil without
	// TLS.
	TLS *tls.ConnectionState
	// Version is the protocol version the session negotiated: 0 (classic)
	// or 1.
	Version uint8
	// PeerCred holds the peer process's credentials on a Unix domain
	// socket (SO_PEERCRED); nil on TCP or where unavailable.
	PeerCred *PeerCred
}

// PeerCred is the credentials of the process at the other end of a Unix
// domain socket, as the kernel reported them when it connected.
type PeerCred struct {
	PID int32
	UID uint32
	GID uint32
}

// Classic adapts a handler of the original Petrel's form, which sees only
// the payload, to a [Handler].
func Classic(f func(payload []byte) (uint16, []byte, error)) Handler {
	return func(_ context.Context, req *Request) (uint16, []byte, error) {
		return f(req.Payload)
	}
}

// HandlerOptions are one handler's own settings, given to [Server.Handle]
// or through [Config.HandlerOptions]. The zero value of each field means
// the server-wide setting.
type HandlerOptions struct {
	// NonBlocking promises that the handler never blocks (no I/O, no
	// locks held for long, no waiting on channels): on the reactor it then
	// runs on the event loop even when the server uses the worker pool,
	// paying no hand-off. A NonBlocking handler that does block stalls
	// every connection of its event loop for as long as it blocks, and its
	// timeout cannot pre-empt it.
	NonBlocking bool
	// Timeout overrides Config.HandlerTimeout for this handler; negative
	// means none.
	Timeout time.Duration
	// MaxPayload overrides Config.MaxPayload for this handler's requests,
	// above or below it: a request over it is answered 402 as soon as its
	// header and request text have arrived, before any of its payload is
	// read.
	MaxPayload uint32
	// MaxConcurrent bounds how many requests of this handler run at once,
	// across all connections; 0 means no bound, negative is an error
	// ([ErrBadOptions]). The excess waits at most Config.QueueTimeout, then
	// is answered busy (503, or 500 "server busy" on version 0) without
	// running; a request served on the event loop (NonBlocking, Inline)
	// does not wait: it is answered busy at once. A slot is held until the
	// handler returns, even after its timeout answered for it.
	MaxConcurrent int
}
