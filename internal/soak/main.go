// Command soak runs every server engine variant in-process under a mixed
// load with random faults for a bounded time, verifies every answer, and
// fails if the process's RSS or goroutine count grew between the end of
// the warm-up and the end of the run.
//
//	go run ./internal/soak [-duration 5m] [-warmup 30s] [-clients 24] [-seed N]
//
// Servers: reactor (worker pool), reactor (inline) and std, each with and
// without HMAC, on 127.0.0.1. Load: echo at sizes from 0 bytes to 512 KiB,
// slow handlers, panicking and failing handlers, unknown requests,
// pipelined bursts; faults: clients that disconnect mid-frame or before
// reading a large answer, garbage, oversized headers.
//
// Both measurements are taken at a quiescent point: the load stops, every
// server connection closes, the worker pools' idle goroutines expire, and
// the collector runs (runtime.GC and debug.FreeOSMemory) before RSS
// (VmRSS) and runtime.NumGoroutine are read. The run fails (exit 1) when
// RSS grew by more than 10%, when goroutines grew by more than 10% plus 5
// (the slack absorbs a runtime or pool goroutine that happens to be alive
// at one sample and not the other), or when any answer was wrong.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/frameio"
)

const (
	maxPayload   = 1 << 20
	ioTimeout    = 10 * time.Second
	growthLimit  = 0.10 // RSS and goroutines may grow this much
	goroutineAbs = 5    // plus this many goroutines
)

var hmacKey = []byte("soak-key")

func main() {
	duration := flag.Duration("duration", 5*time.Minute, "total run time, warm-up included")
	warmup := flag.Duration("warmup", 30*time.Second, "warm-up before the baseline measurement")
	clients := flag.Int("clients", 24, "concurrent load clients")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()
	if *warmup <= 0 || *duration <= *warmup {
		fmt.Fprintln(os.Stderr, "soak: need 0 < -warmup < -duration")
		os.Exit(2)
	}
	os.Exit(run(*duration, *warmup, *clients, *seed))
}

// server is one server under test.
type server struct {
	name     string
	srv      *engine.Server
	key      []byte // nil without HMAC
	blocking bool   // handlers may block (not inline)
}

// tally counts what the clients did and saw.
type tally struct {
	sessions, requests, verified, faults atomic.Int64
	failures                             atomic.Int64
	mu                                   sync.Mutex
	first                                []string // the first failures
}

func (t *tally) fail(format string, args ...any) {
	t.failures.Add(1)
	t.mu.Lock()
	if len(t.first) < 20 {
		t.first = append(t.first, fmt.Sprintf(format, args...))
	}
	t.mu.Unlock()
}

func run(duration, warmup time.Duration, clients int, seed uint64) int {
	fmt.Printf("soak: %v (warm-up %v), %d clients, seed %d, GOMAXPROCS %d\n",
		duration, warmup, clients, seed, runtime.GOMAXPROCS(0))
	servers, err := startServers()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	defer func() {
		for _, s := range servers {
			s.srv.Close()
		}
	}()
	var t tally
	start := time.Now()

	load(servers, clients, seed, start.Add(warmup), &t)
	if !quiesce(servers) {
		t.fail("connections still open after the warm-up")
	}
	rss0, g0 := measure()
	fmt.Printf("soak: after warm-up (%v): RSS %.1f MiB, %d goroutines; %d requests verified\n",
		time.Since(start).Round(time.Second), float64(rss0)/(1<<20), g0, t.verified.Load())

	load(servers, clients, seed+1, start.Add(duration), &t)
	if !quiesce(servers) {
		t.fail("connections still open at the end")
	}
	rss1, g1 := measure()
	fmt.Printf("soak: at the end (%v): RSS %.1f MiB, %d goroutines\n",
		time.Since(start).Round(time.Second), float64(rss1)/(1<<20), g1)

	fmt.Printf("soak: %d sessions, %d requests, %d answers verified, %d faults injected, %d failures\n",
		t.sessions.Load(), t.requests.Load(), t.verified.Load(), t.faults.Load(), t.failures.Load())
	for _, s := range servers {
		st := s.srv.Stats()
		fmt.Printf("soak:   %-20s %8d conns %8d answers %v\n", s.name, st.TotalConns, st.Requests, st.ByStatus)
	}
	code := 0
	if n := t.failures.Load(); n > 0 {
		fmt.Printf("soak: FAIL: %d failures; the first:\n  %s\n", n, strings.Join(t.first, "\n  "))
		code = 1
	}
	if t.verified.Load() == 0 {
		fmt.Println("soak: FAIL: no answer verified")
		code = 1
	}
	if float64(rss1) > float64(rss0)*(1+growthLimit) {
		fmt.Printf("soak: FAIL: RSS grew %.1f%% (%.1f → %.1f MiB), limit %.0f%%\n",
			100*(float64(rss1)/float64(rss0)-1), float64(rss0)/(1<<20), float64(rss1)/(1<<20), 100*growthLimit)
		code = 1
	}
	if float64(g1) > float64(g0)*(1+growthLimit)+goroutineAbs {
		fmt.Printf("soak: FAIL: goroutines grew from %d to %d, limit +%.0f%% +%d\n", g0, g1, 100*growthLimit, goroutineAbs)
		code = 1
	}
	if code == 0 {
		fmt.Println("soak: PASS")
	}
	return code
}

