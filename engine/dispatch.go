package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// Static reasons sent with library statuses; sending them allocates nothing.
var (
	reasonNoHandler    = []byte("no handler for this request")
	reasonEmpty        = []byte("empty request text")
	reasonHandlerError = []byte("handler error")
	reasonBadMAC       = []byte("HMAC verification failed")
)

// session is the per-connection state both engines share with dispatch.
// It is kept small: an idle reactor connection holds only this and gnet's
// own state.
//
// The fields below ctx are the protocol session's state. They are read and
// written only by the goroutine serving the connection's current frame
// (the transports serve one frame at a time per connection, in order, and
// hand the connection from goroutine to goroutine with a synchronising
// operation), so they need no lock.
type session struct {
	srv    *Server
	id     uint64   // ConnInfo.ID
	remote net.Addr // the peer's address, set before the connection is served
	ctx    connContext

	fmac    *codec.FrameMAC // version 1, keyed: the session key's MAC; nil otherwise
	seq     uint32          // version 1: the seq of the last request accepted
	seqDone bool            // version 1: seq 2^32−1 was accepted; nothing more is
	ver     uint8           // the negotiated protocol version (ConnInfo.Version)
	sess    uint8           // sessNew, sessV0, sessV1 or sessClosed
}

func (s *session) init(srv *Server) {
	s.srv = srv
	s.id = srv.nextID.Add(1)
}

// conn completes x.info, whose LocalAddr, TLS and PeerCred the transport
// has set, for a handler of this session, and returns it.
func (s *session) conn(x *exchange) *ConnInfo {
	x.info.ID, x.info.RemoteAddr, x.info.Version = s.id, s.remote, s.ver
	return &x.info
}

// handlerContext is the context the handlers of x's connection receive
// (an untimed one; a timed one gets a reqContext under it): the
// connection's, through stdContext on the std engine.
func (s *session) handlerContext(x *exchange) context.Context {
	if x.std != nil {
		return stdContext{x.std}
	}
	return &s.ctx
}

// exchange is the scratch state of one request: the Request handed to the
// handler, the answer's header and MAC buffers, and a MAC with its own hash
// state. The std engine keeps one per connection; the reactor takes one
// from a pool per request, so idle connections do not hold one.
type exchange struct {
	req  Request
	info ConnInfo // req.Conn: built per request, so a connection holds only what ConnInfo is made from
	bufs codec.Buffers
	mac  *codec.MAC // version-0 MAC; nil without HMAC

	// canWait says dispatch may block this goroutine waiting for room (a
	// handler's MaxConcurrent slot) and may run the handler under a
	// pre-empting timeout. A transport that dispatches on its event loop
	// sets it to false for that frame; getExchange returns exchanges with
	// it true, except on a server whose handlers all run inline.
	canWait bool
	// proto holds the payload of a version-1 PROTOCHECK answer: 0x01 and
	// the server's nonce.
	proto [1 + codec.NonceLen]byte
	timed timedState // timeout.go
	std   *stdConn   // the std connection owning this exchange, if any

	// Reactor only: the request in flight and its result.
	rc    *rconn
	cur   codec.Frame
	res   result
	runFn func() // x.run, bound once
}

func (s *Server) newExchange() *exchange {
	x := &exchange{canWait: !s.inlineHandlers}
	if s.mac != nil {
		x.mac = s.mac.Clone()
	}
	x.runFn = x.run
	return x
}

// getExchange takes an exchange from the server's pool (whose New is
// newExchange).
func (s *Server) getExchange() *exchange { return s.exchanges.Get().(*exchange) }

// putExchange returns x to the pool.
func (s *Server) putExchange(x *exchange) {
	x.req = Request{}
	x.info = ConnInfo{}
	x.rc = nil
	x.cur = codec.Frame{}
	x.res = result{}
	x.canWait = !s.inlineHandlers
	s.exchanges.Put(x)
}

// result is what dispatch decided to answer.
type result struct {
	status  codec.Status
	payload []byte
	// answered is set when a handler's timeout already answered for it:
	// the caller must do nothing more with the request.
	answered bool
	// closes is set when the library's own refusal ends the connection
	// after this answer (402, 497, 498, 501, 502). A handler's status
	// never closes a connection.
	closes bool
	// abandoned is set when a timed-out handler may still be using the
	// request's bytes: the caller must not reuse the buffer holding them.
	abandoned bool
	// asV0 frames the answer as version 0 (with a version-0 MAC when
	// keyed) on a session that is version 1 by now: the answer to the
	// PROTOCHECK that negotiated it.
	asV0 bool
}

