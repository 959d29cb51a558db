package engine

import (
	"log/slog"

	"github.com/petrel-rpc/petrel/codec"
)

// Which statuses a handler's answer may carry on the wire.
//
// Codes above 1024 are the application's own and pass through on every
// session. Codes 0–1024 are the protocol's:
//
//   - On a version-0 session only the original Petrel client's table is
//     sent (100, 101, 198, 199, 200, 400, 401, 402, 497, 498, 499, 500,
//     501, 502, 599; see [codec.Status.Classic]): the original client
//     crashes on any other code up to 1024.
//   - On a version-1 session every code passes through: a version-1 client
//     knows the table is open (docs/PROTOCOL.md).
//
// On a version-0 session, any other code up to 1024 that a handler returns
// is sent as 500 with the handler's payload, and a rate-limited warning is
// logged. The library's
// own busy and timeout answers are built for the session's version in the
// first place ([session.busyResult], [session.timeoutResult]). Whatever
// the code, a handler's answer never closes the connection.

// wireStatus returns the status to send for a handler's status st on a
// session of version ver, and whether it had to be replaced.
func wireStatus(ver uint8, st codec.Status) (codec.Status, bool) {
	if st.Classic() || ver >= codec.ProtocolV1 {
		return st, false
	}
	return codec.StatusHandlerError, true
}

// Static payloads of the busy and timeout answers; sending them allocates
// nothing.
var (
	reasonBusy    = []byte("server busy")
	reasonTimeout = []byte("handler timeout")
)

// busyResult is the answer to a request that did not run because the
// server (a worker, a handler's MaxConcurrent, the abandoned-handler
// bound) had no room for it within the queue timeout: 503 on version-1
// sessions, 500 "server busy" on version 0. It does not close the
// connection, and counts in Stats.Busy. Any goroutine serving the
// session's frames.
func (s *session) busyResult() result {
	s.srv.stats.busy.Add(1)
	if s.ver >= codec.ProtocolV1 {
		return result{status: codec.StatusBusy, payload: reasonBusy}
	}
	return result{status: codec.StatusHandlerError, payload: reasonBusy}
}

// refuseBusy answers f busy without running it, once the session has
// taken it as dispatch would (its MAC, its place in the sequence, the
// session's start): a busy request uses up its seq like any other, and
// one that fails those checks is refused for them instead.
func (s *session) refuseBusy(x *exchange, f codec.Frame) result {
	if r, ok := s.verify(x, f); !ok {
		return r
	}
	if r, ok := s.begin(f); !ok {
		return r
	}
	return s.busyResult()
}

// timeoutResult is the answer to a request whose handler overran its
// timeout: 504 on version-1 sessions, 500 "handler timeout" on version 0.
// It does not close the connection. The caller sets abandoned when the
// handler may still use the request's bytes.
func (s *session) timeoutResult() result {
	if s.ver >= codec.ProtocolV1 {
		return result{status: codec.StatusHandlerTimeout, payload: reasonTimeout}
	}
	return result{status: codec.StatusHandlerError, payload: reasonTimeout}
}

// mapStatus makes a handler's answer fit the session (see wireStatus),
// warning (rate-limited) when a code had to be replaced.
func (s *session) mapStatus(e *entry, r result) result {
	st, replaced := wireStatus(s.ver, r.status)
	if replaced {
		if s.srv.logOn(slog.LevelWarn) {
			s.srv.logRated(e.statusKey, slog.LevelWarn, "petrel: handler status not sendable on this session; sent as 500",
				"request", e.name, "conn", s.id, "status", int(r.status), "version", int(s.ver))
		}
		r.status = st
	}
	return r
}