func startServers() ([]*server, error) {
	variants := []struct {
		name   string
		kind   engine.Kind
		inline bool
	}{
		{"reactor-pool", engine.Reactor, false},
		{"reactor-inline", engine.Reactor, true},
		{"std", engine.Std, false},
	}
	var out []*server
	for _, v := range variants {
		for _, key := range [][]byte{nil, hmacKey} {
			h := map[string]engine.Handler{
				"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
					return 200, req.Payload, nil
				},
				"panic": func(context.Context, *engine.Request) (uint16, []byte, error) {
					panic("soak: panicking as asked")
				},
				"fail": func(context.Context, *engine.Request) (uint16, []byte, error) {
					return 0, nil, errors.New("soak: failing as asked")
				},
			}
			if !v.inline {
				h["sleep"] = func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
					d, err := time.ParseDuration(string(req.Payload))
					if err != nil {
						return 0, nil, err
					}
					tm := time.NewTimer(d)
					defer tm.Stop()
					select {
					case <-tm.C:
						return 200, req.Payload, nil
					case <-ctx.Done():
						return 0, nil, ctx.Err()
					}
				}
			}
			srv, err := engine.Listen(engine.Config{
				Addr:           "127.0.0.1:0",
				Engine:         v.kind,
				Inline:         v.inline,
				MaxPayload:     maxPayload,
				ReadTimeout:    2 * time.Second,
				IdleTimeout:    30 * time.Second,
				HandlerTimeout: 5 * time.Second,
				HMACKey:        key,
				Logger:         slog.New(slog.DiscardHandler),
				IgnoreSignals:  true,
				Handlers:       h,
			})
			if err != nil {
				for _, s := range out {
					s.srv.Close()
				}
				return nil, err
			}
			name := v.name
			if key != nil {
				name += "+hmac"
			}
			out = append(out, &server{name: name, srv: srv, key: key, blocking: !v.inline})
		}
	}
	return out, nil
}

// load runs the clients until the deadline and returns when all stopped.
func load(servers []*server, clients int, seed uint64, deadline time.Time, t *tally) {
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			for time.Now().Before(deadline) {
				s := servers[rng.IntN(len(servers))]
				t.sessions.Add(1)
				session(s, rng, deadline, t)
			}
		})
	}
	wg.Wait()
}

// quiesce waits until no server has a connection open and the worker
// pools' idle goroutines have expired: the goroutine count is steady.
func quiesce(servers []*server) bool {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		open := int64(0)
		for _, s := range servers {
			open += s.srv.Stats().OpenConns
		}
		if open == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	// ants purges idle workers once a second; wait for three steady
	// seconds (at most 20).
	last, steady := -1, 0
	for i := 0; i < 20 && steady < 3; i++ {
		time.Sleep(time.Second) // polling interval
		runtime.GC()
		if g := runtime.NumGoroutine(); g == last {
			steady++
		} else {
			last, steady = g, 0
		}
	}
	for _, s := range servers {
		if s.srv.Stats().OpenConns != 0 {
			return false
		}
	}
	return true
}

// measure returns the RSS in bytes and the goroutine count after a full
// collection.
func measure() (rss uint64, goroutines int) {
	runtime.GC()
	debug.FreeOSMemory()
	return vmRSS(), runtime.NumGoroutine()
}

func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// session is one client connection: a random number of requests, each
// verified, possibly ended by a fault.
func session(s *server, rng *rand.Rand, deadline time.Time, t *tally) {
	c, err := dial(s)
	if err != nil {
		t.fail("%s: dial: %v", s.name, err)
		return
	}
	defer c.nc.Close()
	n := 1 + rng.IntN(40)
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		r := rng.IntN(100)
		var err error
		switch {
		case r < 50:
			err = c.expect(t, "echo", payload(rng, echoSize(rng)), codec.StatusOK, true)
		case r < 62 && s.blocking:
			d := []byte(strconv.Itoa(1+rng.IntN(20)) + "ms")
			err = c.expect(t, "sleep", d, codec.StatusOK, true)
		case r < 65:
			err = c.expect(t, "panic", nil, codec.StatusHandlerError, false)
		case r < 68:
			err = c.expect(t, "fail", nil, codec.StatusHandlerError, false)
		case r < 70:
			err = c.expect(t, "no-such-handler", nil, codec.StatusNoHandler, false)
		case r < 78:
			err = c.burst(t, rng)
		case r < 94:
			err = c.echoSmall(t, rng)
		default:
			t.faults.Add(1)
			if err := c.fault(rng); err != nil {
				t.fail("%s: fault: %v", s.name, err)
			}
			return
		}
		if err != nil {
			t.fail("%s: %v", s.name, err)
			return
		}
	}
}

func echoSize(rng *rand.Rand) int {
	switch r := rng.IntN(100); {
	case r < 5:
		return 0
	case r < 60:
		return 1 + rng.IntN(100)
	case r < 90:
		return 1<<10 + rng.IntN(15<<10)
	case r < 99:
		return 64 << 10
	default:
		return 512 << 10
	}
}

func payload(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for k := 0; k < 8 && i+k < n; k++ {
			p[i+k] = byte(v >> (8 * k))
		}
	}
	return p
}

// conn is a raw Petrel client that checks every frame it reads.
type conn struct {
	s   *server
	nc  net.Conn
	mac *codec.MAC
	seq uint32
	rd  frameio.Reader
	out []byte
}

func dial(s *server) (*conn, error) {
	nc, err := net.DialTimeout("tcp", s.srv.Addr().String(), ioTimeout)
	if err != nil {
		return nil, err
	}
	c := &conn{s: s, nc: nc}
	if s.key != nil {
		c.mac = codec.NewMAC(s.key)
	}
	return c, nil
}

var errTorn = errors.New("torn frame")

func (c *conn) frame(dst []byte, req string, p []byte) ([]byte, uint32) {
	c.seq++
	b, _ := codec.AppendFrame(dst, codec.Frame{Seq: c.seq, Request: []byte(req), Payload: p}, c.mac)
	return b, c.seq
}

func (c *conn) write(b []byte) error {
	c.nc.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := c.nc.Write(b)
	return err
}

// recv reads one whole frame, verifying its MAC.
func (c *conn) recv(d time.Duration) (codec.Frame, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	opts := codec.Options{MaxPayload: maxPayload + 1<<10, MAC: c.mac != nil}
	f, err := c.rd.Next(c.nc, opts)
	if err != nil {
		var le *codec.LimitError
		switch {
		case errors.As(err, &le):
			return f, fmt.Errorf("answer header: %w", err)
		case c.rd.Buffered() > 0 && closed(err):
			return codec.Frame{}, fmt.Errorf("%w: %d bytes: %w", errTorn, c.rd.Buffered(), err)
		}
		return codec.Frame{}, err
	}
	if c.mac != nil {
		if err := c.mac.Verify(f.Payload, f.MAC); err != nil {
			return f, fmt.Errorf("answer seq %d: %w", f.Seq, err)
		}
	}
	return f, nil
}

func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// check verifies an answer against its request.
func check(f codec.Frame, req string, seq uint32, status codec.Status, want []byte, checkPayload bool) error {
	if f.Status != status || f.Seq != seq || string(f.Request) != req {
		return fmt.Errorf("%q seq %d: answer status %d seq %d %q, want status %d", req, seq, f.Status, f.Seq, f.Request, status)
	}
	if checkPayload && !bytes.Equal(f.Payload, want) {
		return fmt.Errorf("%q seq %d: %d payload bytes back, want %d, or different", req, seq, len(f.Payload), len(want))
	}
	return nil
}

func (c *conn) expect(t *tally, req string, p []byte, status codec.Status, checkPayload bool) error {
	var seq uint32
	c.out, seq = c.frame(c.out[:0], req, p)
	t.requests.Add(1)
	if err := c.write(c.out); err != nil {
		return fmt.Errorf("%q: write: %w", req, err)
	}
	f, err := c.recv(ioTimeout)
	if err != nil {
		return fmt.Errorf("%q seq %d: %w", req, seq, err)
	}
	if err := check(f, req, seq, status, p, checkPayload); err != nil {
		return err
	}
	t.verified.Add(1)
	return nil
}

func (c *conn) echoSmall(t *tally, rng *rand.Rand) error {
	return c.expect(t, "echo", payload(rng, rng.IntN(64)), codec.StatusOK, true)
}

// burst pipelines several requests in one write and checks the answers
// come back in order.
func (c *conn) burst(t *tally, rng *rand.Rand) error {
	n := 2 + rng.IntN(30)
	type sent struct {
		seq uint32
		p   []byte
	}
	var b []byte
	reqs := make([]sent, n)
	for i := range reqs {
		p := payload(rng, rng.IntN(2048))
		var seq uint32
		b, seq = c.frame(b, "echo", p)
		reqs[i] = sent{seq, p}
	}
	t.requests.Add(int64(n))
	if err := c.write(b); err != nil {
		return fmt.Errorf("burst: write: %w", err)
	}
	for _, r := range reqs {
		f, err := c.recv(ioTimeout)
		if err != nil {
			return fmt.Errorf("burst seq %d: %w", r.seq, err)
		}
		if err := check(f, "echo", r.seq, codec.StatusOK, r.p, true); err != nil {
			return fmt.Errorf("burst: %w", err)
		}
		t.verified.Add(1)
	}
	return nil
}

// fault ends the session badly, in one of several ways, and checks what
// the server sends back is whole frames at most.
func (c *conn) fault(rng *rand.Rand) error {
	abort := func() {
		if tc, ok := c.nc.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
	switch rng.IntN(5) {
	case 0: // disconnect mid-frame
		b, _ := c.frame(nil, "echo", payload(rng, 1+rng.IntN(8<<10)))
		c.write(b[:rng.IntN(len(b))])
		if rng.IntN(2) == 0 {
			abort()
		}
		return nil
	case 1: // garbage: whatever comes back must be whole frames
		c.write(payload(rng, 1+rng.IntN(300)))
		for range 16 {
			if _, err := c.recv(200 * time.Millisecond); err != nil {
				if errors.Is(err, errTorn) {
					return fmt.Errorf("after garbage: %w", err)
				}
				break
			}
		}
		abort()
		return nil
	case 2: // a header (and request text) declaring too much: 402, then the server closes
		var h [codec.HeaderLen]byte
		seq := c.seq + 1
		codec.PutHeader(h[:], 0, seq, 4, maxPayload+1+rng.IntN(1<<20))
		if err := c.write(append(h[:], "echo"...)); err != nil {
			return err
		}
		f, err := c.recv(ioTimeout)
		if err != nil {
			return fmt.Errorf("oversized header: %w", err)
		}
		if f.Status != codec.StatusPayloadTooLarge || f.Seq != seq || string(f.Request) != "echo" {
			return fmt.Errorf("oversized header: status %d seq %d request %q, want 402 seq %d \"echo\"", f.Status, f.Seq, f.Request, seq)
		}
		if _, err := c.recv(ioTimeout); err == nil || !closed(err) || errors.Is(err, errTorn) {
			return fmt.Errorf("after 402: %v, want the connection closed", err)
		}
		return nil
	case 3: // a large answer never read
		b, _ := c.frame(nil, "echo", payload(rng, 256<<10+rng.IntN(512<<10)))
		c.write(b)
		if rng.IntN(2) == 0 {
			abort()
		}
		return nil
	default: // a burst, then gone before the answers
		var b []byte
		for range 1 + rng.IntN(20) {
			b, _ = c.frame(b, "echo", payload(rng, rng.IntN(4096)))
		}
		c.write(b)
		abort()
		return nil
	}
}
