package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/petrel-rpc/petrel/codec"
)

// caller is one synchronous client connection of the load generator. It is
// used by one goroutine at a time.
type caller interface {
	// call sends one request and returns the answer's payload; a non-200
	// answer or a protocol violation is an error.
	call(req string, payload []byte) ([]byte, error)
	// setDeadline bounds every later call: a server that hangs fails the
	// run instead of stalling it. The zero time removes the bound, for a
	// connection kept idle between slices.
	setDeadline(t time.Time)
	close() error
}

// dialConfig says how to reach the server under test.
type dialConfig struct {
	addr string      // "host:port" or "unix:///path"
	tls  *tls.Config // nil for plain connections
	hmac []byte      // Petrel HMAC key, nil for none
	// version is the Petrel protocol version the client negotiates:
	// codec.ProtocolV0 (classic) or codec.ProtocolV1.
	version uint8
	// local, when set, is the source address of each connection
	// (127.0.0.2, 127.0.0.3, …): every local address has its own
	// ephemeral ports, so many of them hold more connections to one
	// server than one address could.
	local []net.IP
	// next counts the connections dialled, to spread them over local.
	next *atomicCounter
}

// dial opens a connection, completing the TLS handshake when configured.
func (d dialConfig) dial(ctx context.Context) (net.Conn, error) {
	network, a := splitAddr(d.addr)
	var nd net.Dialer
	if len(d.local) > 0 && network == "tcp" {
		nd.LocalAddr = &net.TCPAddr{IP: d.local[d.next.inc()%uint64(len(d.local))]}
	}
	c, err := nd.DialContext(ctx, network, a)
	if err != nil {
		return nil, err
	}
	if d.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// dialer returns the function that opens one load connection for p.
func dialer(p Protocol) func(context.Context, dialConfig) (caller, error) {
	switch p {
	case ProtoNetRPC:
		return dialNetRPC
	case ProtoGRPC:
		return dialGRPC
	}
	return dialPetrel
}

// ErrNoV1 is the failure of a version-1 load client whose server answered
// its PROTOCHECK with 497: the server speaks protocol version 0 only.
var ErrNoV1 = errors.New("bench: server does not speak protocol version 1")

// petrelCaller is the load generator's minimal synchronous Petrel client,
// the same for every Petrel-protocol system so that they are compared on
// equal terms: one write per request (writev for large ones), frames parsed
// in place from a reused buffer, nothing allocated per call.
//
// It speaks version 0 or, when dialled with dialConfig.version 1, version 1
// (docs/PROTOCOL.md): a PROTOCHECK carrying a fresh client nonce, then, when
// keyed, a 32-byte tag over each whole frame under the session key, and
// seq strictly one more per request from the PROTOCHECK's.
type petrelCaller struct {
	conn    net.Conn
	opts    codec.Options
	mac     *codec.MAC      // version-0 MAC, nil without HMAC or after a version-1 PROTOCHECK
	fmac    *codec.FrameMAC // version-1 tag under the session key, nil without HMAC or in version 0
	seq     uint32
	scratch []byte // encoded requests
	rd      frameReader
}

func dialPetrel(ctx context.Context, d dialConfig) (caller, error) {
	c, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	p := &petrelCaller{conn: c, opts: codec.Options{MaxPayload: 64 << 20, MAC: d.hmac != nil}}
	if d.hmac != nil {
		p.mac = codec.NewMAC(d.hmac)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if d.version == codec.ProtocolV1 {
		err = p.negotiateV1(d.hmac)
		if err == nil {
			err = p.probeV1(ctx)
		}
	} else {
		var got []byte
		got, err = p.call(codec.ProtoCheck, protoVersion)
		if err == nil && (len(got) != 1 || got[0] != codec.ProtocolVersion) {
			err = fmt.Errorf("PROTOCHECK answered %x, want 00", got)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return p, nil
}

// negotiateV1 sends the version-1 PROTOCHECK (0x01 and a fresh nonce, under
// the version-0 MAC when keyed), reads the server's nonce from its answer
// and switches the connection to version 1: with key set, every later
// frame carries the 32-byte tag under the session key. A 497 answer gives
// an error wrapping ErrNoV1.
func (p *petrelCaller) negotiateV1(key []byte) error {
	var nonce [codec.NonceLen]byte
	rand.Read(nonce[:]) // never fails (crypto/rand)
	req := codec.AppendProtoCheck(nil, codec.ProtocolV1, nonce[:])
	got, err := p.call(codec.ProtoCheck, req)
	var se *codec.StatusError
	if errors.As(err, &se) && se.Status == codec.StatusVersionMismatch {
		return fmt.Errorf("%w (its PROTOCHECK answer: 497, highest version %x)", ErrNoV1, se.Reason)
	}
	if err != nil {
		return err
	}
	v, serverNonce, err := codec.ParseProtoCheck(got)
	if err == nil && v != codec.ProtocolV1 {
		err = fmt.Errorf("PROTOCHECK answered version %d, want 1", v)
	}
	if err != nil {
		return fmt.Errorf("PROTOCHECK answer %x: %w", got, err)
	}
	p.opts.Version = codec.ProtocolV1
	if key != nil {
		k := codec.SessionKey(key, nonce[:], serverNonce)
		p.fmac, p.mac = codec.NewFrameMAC(k[:]), nil
	}
	return nil
}

// v1ProbeTimeout bounds the first version-1 request of a connection.
const v1ProbeTimeout = 10 * time.Second

// probeV1 sends one echo right after the version-1 negotiation, within
// v1ProbeTimeout: a server that agreed to version 1 but reads the frames
// that follow as version 0 (waiting for a 44-byte MAC where a 32-byte tag
// came) fails here, clearly, instead of stalling a measurement.
func (p *petrelCaller) probeV1(ctx context.Context) error {
	dl := time.Now().Add(v1ProbeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	p.conn.SetDeadline(dl)
	probe := []byte("petrel-bench v1 probe")
	got, err := p.call(reqEcho, probe)
	if err == nil && string(got) != string(probe) {
		err = fmt.Errorf("answered %q", got)
	}
	if err != nil {
		return fmt.Errorf("bench: server agreed to protocol version 1 but its first version-1 request failed: %w", err)
	}
	return nil
}

func (p *petrelCaller) call(req string, payload []byte) ([]byte, error) {
	p.seq++
	f := codec.Frame{Seq: p.seq, Request: []byte(req), Payload: payload}
	var err error
	if p.opts.Version == codec.ProtocolV1 {
		err = writeFrameV1(p.conn, &p.scratch, f, p.fmac)
	} else {
		err = writeFrame(p.conn, &p.scratch, f, p.mac)
	}
	if err != nil {
		return nil, err
	}
	a, err := p.rd.next(p.conn, p.opts)
	if err != nil {
		return nil, err
	}
	switch {
	case p.fmac != nil:
		err = p.fmac.Verify(codec.ServerToClient, a)
	case p.mac != nil:
		err = p.mac.Verify(a.Payload, a.MAC)
	}
	if err != nil {
		return nil, fmt.Errorf("answer to %s seq %d: %w", req, p.seq, err)
	}
	switch {
	case a.Status != codec.StatusOK:
		return nil, &codec.StatusError{Status: a.Status, Request: req, Reason: string(a.Payload)}
	case a.Seq != p.seq:
		return nil, fmt.Errorf("answer carries seq %d, want %d", a.Seq, p.seq)
	case string(a.Request) != req:
		return nil, fmt.Errorf("answer carries request %q, want %q", a.Request, req)
	}
	return a.Payload, nil
}

// writeFrameV1 is writeFrame for a version-1 session: the request signed
// with m (the session key's tag, direction client to server) when m is
// non-nil.
func writeFrameV1(w net.Conn, scratch *[]byte, f codec.Frame, m *codec.FrameMAC) error {
	if codec.Len(f, false)+codec.TagLen <= bigFrame {
		b, err := codec.AppendFrameV1((*scratch)[:0], f, m, codec.ClientToServer)
		if err != nil {
			return err
		}
		*scratch = b
		_, err = w.Write(b)
		return err
	}
	var bufs codec.Buffers
	v, err := bufs.FrameV1(f, m, codec.ClientToServer)
	if err != nil {
		return err
	}
	nb := net.Buffers(v)
	_, err = nb.WriteTo(w)
	return err
}

func (p *petrelCaller) setDeadline(t time.Time) { p.conn.SetDeadline(t) }

func (p *petrelCaller) close() error { return p.conn.Close() }

// atomicCounter hands out 0, 1, 2, … to concurrent callers; a nil one
// always hands out 0.
type atomicCounter struct{ n atomic.Uint64 }

func (c *atomicCounter) inc() uint64 {
	if c == nil {
		return 0
	}
	return c.n.Add(1) - 1
}
