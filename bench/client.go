package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
}

// dial opens a connection, completing the TLS handshake when configured.
func (d dialConfig) dial(ctx context.Context) (net.Conn, error) {
	network, a := splitAddr(d.addr)
	var nd net.Dialer
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

// petrelCaller is the load generator's minimal synchronous Petrel client,
// the same for every Petrel-protocol system so that they are compared on
// equal terms: one write per request (writev for large ones), frames parsed
// in place from a reused buffer, nothing allocated per call.
type petrelCaller struct {
	conn    net.Conn
	opts    codec.Options
	mac     *codec.MAC // nil without HMAC
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
	got, err := p.call(codec.ProtoCheck, protoVersion)
	if err == nil && (len(got) != 1 || got[0] != codec.ProtocolVersion) {
		err = fmt.Errorf("PROTOCHECK answered %x, want 00", got)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return p, nil
}

func (p *petrelCaller) call(req string, payload []byte) ([]byte, error) {
	p.seq++
	f := codec.Frame{Seq: p.seq, Request: []byte(req), Payload: payload}
	if err := writeFrame(p.conn, &p.scratch, f, p.mac); err != nil {
		return nil, err
	}
	a, err := p.rd.next(p.conn, p.opts)
	if err != nil {
		return nil, err
	}
	if p.mac != nil {
		if err := p.mac.Verify(a.Payload, a.MAC); err != nil {
			return nil, fmt.Errorf("answer to %s seq %d: %w", req, p.seq, err)
		}
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

func (p *petrelCaller) setDeadline(t time.Time) { p.conn.SetDeadline(t) }

func (p *petrelCaller) close() error { return p.conn.Close() }
