package reliability_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// loadResult is what the load clients saw.
type loadResult struct {
	written  atomic.Int64 // requests whose bytes were all written
	answered atomic.Int64 // correct answers received
	clean    atomic.Int64 // clients that ended on a clean close
	mu       sync.Mutex
	errs     []error // torn frames, wrong answers, timeouts
}

func (r *loadResult) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *loadResult) check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, err := range r.errs {
		if i == 10 {
			t.Errorf("... and %d more", len(r.errs)-10)
			break
		}
		t.Error(err)
	}
}

// loadClient sends requests one at a time on c until the server closes the
// connection or maxCalls is reached, checking every answer. A request
// fully written gets a correct answer or a clean close; anything else (a
// torn frame, a wrong answer, a timeout) is an error. slow, when set, is
// the payload of a "sleep" request sent every third call.
func loadClient(c *conn, id int, maxCalls int, slow string, r *loadResult) {
	defer c.close()
	rng := rand.New(rand.NewPCG(uint64(id), 42))
	for j := range maxCalls {
		req, p := "echo", make([]byte, 1+rng.IntN(4096))
		if rng.IntN(32) == 0 {
			p = make([]byte, 100_000)
		}
		for k := range p {
			p[k] = byte(id + j + k)
		}
		if slow != "" && j%3 == 0 {
			req, p = "sleep", []byte(slow)
		}
		want := p
		if req == "sleep" {
			want = nil
		}
		seq, err := c.send(req, p)
		if err != nil {
			if !testnet.IsClosed(err) {
				r.fail(fmt.Errorf("client %d: send: %w", id, err))
			}
			// Not fully written: the server may not owe an answer, but any
			// bytes that come must still be whole frames.
			if f, err := c.recv(ioTimeout); err == nil && (f.Seq != seq || !bytes.Equal(f.Payload, want)) {
				r.fail(fmt.Errorf("client %d: wrong answer after a failed send", id))
			} else if err == nil {
				r.answered.Add(1)
			} else if errors.Is(err, errTorn) {
				r.fail(fmt.Errorf("client %d: %w", id, err))
			}
			r.clean.Add(1)
			return
		}
		r.written.Add(1)
		f, err := c.recv(ioTimeout)
		switch {
		case err == nil && f.Status == codec.StatusOK && f.Seq == seq && string(f.Request) == req && bytes.Equal(f.Payload, want):
			r.answered.Add(1)
		case err == nil:
			r.fail(fmt.Errorf("client %d: %q seq %d: answer status %d seq %d %q, %d bytes", id, req, seq, f.Status, f.Seq, f.Request, len(f.Payload)))
			return
		case testnet.IsClosed(err) && !errors.Is(err, errTorn):
			r.clean.Add(1)
			return
		default:
			r.fail(fmt.Errorf("client %d: %q seq %d: %w", id, req, seq, err))
			return
		}
	}
}

// Graceful shutdown under load: every request the server read is answered
// (the handlers' count equals the answers the clients got), every client
// sees whole answers then a clean close, and Shutdown returns nil.
func TestShutdownUnderLoad(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		var handled atomic.Int64
		h := baseHandlers(v)
		count := func(next engine.Handler) engine.Handler {
			return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
				handled.Add(1)
				return next(ctx, req)
			}
		}
		srv := listen(t, v, engine.Config{Handlers: h, Middleware: []engine.Middleware{count}})
		slow := ""
		if v.blocking() {
			slow = "5ms"
		}
		clients := scale(32)
		var r loadResult
		var wg sync.WaitGroup
		for i := range clients {
			c := mustDial(t, srv, nil)
			wg.Go(func() { loadClient(c, i, 1_000_000, slow, &r) })
		}
		testnet.WaitFor(t, ioTimeout, "load", func() bool { return r.answered.Load() >= int64(20*clients) })
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		start := time.Now()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		t.Logf("Shutdown took %v", time.Since(start))
		wg.Wait()
		r.check(t)
		t.Logf("%d requests written, %d answered, %d handled; %d clients closed cleanly",
			r.written.Load(), r.answered.Load(), handled.Load(), r.clean.Load())
		if a, h := r.answered.Load(), handled.Load(); a != h {
			t.Errorf("handlers ran %d requests, clients got %d answers: %d lost", h, a, h-a)
		}
		if n := r.clean.Load(); n != int64(clients) {
			t.Errorf("%d of %d clients ended on a clean close", n, clients)
		}
	})
}

