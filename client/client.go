package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// Buffer sizes. A frame up to copyLimit bytes is assembled in the write
// buffer and sent with one Write; a larger one goes out as a vectored write
// (header and request, payload, MAC) so that its payload is never copied.
// Answers are read through a readBufSize buffer; the part of a payload that
// did not arrive with the first read goes straight into its destination.
const (
	copyLimit   = 32 << 10
	readBufSize = 32 << 10
)

// Response is a server's answer.
type Response struct {
	// Status is the answer's status: 200 for success, any code the handler
	// chose, or one of the library's codes.
	Status codec.Status
	// Request is the request text the answer echoes.
	Request string
	// Seq is the answer's sequence number, which echoes its request's.
	Seq uint32
	// Payload is the answer's payload: freshly allocated by [Client.Call],
	// and the caller's buffer by [Client.CallInto].
	Payload []byte
}

// Client is one connection to a Petrel server. Its methods are safe for
// concurrent use: calls take turns on the connection, in no guaranteed
// order, each waiting for its turn no longer than its context allows.
type Client struct {
	cfg  config
	conn net.Conn
	// onCancel is c.cancel as a func value, made once so that
	// context.AfterFunc does not allocate a new one per call.
	onCancel func()
	// cancelled receives a value when onCancel has finished (capacity 1).
	cancelled chan struct{}

	// turn is a one-slot semaphore: the goroutine that put a value in it
	// owns the connection's I/O and every field down to mu.
	turn        chan struct{}
	seq         uint32
	mac         *codec.MAC // nil without an HMAC key
	deadlineSet bool       // the conn has a deadline that may need clearing
	wbuf        []byte     // frame assembly; header and request at least
	macBuf      [codec.MACLen]byte
	vecArr      [3][]byte   // backing array of vec
	vec         net.Buffers // vectored write, over vecArr
	rbuf        []byte      // read buffer, len == cap == readBufSize
	rpos, rend  int         // unread bytes are rbuf[rpos:rend]

	mu     sync.Mutex // guards err and closed
	err    error      // why the client is unusable; nil while open
	closed bool       // Close has been called
}

// Dial connects to the server at cfg.Addr, over TLS when cfg.TLS is set,
// and runs the protocol check. ctx, and cfg.DialTimeout when set, bound the
// whole of it; ctx does not affect the client once Dial has returned.
//
// A server that does not know PROTOCHECK or speaks another protocol version
// gives an error matching [ErrProtocolCheck] and wrapping a
// *[codec.StatusError] (status 400 or 497). A server configured with
// another HMAC key answers the check with status 502, which gives an error
// matching [codec.ErrBadMAC].
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	rc, err := cfg.resolve(true)
	if err != nil {
		return nil, err
	}
	return dial(ctx, rc)
}

// dial is [Dial] with the configuration resolved.
func dial(ctx context.Context, rc config) (*Client, error) {
	var err error
	if rc.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rc.DialTimeout)
		defer cancel()
	}
	var conn net.Conn
	nd := &net.Dialer{}
	if rc.TLS != nil {
		td := &tls.Dialer{NetDialer: nd, Config: rc.TLS}
		conn, err = td.DialContext(ctx, rc.network, rc.address)
	} else {
		conn, err = nd.DialContext(ctx, rc.network, rc.address)
	}
	if err != nil {
		return nil, fmt.Errorf("petrel: dial %s: %w", rc.Addr, err)
	}
	c, err := start(ctx, conn, rc)
	if err != nil {
		return nil, fmt.Errorf("petrel: dial %s: %w", rc.Addr, err)
	}
	return c, nil
}

// New makes a client of a connection the caller established (a TLS
// connection, an SSH channel, one end of a net.Pipe) and runs the protocol
// check over it. cfg.Addr and cfg.TLS are ignored; ctx and cfg.DialTimeout
// bound the check. On error conn is closed; on success the client owns it.
func New(ctx context.Context, conn net.Conn, cfg Config) (*Client, error) {
	rc, err := cfg.resolve(false)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if rc.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rc.DialTimeout)
		defer cancel()
	}
	return start(ctx, conn, rc)
}