// dispatch answers one frame: it verifies the frame's MAC (version 0: the
// payload's; version 1: the tag under the session key) and, on version 1,
// the sequence rule; answers PROTOCHECK (negotiating the version on a
// session's first frame), an empty request (401), an unknown one (400)
// and a payload over the handler's own limit (402); takes a slot of the
// handler's MaxConcurrent (waiting at most the queue timeout when
// x.canWait, else answering busy at once); runs the handler, under its
// timeout when it has one; and fits the handler's status to the session's
// version (statusmap.go).
//
// It runs on whichever goroutine the engine runs this connection's frame
// on, one frame at a time per connection. The returned payload may alias
// f.Payload.
func (s *session) dispatch(x *exchange, f codec.Frame) result {
	srv := s.srv
	if r, ok := s.verify(x, f); !ok {
		return r
	}
	if string(f.Request) == codec.ProtoCheck {
		return s.protoCheck(x, f)
	}
	if r, ok := s.begin(f); !ok {
		return r
	}
	if len(f.Request) == 0 {
		return result{status: codec.StatusEmptyRequest, payload: reasonEmpty}
	}
	e, ok := srv.handlers.lookup(f.Request)
	if !ok {
		return result{status: codec.StatusNoHandler, payload: reasonNoHandler}
	}
	if uint32(len(f.Payload)) > e.maxPayload {
		// The transport refuses this from the header; this catches a
		// frame parsed under another limit.
		le := &codec.LimitError{Declared: uint64(len(f.Payload)), Limit: uint64(e.maxPayload)}
		s.logRefusal(f, codec.StatusPayloadTooLarge, "petrel: frame refused")
		return s.refuse(codec.StatusPayloadTooLarge, []byte(le.Reason()))
	}
	to := e.timeout()
	if !e.acquire(s.handlerContext(x), x.canWait, srv.cfg.QueueTimeout) {
		return s.busyResult()
	}
	if to > 0 {
		if x.canWait && srv.stats.abandoned.Load() >= srv.disp.maxAbandoned {
			e.release()
			return s.busyResult()
		}
		// On a worker or std's goroutine the timer answers for an
		// overrunning handler; on the event loop it only ends the
		// context, and one that returns late is answered timed out.
		return s.finish(e, s.dispatchTimeout(x, e, f, to))
	}
	x.req = Request{Name: e.name, Seq: f.Seq, Payload: f.Payload, Conn: s.conn(x)}
	st, p := s.call(s.handlerContext(x), e, &x.req)
	x.req = Request{}
	return s.finish(e, result{status: st, payload: p})
}

// finish checks a handler's answer: a payload the length field cannot hold
// is answered 501 (and closed) here, so that the status the engines act on
// and count is the one sent; a status the session cannot receive is
// replaced (mapStatus).
func (s *session) finish(e *entry, r result) result {
	if r.answered {
		return r // the handler's timeout answered for it
	}
	if uint64(len(r.payload)) > maxAnswerPayload {
		s.srv.log.Error("petrel: answer payload over 4 GiB", "request", e.name, "conn", s.id,
			"status", int(codec.StatusInternalError), "len", uint64(len(r.payload)))
		return result{status: codec.StatusInternalError, closes: true, abandoned: r.abandoned}
	}
	return s.mapStatus(e, r)
}

// call runs a handler, turning errors and panics into 500, and releases the
// handler's MaxConcurrent slot (taken by dispatch) when the handler
// returns. A handler's error is answered with the payload it returned
// beside the error when that is not nil, else with "handler error"; the
// error text is logged (rate-limited), never sent. A panic is logged with
// its stack at most once per handler per log interval and answered 500
// "handler error".
func (s *session) call(ctx context.Context, e *entry, req *Request) (st codec.Status, p []byte) {
	defer e.release()
	defer func() {
		if v := recover(); v != nil {
			s.logPanic(e, v)
			st, p = codec.StatusHandlerError, reasonHandlerError
		}
	}()
	code, payload, err := e.h(ctx, req)
	if err != nil {
		if s.srv.logOn(slog.LevelError) {
			s.srv.logRated(e.errorKey, slog.LevelError, "petrel: handler error", "request", e.name, "conn", s.id, "err", err)
		}
		if payload == nil {
			payload = reasonHandlerError
		}
		return codec.StatusHandlerError, payload
	}
	if code == 0 {
		code = uint16(codec.StatusOK)
	}
	return codec.Status(code), payload
}

