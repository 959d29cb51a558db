//go:build unix

package engine_test

import (
	"context"
	"crypto/tls"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// Resource bounds under attack (issue #14), on every engine variant.

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// #14.1: a frame's buffer grows with the bytes that arrive, never to its
// declared size: 200 connections each sending only a header (and request
// text) declaring 4 MiB − 1 grow the heap by far less than 200 × 4 MiB.
func TestNoAllocationFromDeclaration(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			e := env{v, "tcp"}
			srv := e.listen(t, engine.Config{ReadTimeout: time.Minute})
			before := heapInUse()
			var hdr [codec.HeaderLen]byte
			codec.PutHeader(hdr[:], 0, 1, 4, codec.DefaultMaxPayload-1)
			wire := append(hdr[:], "echo"...)
			var cs []*client
			for range 200 {
				c := dial(t, srv)
				if err := c.writeRaw(append(wire, make([]byte, 100)...)); err != nil {
					t.Fatal(err)
				}
				cs = append(cs, c)
			}
			testnet.WaitFor(t, ioTimeout, "the partial frames to arrive", func() bool {
				return srv.Stats().Buffered >= 200*int64(len(wire)+100)
			})
			grown := int64(heapInUse()) - int64(before)
			if grown > 32<<20 {
				t.Fatalf("heap grew by %d MiB for 200 declared 4 MiB frames, want under 32 MiB", grown>>20)
			}
			t.Logf("heap grew by %.1f MiB", float64(grown)/(1<<20))
			for _, c := range cs {
				c.close()
			}
		})
	}
}

// #14.2: clients that pipeline without reading are bounded by the server's
// inbound budget: the largest holders are closed (reactor) or held back
// (std), and a healthy client is still served.
func TestInboundBudget(t *testing.T) {
	forEachTCP(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{MaxBuffered: 4 << 20, WriteTimeout: time.Second})
		payload := make([]byte, 32<<10)
		frame, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: payload}, nil)
		var wg sync.WaitGroup
		for range 20 {
			c := dial(t, srv)
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Up to 16 MiB each, never reading; stop at the first
				// error (closed, or held back past the deadline).
				c.nc.SetWriteDeadline(time.Now().Add(3 * time.Second))
				for range 512 {
					if _, err := c.nc.Write(frame); err != nil {
						return
					}
				}
			}()
		}
		healthy := dial(t, srv)
		for range 20 {
			healthy.expect("echo", []byte("ok"), codec.StatusOK, []byte("ok"))
		}
		wg.Wait()
		st := srv.Stats()
		if st.Evicted == 0 && st.TimedOut == 0 {
			t.Errorf("no connection evicted or timed out: %+v", st)
		}
		healthy.expect("echo", []byte("still"), codec.StatusOK, []byte("still"))
	})
}

// #14.5: one address cannot hoard the TLS handshake slots: 1,030
// connections from 127.0.0.2 that each send one byte of a ClientHello take
// no slot at all, and ones that send a whole first record take at most
// the per-address share; a client from 127.0.0.1 still completes its
// handshake.
func TestHandshakeHoarding(t *testing.T) {
	for _, v := range variants[:2] {
		t.Run(v.name, func(t *testing.T) {
			pki, _ := secCerts(t)
			s := secServer(t, v, false, func(c *engine.Config) { c.MaxHandshakes = 16 })
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: ioTimeout}
			var conns []net.Conn
			t.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			n := 1030
			if raceEnabled {
				n = 300
			}
			for i := range n {
				c, err := d.Dial("tcp", s.AddrString())
				if err != nil {
					t.Fatalf("attacker %d: %v", i, err)
				}
				conns = append(conns, c)
				if i%2 == 0 {
					c.Write([]byte{0x16})
				} else {
					c.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x02, 0x00})
				}
			}
			for range 3 {
				ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
				tc, err := (&tls.Dialer{Config: secClientTLS(pki, nil, 0)}).DialContext(ctx, "tcp", s.AddrString())
				cancel()
				if err != nil {
					t.Fatalf("handshake from another address: %v (stats %+v)", err, s.Stats())
				}
				tc.Close()
			}
		})
	}
}

// The inbound budget counts only bytes a connection still holds: once a
// large frame is answered, its bytes are given back, on every engine and
// over TLS. Eight clients each send one 3 MB request in turn (its answer
// too large to leave in one write) and then stay idle, under an 8 MiB
// budget: none is evicted, and nothing stays charged. (The reactor once kept each answered frame charged until the
// connection's next event, and evicted idle clients for them.)
func TestBudgetReleasedAfterAnswer(t *testing.T) {
	for _, v := range variants {
		for _, transport := range []string{"tcp", "tls"} {
			t.Run(v.name+"/"+transport, func(t *testing.T) {
				mod := func(cfg *engine.Config) { cfg.MaxBuffered = 8 << 20 }
				var srv *engine.Server
				dialOne := func() *client { return dial(t, srv) }
				if transport == "tls" {
					srv = secServer(t, v, false, mod)
					dialOne = func() *client { return dialTLS(t, srv) }
				} else {
					cfg := engine.Config{}
					mod(&cfg)
					srv = env{v, "tcp"}.listen(t, cfg)
				}
				payload := make([]byte, 3_000_000)
				var cs []*client
				for i := range 8 {
					c := dialOne()
					c.opts.MaxPayload = 4 << 20
					c.expect("echo", payload, codec.StatusOK, payload)
					testnet.WaitFor(t, ioTimeout, "the answered frame's bytes to be given back", func() bool {
						return srv.Stats().Buffered == 0
					})
					if st := srv.Stats(); st.Evicted != 0 {
						t.Fatalf("after client %d: %d evicted", i+1, st.Evicted)
					}
					cs = append(cs, c)
				}
				for _, c := range cs {
					c.expect("echo", []byte("still here"), codec.StatusOK, []byte("still here"))
				}
			})
		}
	}
}

// Std holds many connections back at the inbound budget without going over
// it: a connection's buffer is charged before it grows, and one that would
// take the budget over gives the growth back and waits. So what is held
// stays within MaxBuffered plus one first read buffer (4 KiB) per
// connection, however many wait. (Each waiting connection once kept its
// grown buffer charged: 60 of them held twice the budget.)
func TestStdBudgetHoldsBackWithinLimit(t *testing.T) {
	const limit, conns = 2 << 20, 60
	srv := env{variant{"std", engine.Std, false}, "tcp"}.listen(t, engine.Config{MaxBuffered: limit, ReadTimeout: time.Minute})
	var hdr [codec.HeaderLen]byte
	codec.PutHeader(hdr[:], 0, 1, 4, codec.DefaultMaxPayload-1)
	wire := append(append(hdr[:], "echo"...), make([]byte, 210_000)...)
	var wg sync.WaitGroup
	for range conns {
		c := dial(t, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.writeRaw(wire) // the kernel's buffers take it; the server reads what the budget allows
		}()
	}
	wg.Wait()
	testnet.WaitFor(t, ioTimeout, "most connections to wait for room", func() bool {
		return srv.Stats().Evicted >= conns/2
	})
	got, bound := srv.Stats().Buffered, int64(limit+conns*4<<10)
	if got > bound {
		t.Fatalf("Buffered %d with %d connections waiting, want at most %d (the limit plus one read buffer each)", got, conns, bound)
	}
	t.Logf("Buffered %d of a %d limit", got, limit)
}