// An answer still being sent when a graceful shutdown begins (the client
// reads slowly) reaches the client whole before the connection closes.
func TestShutdownFlushesPendingAnswer(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		srv := listen(t, v, engine.Config{})
		// A small receive buffer, set before connecting (shrinking it later
		// stalls TCP), keeps most of a 1 MiB answer in the server.
		d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10) })
			return serr
		}}
		nc, err := d.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := newConn(nc, nil)
		t.Cleanup(c.close)
		p := bytes.Repeat([]byte("0123456789abcdef"), 1<<20/16)
		seq, err := c.send("echo", p)
		if err != nil {
			t.Fatal(err)
		}
		testnet.WaitFor(t, ioTimeout, "the answer to be under way", func() bool { return srv.Stats().Requests == 1 })
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(context.Background()) }()
		// Read slowly, 16 KiB per tick after a pause, as a client on a slow
		// link would: the server's queue of unsent answer bytes drains while
		// it is draining, and it must not close the connection before that
		// queue is empty. (A probe connection cannot tell when draining has
		// begun: gnet may accept it and never serve or close it while its
		// loops stop.)
		want, _ := codec.AppendFrame(nil, codec.Frame{Status: codec.StatusOK, Seq: seq, Request: []byte("echo"), Payload: p}, nil)
		got := make([]byte, 0, len(want)+1)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var rerr error
		for range 40 {
			<-tick.C
		}
		for rerr == nil {
			<-tick.C
			c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
			var n int
			n, rerr = c.nc.Read(got[len(got):min(cap(got), len(got)+16<<10)])
			got = got[:len(got)+n]
		}
		if !testnet.IsClosed(rerr) {
			t.Fatalf("after %d of %d bytes: %v, want the answer then a clean close", len(got), len(want), rerr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes before the close, want the %d-byte answer whole (%v)", len(got), len(want), rerr)
		}
		if err := testnet.RecvOrFail(t, shut, ioTimeout, "Shutdown"); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}

// Close under load returns promptly, with handlers blocked on their
// contexts and clients hammering the server; clients see whole answers or
// a clean close.
func TestCloseUnderLoad(t *testing.T) {
	forEach(t, func(t *testing.T, v variant) {
		h := baseHandlers(v)
		blocked := make(chan struct{}, 64)
		if v.blocking() {
			h["block"] = func(ctx context.Context, _ *engine.Request) (uint16, []byte, error) {
				blocked <- struct{}{}
				<-ctx.Done()
				return 0, nil, ctx.Err()
			}
		}
		srv := listen(t, v, engine.Config{Handlers: h})
		clients := scale(32)
		var r loadResult
		var wg sync.WaitGroup
		nblocked := 0
		for i := range clients {
			c := mustDial(t, srv, nil)
			if v.blocking() && i%8 == 0 {
				if _, err := c.send("block", nil); err != nil {
					t.Fatal(err)
				}
				nblocked++
				continue
			}
			wg.Go(func() { loadClient(c, i, 1_000_000, "", &r) })
		}
		for range nblocked {
			testnet.RecvOrFail(t, blocked, ioTimeout, "handlers to block")
		}
		testnet.WaitFor(t, ioTimeout, "load", func() bool { return r.answered.Load() >= int64(20*clients) })
		start := time.Now()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("Close took %v under load", el)
		} else {
			t.Logf("Close took %v", el)
		}
		wg.Wait()
		r.check(t)
	})
}

// SIGTERM to examples/server under load: it exits 0, and every request
// fully written got a whole answer or a clean close.
func TestSIGTERMExampleServer(t *testing.T) {
	gocmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "server")
	build := exec.Command(gocmd, "build", "-o", bin, "../../examples/server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/server: %v\n%s", err, out)
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			args := []string{"-addr", "127.0.0.1:0", "-engine", string(v.kind)}
			if v.inline {
				args = append(args, "-inline")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 1)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					select {
					case lines <- sc.Text():
					default:
					}
				}
			}()
			line := testnet.RecvOrFail(t, lines, 30*time.Second, "the listening line")
			addr, ok := strings.CutPrefix(line, "listening on ")
			if !ok {
				t.Fatalf("first line %q", line)
			}
			tcp, err := net.ResolveTCPAddr("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			slow := ""
			if v.blocking() {
				slow = "20ms"
			}
			clients := scale(24)
			var r loadResult
			var wg sync.WaitGroup
			for i := range clients {
				c, err := dialAddr(tcp, nil)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() { loadClient(c, i, 1_000_000, slow, &r) })
			}
			testnet.WaitFor(t, ioTimeout, "load", func() bool { return r.answered.Load() >= int64(10*clients) })
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			werr := cmd.Wait()
			wg.Wait()
			r.check(t)
			t.Logf("%d requests written, %d answered; %d clients closed cleanly", r.written.Load(), r.answered.Load(), r.clean.Load())
			if werr != nil {
				t.Errorf("server exited with %v; stderr:\n%s", werr, stderr.String())
			}
			if n := r.clean.Load(); n != int64(clients) {
				t.Errorf("%d of %d clients ended on a clean close", n, clients)
			}
		})
	}
}