// start builds the client and runs the protocol check; it closes conn on
// error.
func start(ctx context.Context, conn net.Conn, rc config) (*Client, error) {
	c := &Client{
		cfg:       rc,
		conn:      conn,
		cancelled: make(chan struct{}, 1),
		turn:      make(chan struct{}, 1),
		wbuf:      make([]byte, 0, 512),
		rbuf:      make([]byte, readBufSize),
	}
	c.onCancel = c.cancel
	if rc.HMACKey != nil {
		c.mac = codec.NewMAC(rc.HMACKey)
	}
	if err := c.protoCheck(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// protoCheck sends PROTOCHECK with our version and checks the answer.
func (c *Client) protoCheck(ctx context.Context) error {
	var dst [8]byte
	resp, err := c.CallInto(ctx, codec.ProtoCheck, []byte{codec.ProtocolVersion}, dst[:0])
	var se *codec.StatusError
	switch {
	case errors.As(err, &se) && se.Status == codec.StatusNoHandler:
		se.Reason = "server has no PROTOCHECK handler (not a Petrel server?)"
		return fmt.Errorf("%w: %w", ErrProtocolCheck, se)
	case errors.As(err, &se) && se.Status == codec.StatusVersionMismatch:
		if len(resp.Payload) == 1 {
			se.Reason = fmt.Sprintf("server speaks protocol version %d, client speaks %d",
				resp.Payload[0], codec.ProtocolVersion)
		}
		return fmt.Errorf("%w: %w", ErrProtocolCheck, se)
	case err != nil:
		return err
	case len(resp.Payload) != 1 || resp.Payload[0] != codec.ProtocolVersion:
		return fmt.Errorf("%w: server answered %d with payload %q", ErrProtocolCheck, resp.Status, resp.Payload)
	}
	return nil
}

// Call sends a request with payload and returns the answer, whose payload
// is freshly allocated. The request text must be at most 255 bytes and the
// payload within [Config.MaxPayload]; otherwise nothing is sent and the
// error is [codec.ErrRequestTooLong] or a *[codec.LimitError].
//
// ctx bounds the whole call, including the wait for the client's turn.
// Cancelled while waiting, the call returns ctx.Err() and the client stays
// usable; cancelled after the request went out, it returns an error
// wrapping ctx.Err() and closes the client, since the connection is then in
// an unknown state.
//
// An answer with status 400 or more is returned together with a
// *[codec.StatusError] carrying its status and reason (the answer's payload
// as text). Statuses below 400 are not errors, 2xx or not.
//
// Call may be called from any goroutine.
func (c *Client) Call(ctx context.Context, req string, payload []byte) (Response, error) {
	return c.call(ctx, req, payload, nil, true)
}

// Dispatch is [Client.Call] under the name the original Petrel client used.
func (c *Client) Dispatch(ctx context.Context, req string, payload []byte) (Response, error) {
	return c.call(ctx, req, payload, nil, true)
}

// CallInto is [Client.Call] reading the answer's payload into dst[:0],
// grown if its capacity is short. The returned Response.Payload aliases dst
// when dst was large enough. With a dst big enough for the answers and a
// context that cannot be cancelled (its Done returns nil), a call allocates
// nothing.
//
// CallInto may be called from any goroutine.
func (c *Client) CallInto(ctx context.Context, req string, payload, dst []byte) (Response, error) {
	return c.call(ctx, req, payload, dst, false)
}

// checkCall validates a call before anything is sent.
func checkCall(req string, payload []byte, limit uint32) error {
	if len(req) > codec.MaxRequestLen {
		return codec.ErrRequestTooLong
	}
	if uint64(len(payload)) > uint64(limit) {
		return &codec.LimitError{Declared: uint64(len(payload)), Limit: uint64(limit)}
	}
	return nil
}

func (c *Client) call(ctx context.Context, req string, payload, dst []byte, fresh bool) (Response, error) {
	if err := checkCall(req, payload, c.cfg.MaxPayload); err != nil {
		return Response{}, err
	}
	select {
	case c.turn <- struct{}{}:
	default:
		select {
		case c.turn <- struct{}{}:
		case <-ctx.Done():
			return Response{}, ctx.Err()
		}
	}
	defer func() { <-c.turn }()
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	if err := c.Err(); err != nil {
		return Response{}, err
	}

	deadline, fromCtx := ctx.Deadline()
	if t := c.cfg.CallTimeout; t > 0 {
		if d := time.Now().Add(t); !fromCtx || d.Before(deadline) {
			deadline, fromCtx = d, false
		}
	}
	if !deadline.IsZero() || c.deadlineSet {
		if err := c.conn.SetDeadline(deadline); err != nil {
			return Response{}, c.fail(fmt.Errorf("petrel: call %q: %w", req, err))
		}
		c.deadlineSet = !deadline.IsZero()
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.onCancel)
	}

	resp, op, err := c.roundTrip(req, payload, dst, fresh)

	if stop != nil && !stop() {
		// The context ended during the call: wait until onCancel has set
		// its deadline, so that it cannot spoil the next call's.
		<-c.cancelled
		c.deadlineSet = true
	}
	if err == nil {
		return resp, nil
	}
	if op == "" { // a protocol-level error, already final
		return resp, err
	}
	cause := err
	if errors.Is(err, os.ErrDeadlineExceeded) {
		switch {
		case ctx.Err() != nil:
			cause = ctx.Err()
		case fromCtx:
			cause = context.DeadlineExceeded
		default:
			cause = fmt.Errorf("call timeout %v exceeded: %w", c.cfg.CallTimeout, err)
		}
	} else if errors.Is(err, io.EOF) {
		cause = fmt.Errorf("server closed the connection: %w", err)
	}
	return resp, c.fail(fmt.Errorf("petrel: call %q: %s: %w", req, op, cause))
}

// cancel runs when a call's context ends mid-call: it makes the blocked
// read or write return at once.
func (c *Client) cancel() {
	c.conn.SetDeadline(time.Unix(1, 0))
	c.cancelled <- struct{}{}
}

// roundTrip writes the request and reads its answer. It runs with the turn
// held. An I/O error comes back raw with op naming the step ("sending
// request", "reading answer"); any other error has op == "" and has been
// dealt with (the client closed when needed).
func (c *Client) roundTrip(req string, payload, dst []byte, fresh bool) (resp Response, op string, err error) {
	c.seq++
	seq := c.seq
	if err := c.send(req, payload, seq); err != nil {
		return Response{}, "sending request", err
	}

	// Header and request text.
	if err := c.fill(codec.HeaderLen); err != nil {
		return Response{}, "reading answer", err
	}
	h, _ := codec.ParseHeader(c.rbuf[c.rpos:c.rend])
	resp.Status, resp.Seq = h.Status, h.Seq
	if h.PayloadLen > c.cfg.MaxPayload {
		le := &codec.LimitError{Declared: uint64(h.PayloadLen), Limit: uint64(c.cfg.MaxPayload)}
		return resp, "", c.fail(fmt.Errorf("petrel: call %q: answer: %w", req, le))
	}
	if err := c.fill(codec.HeaderLen + int(h.RequestLen)); err != nil {
		return resp, "reading answer", err
	}
	text := c.rbuf[c.rpos+codec.HeaderLen : c.rpos+codec.HeaderLen+int(h.RequestLen)]
	if string(text) == req {
		resp.Request = req
	} else {
		resp.Request = string(text)
	}
	c.rpos += codec.HeaderLen + int(h.RequestLen)

	// Payload: what was buffered, then the rest straight from the conn.
	n := int(h.PayloadLen)
	if fresh {
		dst = make([]byte, n)
	} else if cap(dst) < n {
		dst = make([]byte, n)
	} else {
		dst = dst[:n]
	}
	k := copy(dst, c.rbuf[c.rpos:c.rend])
	c.rpos += k
	if k < n {
		if _, err := io.ReadFull(c.conn, dst[k:]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return resp, "reading answer", err
		}
	}
	resp.Payload = dst

	var macErr error
	if c.mac != nil {
		if err := c.fill(codec.MACLen); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return resp, "reading answer", err
		}
		macErr = c.mac.Verify(dst, c.rbuf[c.rpos:c.rpos+codec.MACLen])
		c.rpos += codec.MACLen
	}

	var se error
	if h.Status >= 400 {
		se = &codec.StatusError{Status: h.Status, Request: resp.Request, Reason: string(dst)}
	}
	switch {
	case macErr != nil && se != nil:
		return resp, "", c.fail(fmt.Errorf("%w; answer MAC: %w", se, macErr))
	case macErr != nil:
		return resp, "", c.fail(fmt.Errorf("petrel: call %q: answer: %w", req, macErr))
	case h.Status.ClosesConn():
		return resp, "", c.fail(se)
	case h.Seq != seq:
		return resp, "", c.fail(fmt.Errorf("petrel: call %q: %w: sequence number %d, want %d", req, ErrBadAnswer, h.Seq, seq))
	}
	return resp, "", se
}