// logPanic logs a handler's panic: with its stack for the first of the
// interval, then a line without, then nothing until the interval ends.
func (s *session) logPanic(e *entry, v any) {
	srv := s.srv
	if !srv.logOn(slog.LevelError) {
		return
	}
	ok, first, suppressed := srv.disp.rate.take(e.panicKey, time.Now())
	if !ok {
		return
	}
	args := make([]any, 0, 10)
	args = append(args, "request", e.name, "conn", s.id, "panic", fmt.Sprint(v))
	if first {
		args = append(args, "stack", string(debug.Stack()))
	}
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	srv.log.Error("petrel: handler panicked", args...)
}

// maxAnswerPayload is the longest payload a frame's length field holds.
const maxAnswerPayload = 0xFFFFFFFF

// dispatchTimeout runs the handler under its timeout to (timeout.go): no
// goroutine of its own; the timer answers for a handler that overruns,
// which is then abandoned (it keeps its Request and the frame's bytes,
// counted in Stats.Abandoned until it returns).
func (s *session) dispatchTimeout(x *exchange, e *entry, f codec.Frame, to time.Duration) result {
	x.req = Request{Name: e.name, Seq: f.Seq, Payload: f.Payload, Conn: s.conn(x)}
	r, abandoned := s.runTimed(x, e, &x.req, to)
	if !abandoned {
		x.req = Request{}
	}
	return r
}

// encode frames out for the session: version 0 with its MAC (also when
// asV0), version 1 with the tag under the session key in direction 'S'.
func (s *session) encode(x *exchange, out codec.Frame, asV0 bool) ([][]byte, error) {
	if s.ver == codec.ProtocolV0 || asV0 {
		return x.bufs.Frame(out, x.mac)
	}
	return x.bufs.FrameV1(out, s.fmac, codec.ServerToClient)
}

// frame returns the answer to f as writev slices held in x.bufs, framed
// for the session's version (the PROTOCHECK answer that negotiated version
// 1 as version 0). The slices alias f.Request and r.payload. Same
// goroutine as the dispatch that returned r, before the next frame's opts.
func (s *session) frame(x *exchange, f codec.Frame, r result) [][]byte {
	v, err := s.encode(x, codec.Frame{Status: r.status, Seq: f.Seq, Request: f.Request, Payload: r.payload}, r.asV0)
	if err != nil {
		// Only a payload over 4 GiB can fail here (finish answers that
		// 501 already): answer 501 instead.
		s.srv.log.Error("petrel: cannot frame answer", "request", string(f.Request), "err", err)
		v, _ = s.encode(x, codec.Frame{Status: codec.StatusInternalError, Seq: f.Seq, Request: f.Request}, r.asV0)
	}
	return v
}

// refusal logs (rate-limited) and counts a frame the transport refused
// from its header (402 for a *codec.LimitError, else the error's status)
// and returns its answer: the header's seq, the request text echoed (the
// transport waits for it; buffered must hold the header and, to be
// echoed, the request text), the reason as payload, framed and signed for
// the session's version. The connection is to be closed after it.
// buffered is what the connection had buffered, all counted as read.
func (s *session) refusal(x *exchange, buffered []byte, err error) [][]byte {
	h, herr := codec.ParseHeader(buffered)
	var req []byte
	if end := codec.HeaderLen + int(h.RequestLen); len(buffered) >= codec.HeaderLen && len(buffered) >= end {
		req = buffered[codec.HeaderLen:end:end]
	}
	st, reason := s.refusalOf(h, herr == nil, err)
	s.sess = sessClosed
	v, _ := s.encode(x, codec.Frame{Status: st, Seq: h.Seq, Request: req, Payload: reason}, false)
	s.srv.stats.answered(s.id, st, len(buffered), vecLen(v))
	return v
}

// refusalOf is the status and reason that refuse a frame from its header
// h (parsed: h holds the whole header): the sequence rule first, since a
// replayed or reordered header is refused as such whatever else is wrong
// with it (its 402 would be a signed answer to a frame out of sequence),
// else err's status and reason, logged.
func (s *session) refusalOf(h codec.Header, parsed bool, err error) (codec.Status, []byte) {
	if parsed {
		if st, reason, broken := s.seqBroken(h.Seq); broken {
			return st, reason
		}
	}
	st := codec.StatusOf(err)
	if s.srv.logOn(st.Level()) {
		s.srv.logRated("refusal", st.Level(), "petrel: frame refused", "conn", s.id,
			"remote", s.remote, "status", int(st), "err", err)
	}
	if le := (*codec.LimitError)(nil); errors.As(err, &le) {
		return st, []byte(le.Reason())
	}
	return st, []byte(err.Error())
}

func vecLen(v [][]byte) int {
	n := 0
	for _, b := range v {
		n += len(b)
	}
	return n
}
