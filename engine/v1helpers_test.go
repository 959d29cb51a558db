package engine_test

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// v1client is a raw version-1 client: it negotiates with a version-1
// PROTOCHECK (signed with the version-0 MAC when keyed), then frames its
// requests with the 32-byte tag under the session key (when keyed) and
// checks the tag of every answer. Its seq follows the sequence rule: the
// PROTOCHECK's seq, then one more per request.
type v1client struct {
	*client
	key  []byte
	fm   *codec.FrameMAC // nil unkeyed
	raw  []byte          // the bytes of the last answer as received
	last []byte          // the bytes of the last request as sent
}

// dialV1Seq connects and negotiates version 1 with the PROTOCHECK at seq,
// without failing the test.
func dialV1Seq(t testing.TB, srv *engine.Server, key []byte, seq uint32) (*v1client, error) {
	c, err := dialErr(t, srv)
	if err != nil {
		return nil, err
	}
	v := &v1client{client: c, key: key}
	if key != nil {
		c.withMAC(key)
	}
	var nonce [codec.NonceLen]byte
	rand.Read(nonce[:])
	c.seq = seq - 1
	f, err := c.callErr(codec.ProtoCheck, codec.AppendProtoCheck(nil, codec.ProtocolV1, nonce[:]))
	if err != nil {
		return nil, err
	}
	if f.Status != codec.StatusOK {
		return nil, fmt.Errorf("PROTOCHECK v1: status %d payload %q", f.Status, f.Payload)
	}
	ver, snonce, err := codec.ParseProtoCheck(f.Payload)
	if err != nil || ver != codec.ProtocolV1 {
		return nil, fmt.Errorf("PROTOCHECK v1 answer %x: version %d, %v", f.Payload, ver, err)
	}
	if key != nil {
		k := codec.SessionKey(key, nonce[:], snonce)
		v.fm = codec.NewFrameMAC(k[:])
	}
	c.mac = nil // answers are checked with the session key from now on
	c.opts.Version = codec.ProtocolV1
	return v, nil
}

func dialV1(t testing.TB, srv *engine.Server, key []byte) *v1client {
	t.Helper()
	v, err := dialV1Seq(t, srv, key, 1)
	if err != nil {
		t.Fatalf("dial v1 %s: %v", srv.AddrString(), err)
	}
	return v
}

// frameBytes returns the wire bytes of request f, signed in direction 'C'
// under the session key when keyed.
func (v *v1client) frameBytes(f codec.Frame) []byte {
	b, err := codec.AppendFrameV1(nil, f, v.fm, codec.ClientToServer)
	if err != nil {
		panic(err)
	}
	return b
}

// next returns the next request frame, advancing seq.
func (v *v1client) next(req string, payload []byte) codec.Frame {
	v.seq++
	return codec.Frame{Seq: v.seq, Request: []byte(req), Payload: payload}
}

// sendV1 writes the next request.
func (v *v1client) sendV1(req string, payload []byte) (uint32, error) {
	f := v.next(req, payload)
	v.last = v.frameBytes(f)
	return f.Seq, v.writeRaw(v.last)
}

// recvV1 reads an answer and checks its tag; raw keeps its bytes.
func (v *v1client) recvV1() (codec.Frame, error) {
	f, err := v.recvErr()
	if err != nil {
		return f, err
	}
	if v.fm != nil {
		if err := v.fm.Verify(codec.ServerToClient, f); err != nil {
			return f, fmt.Errorf("answer to seq %d (status %d): %w", f.Seq, f.Status, err)
		}
	}
	raw, _ := codec.AppendFrameV1(nil, f, v.fm, codec.ServerToClient)
	v.raw = raw
	return f, nil
}

func (v *v1client) callV1Err(req string, payload []byte) (codec.Frame, error) {
	seq, err := v.sendV1(req, payload)
	if err != nil {
		return codec.Frame{}, err
	}
	f, err := v.recvV1()
	if err != nil {
		return f, err
	}
	if f.Seq != seq || string(f.Request) != req {
		return f, fmt.Errorf("answer to %q seq %d came as %q seq %d", req, seq, f.Request, f.Seq)
	}
	return f, nil
}

// expectV1 calls req and checks the answer's status and payload (want nil
// skips the payload check).
func (v *v1client) expectV1(req string, payload []byte, status codec.Status, want []byte) codec.Frame {
	v.t.Helper()
	f, err := v.callV1Err(req, payload)
	if err != nil {
		v.t.Fatal(err)
	}
	if f.Status != status {
		v.t.Fatalf("%q: status %d (payload %q), want %d", req, f.Status, f.Payload, status)
	}
	if want != nil && !bytes.Equal(f.Payload, want) {
		v.t.Fatalf("%q: payload %q, want %q", req, f.Payload, want)
	}
	return f
}

// expectRefused reads one answer, checks its status (and its tag, when
// keyed), and then that the server closes the connection.
func (v *v1client) expectRefused(status codec.Status) {
	v.t.Helper()
	f, err := v.recvV1()
	if err != nil {
		v.t.Fatalf("want a %d refusal: %v", status, err)
	}
	if f.Status != status {
		v.t.Fatalf("refusal: status %d (payload %q), want %d", f.Status, f.Payload, status)
	}
	v.expectClosed()
}

// readRaw reads exactly n bytes.
func (c *client) readRaw(n int) ([]byte, error) {
	b := make([]byte, n)
	c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	_, err := io.ReadFull(c.nc, b)
	return b, err
}
