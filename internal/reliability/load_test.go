package reliability_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// Slowloris: clients that trickle a frame one byte at a time, and clients
// that connect and say nothing, are closed once the read timeout (for the
// whole frame, however steadily its bytes arrive) or the idle timeout
// passes; a well-behaved client is served throughout.
func TestSlowloris(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		const (
			readTimeout = 300 * time.Millisecond
			idleTimeout = 600 * time.Millisecond
			drip        = 20 * time.Millisecond
			bound       = 3 * time.Second // read timeout, header trickle, wheel slack, a loaded machine
		)
		srv := listen(t, v, engine.Config{ReadTimeout: readTimeout, IdleTimeout: idleTimeout})
		frame, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: make([]byte, 1000)}, nil)
		n := scale(40)
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for i := range 2 * n {
			c := mustDial(t, srv, nil)
			wg.Go(func() {
				start := time.Now()
				closed := make(chan error, 1)
				go func() {
					var b [64]byte
					c.nc.SetReadDeadline(time.Now().Add(2 * bound))
					_, err := c.nc.Read(b[:])
					closed <- err
				}()
				var err error
				if i%2 == 0 { // trickle; the other half stays silent
					tick := time.NewTicker(drip)
					defer tick.Stop()
				trickle:
					for k := 0; k < len(frame); k++ {
						c.nc.Write(frame[k : k+1])
						select {
						case err = <-closed:
							break trickle
						case <-tick.C:
						}
					}
				} else {
					err = <-closed
				}
				el := time.Since(start)
				switch {
				case !testnet.IsClosed(err):
					errs <- fmt.Errorf("client %d: want the server to close, got %v after %v", i, err, el)
				case el > bound:
					errs <- fmt.Errorf("client %d: closed after %v, want within %v", i, el, bound)
				}
			})
		}
		// Served meanwhile.
		good := mustDial(t, srv, nil)
		for j := range 20 {
			start := time.Now()
			if err := good.echo(fmt.Appendf(nil, "good %d", j)); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el > time.Second {
				t.Errorf("echo took %v during the attack", el)
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		good.close()
		testnet.WaitFor(t, ioTimeout, "every connection to close", func() bool { return srv.Stats().OpenConns == 0 })
	})
}

// A client that pipelines requests and never reads an answer: the server's
// memory stays bounded (the reactor closes it once its backlog passes the
// limit, the std engine stops reading and lets TCP push back), and other
// connections keep working. Variants run one after another so that the
// heap measured is this server's.
func TestPipelinedNeverReads(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			srv := listen(t, v, engine.Config{MaxPayload: 64 << 10})
			other := mustDial(t, srv, nil)
			if err := other.echo([]byte("before")); err != nil {
				t.Fatal(err)
			}
			before := heapInUse()

			flood := mustDial(t, srv, nil)
			var batch []byte
			for range 256 {
				batch, _ = flood.frame(batch, "echo", bytes.Repeat([]byte("p"), 1024))
			}
			limit := 64 << 20
			sent := 0
			var werr error
			for sent < limit {
				flood.nc.SetWriteDeadline(time.Now().Add(time.Second))
				n, err := flood.nc.Write(batch)
				sent += n
				if err != nil {
					werr = err
					break
				}
				if sent%(4<<20) < len(batch) {
					if err := other.echo([]byte("during")); err != nil {
						t.Fatalf("other connection after %d MiB: %v", sent>>20, err)
					}
				}
			}
			grown := int64(heapInUse()) - int64(before)
			t.Logf("sent %.1f MiB, stopped by %v; heap grew %.1f MiB", float64(sent)/(1<<20), werr, float64(grown)/(1<<20))
			switch {
			case werr == nil:
				t.Errorf("sent %d MiB without being stopped", sent>>20)
			case v.kind == engine.Reactor && !testnet.IsClosed(werr):
				t.Errorf("reactor: write ended with %v, want the connection closed", werr)
			case v.kind == engine.Std && !errors.Is(werr, os.ErrDeadlineExceeded):
				t.Errorf("std: write ended with %v, want it blocked (TCP backpressure)", werr)
			}
			if grown > 32<<20 {
				t.Errorf("heap grew %d MiB", grown>>20)
			}
			if err := other.echo([]byte("after")); err != nil {
				t.Fatal(err)
			}
			flood.close()
			testnet.WaitFor(t, ioTimeout, "the flooding connection to close", func() bool { return srv.Stats().OpenConns == 1 })
		})
	}
}

// Thousands of connects and disconnects per second, some resets, some
// mid-frame, some with a request: nothing leaks and the server serves on.
func TestConnectionChurn(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		srv := listen(t, v, engine.Config{})
		const workers = 8
		dur := time.Second
		maxOps := int64(scale(20000))
		var ops, served, failures atomic.Int64
		var firstErr atomic.Value
		deadline := time.Now().Add(dur)
		half, _ := codec.AppendFrame(nil, codec.Frame{Seq: 1, Request: []byte("echo"), Payload: []byte("half")}, nil)
		half = half[:7]
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; time.Now().Before(deadline) && ops.Load() < maxOps; i += workers {
					c, err := dial(srv, nil)
					if err != nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, err)
						continue
					}
					switch i % 4 {
					case 0:
						c.close()
					case 1:
						c.abort()
					case 2:
						if err := c.echo([]byte("churn")); err != nil {
							failures.Add(1)
							firstErr.CompareAndSwap(nil, err)
						} else {
							served.Add(1)
						}
						c.close()
					case 3:
						c.writeRaw(half)
						c.abort()
					}
					ops.Add(1)
				}
			})
		}
		wg.Wait()
		rate := float64(ops.Load()) / dur.Seconds()
		t.Logf("%d connects/disconnects in %v (%.0f/s)", ops.Load(), dur, rate)
		if f := failures.Load(); f > 0 {
			t.Errorf("%d failures, first: %v", f, firstErr.Load())
		}
		if min := float64(scale(800)); rate < min {
			t.Errorf("%.0f connections/s, want at least %.0f", rate, min)
		}
		testnet.WaitFor(t, ioTimeout, "every connection to close", func() bool { return srv.Stats().OpenConns == 0 })
		// A connection reset while still in the kernel's accept queue never
		// reaches the server (accept skips it), so only the served ones are
		// certain to be counted.
		if st := srv.Stats(); st.TotalConns < uint64(served.Load()) || st.Requests != uint64(served.Load()) {
			t.Errorf("server counted %d connections and %d requests; clients made %d connections, %d served",
				st.TotalConns, st.Requests, ops.Load(), served.Load())
		}
		if err := checkEcho(srv, nil, []byte("after the churn")); err != nil {
			t.Fatal(err)
		}
	})
}
