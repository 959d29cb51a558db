package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
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

	// version is the negotiated protocol version, set by the protocol
	// check before the client is handed out and never changed after.
	version uint8

	// turn is a one-slot semaphore: the goroutine that put a value in it
	// owns the connection's I/O and every field down to mu.
	turn chan struct{}
	seq  uint32 // the last request's sequence number
	// mac signs with the classic 44-byte MAC: on a keyed version-0
	// session, and for the PROTOCHECK exchange of a keyed version-1 one.
	mac *codec.MAC
	// fmac signs with the 32-byte session tag, on a keyed version-1
	// session once the PROTOCHECK exchange is over. mac and fmac are never
	// both set.
	fmac        *codec.FrameMAC
	deadlineSet bool   // the conn has a deadline that may need clearing
	wbuf        []byte // frame assembly; header and request at least
	macBuf      [codec.MACLen]byte
	rtext       [codec.MaxRequestLen]byte // the answer's request text, for its tag
	vecArr      [3][]byte                 // backing array of vec
	vec         net.Buffers               // vectored write, over vecArr
	rbuf        []byte                    // read buffer, len == cap == readBufSize
	rpos, rend  int                       // unread bytes are rbuf[rpos:rend]

	mu     sync.Mutex // guards err and closed
	err    error      // why the client is unusable; nil while open
	closed bool       // Close has been called
}

// Dial connects to the server at cfg.Addr, over TLS when cfg.TLS is set,
// and runs the protocol check, which settles the protocol version (see
// [Config.Protocol]; under [ProtocolAuto], a server speaking only version 0
// costs a second connection). ctx, and cfg.DialTimeout when set, bound the
// whole of it; ctx does not affect the client once Dial has returned.
//
// A server that does not know PROTOCHECK gives an error matching
// [ErrProtocolCheck] and wrapping a *[codec.StatusError] with status 400;
// one with which no version can be agreed gives a *[VersionError] (status
// 497; [ErrDowngrade] when a keyed client refused version 0). A server
// configured with another HMAC key answers the check with status 502,
// which gives an error matching [codec.ErrBadMAC].
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	rc, err := cfg.resolve(true)
	if err != nil {
		return nil, err
	}
	return dial(ctx, rc)
}

// dial is [Dial] with the configuration resolved.
func dial(ctx context.Context, rc config) (*Client, error) {
	if rc.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rc.DialTimeout)
		defer cancel()
	}
	c, err := connect(ctx, rc, rc.Protocol.offer())
	var ve *VersionError
	if errors.As(err, &ve) && ve.fallback {
		c, err = connect(ctx, rc, codec.ProtocolV0)
	}
	if err != nil {
		return nil, fmt.Errorf("petrel: dial %s: %w", rc.Addr, err)
	}
	return c, nil
}

// connect dials one connection and runs the protocol check on it, offering
// version offer.
func connect(ctx context.Context, rc config, offer uint8) (*Client, error) {
	var conn net.Conn
	var err error
	nd := &net.Dialer{}
	if rc.TLS != nil {
		td := &tls.Dialer{NetDialer: nd, Config: rc.TLS}
		conn, err = td.DialContext(ctx, rc.network, rc.address)
	} else {
		conn, err = nd.DialContext(ctx, rc.network, rc.address)
	}
	if err != nil {
		return nil, err
	}
	return start(ctx, conn, rc, offer)
}

// New makes a client of a connection the caller established (a TLS
// connection, an SSH channel, one end of a net.Pipe) and runs the protocol
// check over it. cfg.Addr and cfg.TLS are ignored; ctx and cfg.DialTimeout
// bound the check. On error conn is closed; on success the client owns it.
// Having no way to dial again, New does not fall back to version 0 under
// [ProtocolAuto]: a server that speaks only version 0 gives a
// *[VersionError]; set [Protocol0] for such a server.
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
	return start(ctx, conn, rc, rc.Protocol.offer())
}

