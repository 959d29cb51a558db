//go:build !race

package engine_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// The server allocates nothing per request in steady state, on every
// engine. testing.AllocsPerRun counts the whole process's mallocs, server
// and client, over many round trips on one connection; the client below
// allocates nothing itself, so any allocation counted is the server's
// (or background noise amortised below one per request). The race
// detector allocates, hence the build tag.
func TestServerAllocsPerRequest(t *testing.T) {
	for _, v := range variants {
		for _, size := range []int{0, 100, 8 << 10} {
			for _, key := range [][]byte{nil, []byte("key")} {
				name := v.name + "/" + byteSize(size)
				if key != nil {
					name += "/hmac"
				}
				t.Run(name, func(t *testing.T) {
					e := env{v, "tcp"}
					srv := e.listen(t, engine.Config{HMACKey: key})
					c := dial(t, srv)
					if key != nil {
						c.withMAC(key)
					}
					payload := bytes.Repeat([]byte("p"), size)
					req := c.encode(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: payload})
					answer := make([]byte, len(req))
					c.nc.SetDeadline(time.Now().Add(time.Minute))
					roundTrip := func() {
						if _, err := c.nc.Write(req); err != nil {
							panic(err)
						}
						if _, err := io.ReadFull(c.nc, answer); err != nil {
							panic(err)
						}
					}
					for range 200 { // warm up pools, buffers and workers
						roundTrip()
					}
					if f, _, _, err := codec.Parse(answer, codec.Options{}); err != nil || f.Status != codec.StatusOK || !bytes.Equal(f.Payload, payload) {
						t.Fatalf("bad answer: %v status %d", err, f.Status)
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

func byteSize(n int) string {
	switch {
	case n >= 1<<10:
		return itoa(n>>10) + "KiB"
	default:
		return itoa(n) + "B"
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
