package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/petrel-rpc/petrel/codec"
)

// entry is one registered handler, already wrapped in the middleware.
type entry struct {
	name string
	h    Handler
}

// registry maps request names to handlers. Reads are lock-free (an atomic
// pointer to an immutable map); registrations copy the map under mu.
type registry struct {
	mu sync.Mutex                       // serialises writers
	m  atomic.Pointer[map[string]entry] // the current map, never mutated
	mw []Middleware
}

func newRegistry(mw []Middleware) *registry {
	r := &registry{mw: append([]Middleware(nil), mw...)}
	m := map[string]entry{}
	r.m.Store(&m)
	return r
}

func (r *registry) add(name string, h Handler) error {
	switch {
	case name == "" || len(name) > codec.MaxRequestLen:
		return fmt.Errorf("%w: %q (must be 1 to 255 bytes)", ErrBadName, name)
	case name == codec.ProtoCheck:
		return fmt.Errorf("%w: %q is built in", ErrBadName, name)
	case h == nil:
		return fmt.Errorf("%w: nil handler for %q", ErrBadName, name)
	}
	for i := len(r.mw) - 1; i >= 0; i-- {
		h = r.mw[i](h)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.m.Load()
	m := make(map[string]entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[name] = entry{name: name, h: h}
	r.m.Store(&m)
	return nil
}

func (r *registry) lookup(name []byte) (entry, bool) {
	e, ok := (*r.m.Load())[string(name)]
	return e, ok
}

// Static reasons sent with library statuses; sending them allocates nothing.
var (
	reasonNoHandler    = []byte("no handler for this request")
	reasonEmpty        = []byte("empty request text")
	reasonHandlerError = []byte("handler error")
	reasonTimeout      = []byte("handler timed out")
	reasonBadMAC       = []byte("HMAC verification failed")
	protoOK            = []byte{codec.ProtocolVersion}
)

// session is the per-connection state both engines share with dispatch.
// It is kept small: an idle reactor connection holds only this and gnet's
// own state.
type session struct {
	srv  *Server
	info ConnInfo
	ctx  connContext
}

func (s *session) init(srv *Server) {
	s.srv = srv
	s.info.ID = srv.nextID.Add(1)
}

// exchange is the scratch state of one request: the Request handed to the
// handler, the answer's header and MAC buffers, and a MAC with its own hash
// state. The std engine keeps one per connection; the reactor takes one
// from a pool per request, so idle connections do not hold one.
type exchange struct {
	req  Request
	bufs codec.Buffers
	mac  *codec.MAC // nil without HMAC
	// canWait is set by the transport when the goroutine running this
	// exchange may block (a worker, std's goroutine), false on an event
	// loop.
	canWait bool
	timed   timedState // timeout.go
	std     *stdConn   // the std connection owning this exchange, if any

	// Reactor only: the request in flight and its result.
	rc    *rconn
	cur   codec.Frame
	res   result
	runFn func() // x.run, bound once
}

func (s *Server) newExchange() *exchange {
	x := &exchange{}
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
	x.rc = nil
	x.cur = codec.Frame{}
	x.res = result{}
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
}

// dispatch answers one verified frame. It runs on whichever goroutine the
// engine runs handlers on. The returned payload may alias f.Payload.
func (s *session) dispatch(x *exchange, f codec.Frame) result {
	srv := s.srv
	if x.mac != nil {
		if err := x.mac.Verify(f.Payload, f.MAC); err != nil {
			return result{status: codec.StatusBadMAC, payload: reasonBadMAC, closes: true}
		}
	}
	if len(f.Request) == 0 {
		return result{status: codec.StatusEmptyRequest, payload: reasonEmpty}
	}
	if string(f.Request) == codec.ProtoCheck {
		if len(f.Payload) == 1 && f.Payload[0] == codec.ProtocolVersion {
			return result{status: codec.StatusOK, payload: protoOK}
		}
		return result{status: codec.StatusVersionMismatch, payload: protoOK, closes: true}
	}
	e, ok := srv.handlers.lookup(f.Request)
	if !ok {
		return result{status: codec.StatusNoHandler, payload: reasonNoHandler}
	}
	if srv.cfg.HandlerTimeout > 0 {
		return s.dispatchTimeout(x, e, f)
	}
	x.req = Request{Name: e.name, Seq: f.Seq, Payload: f.Payload, Conn: &s.info}
	st, p := s.call(&s.ctx, e, &x.req)
	x.req = Request{}
	return result{status: st, payload: p}
}

// call runs a handler, turning errors and panics into 500.
func (s *session) call(ctx context.Context, e entry, req *Request) (st codec.Status, p []byte) {
	defer func() {
		if v := recover(); v != nil {
			s.srv.log.Error("petrel: handler panicked", "request", e.name, "conn", s.info.ID,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			st, p = codec.StatusHandlerError, reasonHandlerError
		}
	}()
	code, payload, err := e.h(ctx, req)
	if err != nil {
		if s.srv.log.Enabled(context.Background(), slog.LevelError) {
			s.srv.log.Error("petrel: handler error", "request", e.name, "conn", s.info.ID, "err", err)
		}
		return codec.StatusHandlerError, reasonHandlerError
	}
	if uint64(len(payload)) > maxAnswerPayload {
		// The length field cannot hold it: answer 501 (and close) here,
		// so that the status the engines act on and count is the one
		// sent.
		s.srv.log.Error("petrel: answer payload over 4 GiB", "request", e.name, "conn", s.info.ID,
			"status", int(codec.StatusInternalError), "len", uint64(len(payload)))
		return codec.StatusInternalError, nil
	}
	if code == 0 {
		code = uint16(codec.StatusOK)
	}
	return codec.Status(code), payload
}

// maxAnswerPayload is the longest payload a frame's length field holds.
const maxAnswerPayload = 0xFFFFFFFF

// dispatchTimeout runs the handler under the server's handler timeout
// (timeout.go): no goroutine of its own; the timer answers for a handler
// that overruns.
func (s *session) dispatchTimeout(x *exchange, e entry, f codec.Frame) result {
	x.req = Request{Name: e.name, Seq: f.Seq, Payload: f.Payload, Conn: &s.info}
	r, abandoned := s.runTimed(x, e, &x.req, s.srv.cfg.HandlerTimeout)
	if !abandoned {
		x.req = Request{}
	}
	return r
}

// frame returns the answer to f as writev slices held in x.bufs. The
// slices alias f.Request and r.payload.
func (s *session) frame(x *exchange, f codec.Frame, r result) [][]byte {
	v, err := x.bufs.Frame(codec.Frame{Status: r.status, Seq: f.Seq, Request: f.Request, Payload: r.payload}, x.mac)
	if err != nil {
		// Only a payload over 4 GiB can fail here: answer 501 instead.
		s.srv.log.Error("petrel: cannot frame answer", "request", string(f.Request), "err", err)
		v, _ = x.bufs.Frame(codec.Frame{Status: codec.StatusInternalError, Seq: f.Seq, Request: f.Request}, x.mac)
	}
	return v
}

// refusal logs and counts a frame refused from its header (402) and
// returns its answer, built from the header's seq and an empty request
// text. buffered is what the connection had buffered, all counted as read.
func (s *session) refusal(x *exchange, buffered []byte, err error) [][]byte {
	st := codec.StatusOf(err)
	s.srv.log.Log(context.Background(), st.Level(), "petrel: frame refused", "conn", s.info.ID,
		"remote", s.info.RemoteAddr, "status", int(st), "err", err)
	h, _ := codec.ParseHeader(buffered)
	reason := []byte(err.Error())
	if le, ok := err.(*codec.LimitError); ok {
		reason = []byte(le.Reason())
	}
	v, _ := x.bufs.Frame(codec.Frame{Status: st, Seq: h.Seq, Payload: reason}, x.mac)
	s.srv.stats.answered(s.info.ID, st, len(buffered), vecLen(v))
	return v
}

func vecLen(v [][]byte) int {
	n := 0
	for _, b := range v {
		n += len(b)
	}
	return n
}