// start builds the client and runs the protocol check, offering version
// offer; it closes conn on error.
func start(ctx context.Context, conn net.Conn, rc config, offer uint8) (*Client, error) {
	c := &Client{
		cfg:       rc,
		conn:      conn,
		cancelled: make(chan struct{}, 1),
		turn:      make(chan struct{}, 1),
		wbuf:      make([]byte, 0, 512),
		rbuf:      make([]byte, readBufSize),
	}
	c.onCancel = c.cancel
	c.seq = rc.firstSeq - 1
	if rc.HMACKey != nil {
		c.mac = codec.NewMAC(rc.HMACKey)
	}
	// The exchange itself is never refused for its size: a 17-byte
	// version-1 PROTOCHECK goes through a smaller MaxPayload.
	limit := rc.MaxPayload
	c.cfg.MaxPayload = max(limit, 1+codec.NonceLen)
	err := c.protoCheck(ctx, offer)
	c.cfg.MaxPayload = limit
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// protoCheck sends PROTOCHECK offering version offer (with a fresh nonce
// for version 1) and checks the answer. On a keyed version-1 session it
// derives the session key from both nonces and switches from the classic
// MAC, which signs the exchange itself, to the session tag.
func (c *Client) protoCheck(ctx context.Context, offer uint8) error {
	var nonce [codec.NonceLen]byte
	if offer == codec.ProtocolV1 {
		rand.Read(nonce[:])
	}
	var pbuf, dst [1 + codec.NonceLen]byte
	resp, err := c.CallInto(ctx, codec.ProtoCheck, codec.AppendProtoCheck(pbuf[:0], offer, nonce[:]), dst[:0])
	var se *codec.StatusError
	switch {
	case errors.Is(err, codec.ErrBadMAC):
		return err // whatever the status says, it is not the server's word
	case errors.As(err, &se) && se.Status == codec.StatusNoHandler:
		se.Reason = "server has no PROTOCHECK handler (not a Petrel server?)"
		return fmt.Errorf("%w: %w", ErrProtocolCheck, se)
	case errors.As(err, &se) && se.Status == codec.StatusVersionMismatch && len(resp.Payload) == 1:
		ve := &VersionError{Offered: offer, Server: resp.Payload[0], Answer: se}
		se.Reason = fmt.Sprintf("server speaks protocol version %d, client offered %d", ve.Server, offer)
		if offer == codec.ProtocolV1 && ve.Server == codec.ProtocolV0 && c.cfg.Protocol == ProtocolAuto {
			ve.Downgrade = c.cfg.HMACKey != nil && !c.cfg.AllowV0
			ve.fallback = !ve.Downgrade
		}
		return ve
	case errors.As(err, &se) && se.Status == codec.StatusVersionMismatch:
		se.Reason = fmt.Sprintf("protocol version mismatch (answer payload %q)", resp.Payload)
		return fmt.Errorf("%w: %w", ErrProtocolCheck, se)
	case err != nil:
		return err
	}
	v, serverNonce, err := codec.ParseProtoCheck(resp.Payload)
	if err != nil || v != offer || resp.Status != codec.StatusOK {
		return fmt.Errorf("%w: server answered %d with payload %q to an offer of version %d", ErrProtocolCheck, resp.Status, resp.Payload, offer)
	}
	c.version = v
	if v == codec.ProtocolV1 && c.mac != nil {
		k := codec.SessionKey(c.cfg.HMACKey, nonce[:], serverNonce)
		c.fmac, c.mac = codec.NewFrameMAC(k[:]), nil
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
// as text). Statuses below 400 are not errors, 2xx or not. Two of them
// come only on version-1 sessions, and leave the connection open: 503
// ([codec.StatusBusy]: no worker took the request in time, it did not run,
// retrying is safe) and 504 ([codec.StatusHandlerTimeout]: the handler
// overran its timeout and may have run). A version-0 session gets 500 with
// the reason "server busy" or "handler timeout" instead.
//
// On a version-1 session the call fails with [ErrSeqExhausted], sending
// nothing, once the session's sequence numbers are used up.
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
	if c.version == codec.ProtocolV1 && c.seq == math.MaxUint32 {
		return Response{}, "", c.fail(fmt.Errorf("%w (call %q after seq %d): dial again", ErrSeqExhausted, req, c.seq))
	}
	c.seq++
	seq := c.seq
	if err := c.send(req, payload, seq); err != nil {
		if resp, ok, rerr := c.refusalAfter(err, req, dst, fresh, seq); ok {
			return resp, "", rerr
		}
		return Response{}, "sending request", err
	}
	return c.readAnswer(req, dst, fresh, seq)
}

// refusalAfter looks, after sending failed with err, for the server's
// refusal of the request: a server that refuses a frame from its header
// (402 payload too large, say) answers at once and closes, so a long
// payload's write fails with a broken pipe or a reset while the answer
// already waits in the receive buffer. It reports whether it read one;
// the client has then failed with the refusal.
func (c *Client) refusalAfter(err error, req string, dst []byte, fresh bool, seq uint32) (Response, bool, error) {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
		return Response{}, false, nil
	}
	// The peer is gone or going: what it sent is buffered, or nothing is.
	if c.conn.SetReadDeadline(time.Now().Add(refusalWait)) != nil {
		return Response{}, false, nil
	}
	resp, op, rerr := c.readAnswer(req, dst, fresh, seq)
	if op != "" || !resp.Status.ClosesConn() {
		return Response{}, false, nil
	}
	return resp, true, rerr
}

// refusalWait bounds the look for a refusal after a failed write.
const refusalWait = time.Second

// readAnswer reads the answer to the request sent with seq.
func (c *Client) readAnswer(req string, dst []byte, fresh bool, seq uint32) (resp Response, op string, err error) {
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
	echoed := string(text) == req
	if echoed {
		resp.Request = req
	} else {
		resp.Request = string(text)
	}
	if c.fmac != nil { // the tag covers it; the read buffer may move on
		copy(c.rtext[:], text)
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
	if n := c.macLen(); n > 0 {
		if err := c.fill(n); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return resp, "reading answer", err
		}
		mac := c.rbuf[c.rpos : c.rpos+n]
		if c.mac != nil {
			macErr = c.mac.Verify(dst, mac)
		} else {
			f := codec.Frame{Status: h.Status, Seq: h.Seq, Request: c.rtext[:h.RequestLen], Payload: dst, MAC: mac}
			macErr = c.fmac.Verify(codec.ServerToClient, f)
		}
		c.rpos += n
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
	case !echoed && c.version == codec.ProtocolV1:
		return resp, "", c.fail(fmt.Errorf("petrel: call %q: %w: answer for request %q", req, ErrBadAnswer, resp.Request))
	}
	return resp, "", se
}

// macLen returns the bytes of MAC that follow each answer's payload.
func (c *Client) macLen() int {
	switch {
	case c.mac != nil:
		return codec.MACLen
	case c.fmac != nil:
		return codec.TagLen
	}
	return 0
}

// send frames and writes one request.
func (c *Client) send(req string, payload []byte, seq uint32) error {
	var hdr [codec.HeaderLen]byte
	if err := codec.PutHeader(hdr[:], codec.StatusRequest, seq, len(req), len(payload)); err != nil {
		return err // unreachable: checkCall validated both lengths
	}
	w := append(c.wbuf[:0], hdr[:]...)
	w = append(w, req...)
	// The frame as a version-1 tag sees it: the request text is the copy
	// in w, so that no string is converted.
	f := codec.Frame{Seq: seq, Request: w[codec.HeaderLen:], Payload: payload}
	if len(payload) <= copyLimit {
		w = append(w, payload...)
		switch {
		case c.mac != nil:
			w = c.mac.AppendSign(w, payload)
		case c.fmac != nil:
			w = c.fmac.AppendSign(w, codec.ClientToServer, f)
		}
		c.wbuf = w
		_, err := c.conn.Write(w)
		return err
	}
	c.wbuf = w
	// WriteTo consumes the slice it is called on: rebuild it from the
	// fixed array each time, and drop the caller's payload afterwards.
	c.vec = append(c.vecArr[:0], w, payload)
	switch {
	case c.mac != nil:
		c.vec = append(c.vec, c.mac.AppendSign(c.macBuf[:0], payload))
	case c.fmac != nil:
		c.vec = append(c.vec, c.fmac.AppendSign(c.macBuf[:0], codec.ClientToServer, f))
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
// on when dialing: 0 or 1. It may be called from any goroutine.
func (c *Client) Version() uint8 { return c.version }

// RemoteAddr returns the server's address. It may be called from any
// goroutine.
func (c *Client) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }
