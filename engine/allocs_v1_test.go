//go:build !race

package engine_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// Version-1 sessions allocate nothing per request either, keyed (the tag
// is checked and made with the session's own hash state) or not. The
// client below re-signs each request in place (its seq changes) without
// allocating. The keyed cases need the transport's opts (32-byte tags).
func TestServerAllocsPerRequestV1(t *testing.T) {
	for _, v := range variants {
		for _, size := range []int{0, 100, 8 << 10} {
			for _, key := range [][]byte{nil, v1key} {
				name := v.name + "/" + byteSize(size) + "/" + keyName(key)
				t.Run(name, func(t *testing.T) {
					e := env{v, "tcp"}
					srv := e.listen(t, engine.Config{HMACKey: key})
					c := dialV1(t, srv, key)
					payload := bytes.Repeat([]byte("p"), size)
					// One checked round trip first, so a server that does not
					// speak keyed version 1 fails the test instead of the
					// unchecked loop below panicking.
					if _, err := c.sendV1("echo", payload); err != nil {
						t.Fatal(err)
					}
					if f, err := c.recvErrTimeout(2 * time.Second); err != nil || f.Status != codec.StatusOK {
						t.Fatalf("first request: status %d, %v", f.Status, err)
					}
					req := c.frameBytes(codec.Frame{Seq: c.seq + 1, Request: []byte("echo"), Payload: payload})
					bodyEnd := codec.HeaderLen + 4 + size
					answer := make([]byte, len(req))
					c.nc.SetDeadline(time.Now().Add(time.Minute))
					seq := c.seq
					roundTrip := func() {
						seq++
						binary.LittleEndian.PutUint32(req[2:6], seq)
						if c.fm != nil {
							f := codec.Frame{Seq: seq, Request: req[codec.HeaderLen : codec.HeaderLen+4], Payload: req[codec.HeaderLen+4 : bodyEnd]}
							c.fm.AppendSign(req[:bodyEnd], codec.ClientToServer, f)
						}
						if _, err := c.nc.Write(req); err != nil {
							panic(err)
						}
						if _, err := io.ReadFull(c.nc, answer); err != nil {
							panic(err)
						}
					}
					for range 200 {
						roundTrip()
					}
					f, _, _, err := codec.Parse(answer, codec.Options{MAC: key != nil, Version: 1})
					if err != nil || f.Status != codec.StatusOK || !bytes.Equal(f.Payload, payload) || f.Seq != seq {
						t.Fatalf("bad answer: %v status %d seq %d", err, f.Status, f.Seq)
					}
					if c.fm != nil {
						if err := c.fm.Verify(codec.ServerToClient, f); err != nil {
							t.Fatal(err)
						}
					}
					n := testing.AllocsPerRun(2000, roundTrip)
					t.Logf("%s: %v allocations per request", name, n)
					if n > 0 {
						t.Errorf("%v allocations per echo request, want 0", n)
					}
				})
			}
		}
	}
}