// send frames and writes one request.
func (c *Client) send(req string, payload []byte, seq uint32) error {
	var hdr [codec.HeaderLen]byte
	if err := codec.PutHeader(hdr[:], codec.StatusRequest, seq, len(req), len(payload)); err != nil {
		return err // unreachable: checkCall validated both lengths
	}
	w := append(c.wbuf[:0], hdr[:]...)
	w = append(w, req...)
	if len(payload) <= copyLimit {
		w = append(w, payload...)
		if c.mac != nil {
			w = c.mac.AppendSign(w, payload)
		}
		c.wbuf = w
		_, err := c.conn.Write(w)
		return err
	}
	c.wbuf = w
	// WriteTo consumes the slice it is called on: rebuild it from the
	// fixed array each time, and drop the caller's payload afterwards.
	c.vec = append(c.vecArr[:0], w, payload)
	if c.mac != nil {
		c.mac.AppendSign(c.macBuf[:0], payload)
		c.vec = append(c.vec, c.macBuf[:])
	}
	_, err := c.vec.WriteTo(c.conn)
	c.vecArr = [3][]byte{}
	return err
}

// fill makes sure at least min (<= readBufSize) unread bytes are buffered.
func (c *Client) fill(min int) error {
	if c.rend-c.rpos >= min {
		return nil
	}
	if c.rpos > 0 {
		c.rend = copy(c.rbuf, c.rbuf[c.rpos:c.rend])
		c.rpos = 0
	}
	n, err := io.ReadAtLeast(c.conn, c.rbuf[c.rend:], min-c.rend)
	c.rend += n
	if err == io.EOF && c.rend > 0 {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// fail marks the client unusable because of cause and closes the
// connection. It returns cause, or [ErrClosed] when Close came first (an
// I/O error is then only the echo of Close).
func (c *Client) fail(cause error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.err == nil {
		c.err = fmt.Errorf("%w: %w", ErrClosed, cause)
		c.conn.Close()
	}
	return cause
}

// Err returns nil while the client is usable. Once it is closed, Err
// returns an error matching [ErrClosed] which, when the connection broke
// rather than being closed by [Client.Close], also wraps the cause: the
// status error, network error or context error that ended it. Err may be
// called from any goroutine.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection. A call in progress fails with [ErrClosed].
// A second Close returns [net.ErrClosed]. Close may be called from any
// goroutine.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.closed = true
	if c.err != nil { // the connection broke and is closed already
		return nil
	}
	c.err = ErrClosed
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("petrel: close: %w", err)
	}
	return nil
}

// Version returns the protocol version the client and the server agreed
// on when dialing. It may be called from any goroutine.
func (c *Client) Version() uint8 { return codec.ProtocolVersion }

// RemoteAddr returns the server's address. It may be called from any
// goroutine.
func (c *Client) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }
