package engine

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/petrel-rpc/petrel/codec"
)

// BenchmarkDispatch measures the dispatch layer alone (opts, parse,
// dispatch, frame) for an echo, per session kind and payload size: the
// cost the version-1 tag and seq rule add beside the classic MAC.
func BenchmarkDispatch(b *testing.B) {
	for _, kind := range []string{"v0", "v0-hmac", "v1", "v1-keyed"} {
		for _, size := range []int{0, 128, 4 << 10, 64 << 10} {
			b.Run(kind+"/"+strconv.Itoa(size)+"B", func(b *testing.B) {
				var key []byte
				if kind == "v0-hmac" || kind == "v1-keyed" {
					key = []byte("bench key")
				}
				s := newTestServer(b, Config{HMACKey: key})
				c, p := newFakeConn(s), &peer{key: key}
				if kind[1] == '1' {
					p.negotiate(b, c, 1)
				}
				payload := bytes.Repeat([]byte("p"), size)
				wire := p.encode(codec.Frame{Seq: p.seq + 1, Request: []byte("echo"), Payload: payload})
				bodyEnd := codec.HeaderLen + 4 + size
				seq := p.seq
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.ResetTimer()
				for range b.N {
					if p.ver == 1 {
						seq++
						binary.LittleEndian.PutUint32(wire[2:6], seq)
						if p.fm != nil {
							b.StopTimer()
							p.fm.AppendSign(wire[:bodyEnd], codec.ClientToServer, codec.Frame{Seq: seq, Request: wire[codec.HeaderLen : codec.HeaderLen+4], Payload: wire[codec.HeaderLen+4 : bodyEnd]})
							b.StartTimer()
						}
					}
					o := c.opts(wire[codec.HeaderLen : codec.HeaderLen+4])
					f, _, _, _ := codec.Parse(wire, o)
					r := c.dispatch(c.x, f)
					if r.status != codec.StatusOK {
						b.Fatal(r.status)
					}
					c.frame(c.x, f, r)
				}
			})
		}
	}
}
