//go:build !race

package engine

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// Dispatch and framing of a keyed version-1 request (tag checked, seq
// rule, answer tagged) allocate nothing, independently of the transports;
// TestServerAllocsPerRequestV1 checks the whole path over sockets.
func TestDispatchAllocsV1Keyed(t *testing.T) {
	key := []byte("k")
	s := newTestServer(t, Config{HMACKey: key})
	c, p := newFakeConn(s), &peer{key: key}
	p.negotiate(t, c, 1)
	payload := bytes.Repeat([]byte("p"), 100)
	wire := p.encode(codec.Frame{Seq: p.seq + 1, Request: []byte("echo"), Payload: payload})
	bodyEnd := len(wire) - codec.TagLen
	seq := p.seq
	n := testing.AllocsPerRun(1000, func() {
		seq++
		binary.LittleEndian.PutUint32(wire[2:6], seq)
		p.fm.AppendSign(wire[:bodyEnd], codec.ClientToServer, codec.Frame{Seq: seq, Request: wire[codec.HeaderLen : codec.HeaderLen+4], Payload: wire[codec.HeaderLen+4 : bodyEnd]})
		o := c.opts(wire[codec.HeaderLen : codec.HeaderLen+4])
		f, _, _, _ := codec.Parse(wire, o)
		r := c.dispatch(c.x, f)
		if r.status != codec.StatusOK {
			panic(r.status)
		}
		c.frame(c.x, f, r)
	})
	if n != 0 {
		t.Errorf("%v allocations per keyed version-1 request", n)
	}
}
