package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
)

// transport is one way of reaching a fake server.
type transport struct {
	name string
	unix bool
	tls  bool
}

var transports = []transport{{"tcp", false, false}, {"unix", true, false}, {"tls", false, true}}

// forTransports runs f over TCP, a Unix socket and TLS; f gets a function
// that starts a fake server with cfg and a client Config to reach it.
func forTransports(t *testing.T, f func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config))) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			var pki *testPKI
			if tr.tls {
				pki = newPKI(t)
			}
			f(t, func(fc fakeConfig) (*fakeServer, client.Config) {
				fc.Unix = tr.unix
				cc := client.Config{HMACKey: fc.Key}
				if pki != nil {
					fc.TLS = pki.ServerTLS()
					cc.TLS = pki.ClientTLS()
				}
				s := startFake(t, fc)
				cc.Addr = s.Addr
				return s, cc
			})
		})
	}
}

func mustDial(t testing.TB, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a context bounded well within the test's timeout.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantStatus(t testing.TB, err error, status codec.Status) *codec.StatusError {
	t.Helper()
	var se *codec.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *codec.StatusError with status %d", err, err, status)
	}
	if se.Status != status {
		t.Fatalf("status %d (%v), want %d", se.Status, err, status)
	}
	return se
}

func wantClosed(t testing.TB, c *client.Client) {
	t.Helper()
	if err := c.Err(); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Err() = %v, want ErrClosed", err)
	}
	if _, err := c.Call(context.Background(), "echo", nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("call on a closed client: %v, want ErrClosed", err)
	}
}

func wantOpen(t testing.TB, c *client.Client) {
	t.Helper()
	if err := c.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
	resp, err := c.Call(context.Background(), "echo", []byte("still here"))
	if err != nil || string(resp.Payload) != "still here" {
		t.Fatalf("call after: %q, %v", resp.Payload, err)
	}
}

func TestCallEcho(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		for _, key := range [][]byte{nil, []byte("sekrit")} {
			_, cfg := start(fakeConfig{Key: key})
			c := mustDial(t, cfg)
			for _, n := range []int{0, 1, 64, 32 << 10, 64 << 10, 1 << 20, 4 << 20} {
				p := bytes.Repeat([]byte{byte(n)}, n)
				p = append(p[:0:0], p...)
				resp, err := c.Call(testCtx(t), "echo", p)
				if err != nil {
					t.Fatalf("key %q, %d bytes: %v", key, n, err)
				}
				if resp.Status != codec.StatusOK || resp.Request != "echo" || !bytes.Equal(resp.Payload, p) {
					t.Fatalf("key %q, %d bytes: status %d request %q, payload of %d bytes", key, n, resp.Status, resp.Request, len(resp.Payload))
				}
				// CallInto, with a short and a big enough buffer.
				for _, dst := range [][]byte{nil, make([]byte, 0, n+1)} {
					resp, err = c.CallInto(testCtx(t), "echo", p, dst)
					if err != nil || !bytes.Equal(resp.Payload, p) {
						t.Fatalf("CallInto %d bytes: %v", n, err)
					}
					if cap(dst) > n && n > 0 && &resp.Payload[0] != &dst[:1][0] {
						t.Fatalf("CallInto did not use dst")
					}
				}
				resp, err = c.Dispatch(testCtx(t), "echo", p)
				if err != nil || !bytes.Equal(resp.Payload, p) {
					t.Fatalf("Dispatch %d bytes: %v", n, err)
				}
			}
		}
	})
}

func TestCallStatusErrors(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{})
		c := mustDial(t, cfg)

		resp, err := c.Call(testCtx(t), "nope", []byte("x"))
		se := wantStatus(t, err, codec.StatusNoHandler)
		if se.Request != "nope" || !strings.Contains(se.Reason, "nope") || resp.Status != codec.StatusNoHandler {
			t.Fatalf("400: %+v, %+v", se, resp)
		}
		wantOpen(t, c)

		_, err = c.Call(testCtx(t), "", []byte("x"))
		wantStatus(t, err, codec.StatusEmptyRequest)
		wantOpen(t, c)

		_, err = c.Call(testCtx(t), "fail", nil)
		se = wantStatus(t, err, codec.StatusHandlerError)
		if se.Reason != "boom" || err.Error() != "petrel: status 500: boom" {
			t.Fatalf("500: %q", err)
		}
		wantOpen(t, c)

		// Application codes: below 400 no error, 400 and above an error.
		resp, err = c.Call(testCtx(t), "code", []byte("1025"))
		wantStatus(t, err, 1025)
		if string(resp.Payload) != "code 1025" {
			t.Fatalf("payload with a status error: %q", resp.Payload)
		}
		resp, err = c.Call(testCtx(t), "code", []byte("302"))
		if err != nil || resp.Status != 302 {
			t.Fatalf("302: %v, %v", resp.Status, err)
		}
		wantOpen(t, c)
	})
}

func TestServerLimit402(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{MaxPayload: 1000})
		c := mustDial(t, cfg)
		_, err := c.Call(testCtx(t), "echo", make([]byte, 1001))
		se := wantStatus(t, err, codec.StatusPayloadTooLarge)
		if se.Reason != "1001 > 1000" {
			t.Fatalf("reason %q", se.Reason)
		}
		wantClosed(t, c)
		if err := c.Err(); !errors.As(err, &se) {
			t.Fatalf("Err() does not carry the cause: %v", err)
		}
	})
}

func TestAnswerOverClientLimit(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{})
		cfg.MaxPayload = 1000
		c := mustDial(t, cfg)
		if _, err := c.Call(testCtx(t), "big", []byte("1000")); err != nil {
			t.Fatal(err)
		}
		_, err := c.Call(testCtx(t), "big", []byte("1001"))
		var le *codec.LimitError
		if !errors.As(err, &le) || le.Declared != 1001 || le.Limit != 1000 || !errors.Is(err, codec.ErrPayloadTooLarge) {
			t.Fatalf("got %v, want a LimitError 1001 > 1000", err)
		}
		wantClosed(t, c)

		// Default limit: 4 MiB; a header declaring 2 GiB is refused at once.
		cfg.MaxPayload = 0
		c = mustDial(t, cfg)
		_, err = c.Call(testCtx(t), "huge", nil)
		if !errors.As(err, &le) || le.Limit != codec.DefaultMaxPayload {
			t.Fatalf("huge: %v", err)
		}
		wantClosed(t, c)
	})
}

func TestValidation(t *testing.T) {
	s := startFake(t, fakeConfig{})
	c := mustDial(t, client.Config{Addr: s.Addr, MaxPayload: 300})
	if _, err := c.Call(testCtx(t), strings.Repeat("r", 256), nil); !errors.Is(err, codec.ErrRequestTooLong) {
		t.Fatalf("256-byte request: %v", err)
	}
	_, err := c.Call(testCtx(t), "echo", make([]byte, 301))
	var le *codec.LimitError
	if !errors.As(err, &le) || le.Declared != 301 {
		t.Fatalf("301-byte payload: %v", err)
	}
	wantOpen(t, c)
	// 255 bytes is allowed (and answered 400 by the fake).
	_, err = c.Call(testCtx(t), strings.Repeat("r", 255), nil)
	wantStatus(t, err, codec.StatusNoHandler)
}

func TestProtoCheck(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		for _, tc := range []struct {
			proto  string
			status codec.Status // 0: no status error
			reason string
		}{
			{"none", codec.StatusNoHandler, "no PROTOCHECK"},
			{"v2", codec.StatusVersionMismatch, "server speaks protocol version 2, client offered 1"},
			{"badv1", 0, `payload "\x01"`},
		} {
			_, cfg := start(fakeConfig{Proto: tc.proto})
			c, err := client.Dial(testCtx(t), cfg)
			if c != nil || !errors.Is(err, client.ErrProtocolCheck) {
				t.Fatalf("%s: %v, want ErrProtocolCheck", tc.proto, err)
			}
			if tc.status == 0 {
				if !strings.Contains(err.Error(), tc.reason) {
					t.Fatalf("%s: %v", tc.proto, err)
				}
				continue
			}
			se := wantStatus(t, err, tc.status)
			if !strings.Contains(se.Reason, tc.reason) {
				t.Fatalf("%s: reason %q", tc.proto, se.Reason)
			}
			t.Logf("%s: %v", tc.proto, err)
		}
	})
}

func TestNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, a := range []string{addr, "tcp://" + addr, "unix://" + filepath.Join(socketDir(t), "none")} {
		c, err := client.Dial(testCtx(t), client.Config{Addr: a})
		var oe *net.OpError
		if c != nil || !errors.As(err, &oe) || !strings.HasPrefix(err.Error(), "petrel: dial ") {
			t.Fatalf("%s: %v", a, err)
		}
		t.Logf("%v", err)
	}
	for _, a := range []string{"", "nohost", "http://x:1", "unix://"} {
		if _, err := client.Dial(testCtx(t), client.Config{Addr: a}); !errors.Is(err, client.ErrConfig) {
			t.Fatalf("%q: %v, want ErrConfig", a, err)
		}
	}
	if _, err := client.Dial(testCtx(t), client.Config{Addr: addr, CallTimeout: -1}); !errors.Is(err, client.ErrConfig) {
		t.Fatalf("negative timeout: %v", err)
	}
}

func TestServerClosesMidAnswer(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{})
		c := mustDial(t, cfg)
		_, err := c.Call(testCtx(t), "cut", nil)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut: %v, want ErrUnexpectedEOF", err)
		}
		wantClosed(t, c)

		// The server going away between calls.
		s, cfg := start(fakeConfig{})
		c = mustDial(t, cfg)
		s.Close()
		if _, err = c.Call(testCtx(t), "echo", nil); err == nil {
			t.Fatal("call to a closed server succeeded")
		}
		t.Logf("%v", err)
		wantClosed(t, c)
	})
}

func TestDeadlineMidCall(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{})

		c := mustDial(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Call(ctx, "hang", nil)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("deadline: %v", err)
		}
		wantClosed(t, c)

		// Cancellation without a deadline.
		c = mustDial(t, cfg)
		ctx, cancel = context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := c.Call(ctx, "hang", nil)
			done <- err
		}()
		time.AfterFunc(20*time.Millisecond, cancel)
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel: %v", err)
		}
		wantClosed(t, c)

		// CallTimeout.
		cfg.CallTimeout = 50 * time.Millisecond
		c = mustDial(t, cfg)
		if _, err := c.Call(context.Background(), "echo", nil); err != nil {
			t.Fatal(err)
		}
		_, err = c.Call(context.Background(), "hang", nil)
		if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "call timeout") {
			t.Fatalf("CallTimeout: %v", err)
		}
		wantClosed(t, c)

		// A context done before the call changes nothing.
		cfg.CallTimeout = 0
		c = mustDial(t, cfg)
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		if _, err := c.Call(ctx, "echo", nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("done context: %v", err)
		}
		wantOpen(t, c)
		// A cancellable context that is not cancelled leaves no deadline.
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for range 100 {
			if _, err := c.Call(ctx, "echo", nil); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestHMAC(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{Key: []byte("server key")})
		cfg.HMACKey = []byte("client key")
		c, err := client.Dial(testCtx(t), cfg)
		if c != nil || !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("mismatched keys: %v, want ErrBadMAC", err)
		}
		wantStatus(t, err, codec.StatusBadMAC)
		t.Logf("%v", err)

		cfg.HMACKey = []byte("server key")
		c = mustDial(t, cfg)
		if _, err := c.Call(testCtx(t), "echo", []byte("x")); err != nil {
			t.Fatal(err)
		}
		_, err = c.Call(testCtx(t), "badmac", []byte("x"))
		if !errors.Is(err, codec.ErrBadMAC) {
			t.Fatalf("bad answer MAC: %v", err)
		}
		wantClosed(t, c)
	})
}

func TestBadSequence(t *testing.T) {
	s := startFake(t, fakeConfig{})
	c := mustDial(t, client.Config{Addr: s.Addr})
	if _, err := c.Call(testCtx(t), "badseq", nil); !errors.Is(err, client.ErrBadAnswer) {
		t.Fatalf("%v, want ErrBadAnswer", err)
	}
	wantClosed(t, c)
}

func TestConcurrentCalls(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{Key: []byte("k")})
		c := mustDial(t, cfg)
		const goroutines, calls = 16, 200
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for g := range goroutines {
			wg.Go(func() {
				dst := make([]byte, 0, 64)
				for i := range calls {
					p := fmt.Appendf(nil, "g%d-%d-%s", g, i, strings.Repeat("x", i))
					var resp client.Response
					var err error
					if i%2 == 0 {
						resp, err = c.Call(context.Background(), "echo", p)
					} else {
						resp, err = c.CallInto(context.Background(), "echo", p, dst)
					}
					if err != nil || !bytes.Equal(resp.Payload, p) {
						errs <- fmt.Errorf("goroutine %d call %d: %q, %v", g, i, resp.Payload, err)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestTurnBoundedByContext(t *testing.T) {
	s := startFake(t, fakeConfig{})
	c := mustDial(t, client.Config{Addr: s.Addr})
	cancel, hung := holdTurn(t, c.Call)
	if c.Err() != nil {
		t.Fatalf("waiting for a turn closed the client: %v", c.Err())
	}
	cancel()
	if err := <-hung; !errors.Is(err, context.Canceled) {
		t.Fatalf("hung call: %v", err)
	}
}

// holdTurn starts a "hang" call with call and returns once it holds the
// connection, that is once a call with a short deadline times out waiting
// for its turn. cancel ends the hanging call, whose error then arrives on
// hung.
func holdTurn(t *testing.T, call func(context.Context, string, []byte) (client.Response, error)) (cancel context.CancelFunc, hung <-chan error) {
	t.Helper()
	errs := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		_, err := call(ctx, "hang", nil)
		errs <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		short, stop := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := call(short, "echo", nil)
		stop()
		if errors.Is(err, context.DeadlineExceeded) {
			return cancel, errs
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("short call: %v", err)
		}
	}
}

func TestClose(t *testing.T) {
	forTransports(t, func(t *testing.T, start func(fakeConfig) (*fakeServer, client.Config)) {
		_, cfg := start(fakeConfig{})
		c := mustDial(t, cfg)
		if c.RemoteAddr() == nil {
			t.Fatal("no remote address")
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Call(context.Background(), "hang", nil)
			done <- err
		}()
		// Close while (or before) the call is in flight.
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; !errors.Is(err, client.ErrClosed) {
			t.Fatalf("call interrupted by Close: %v", err)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close: %v", err)
		}
		if err := c.Err(); err != client.ErrClosed {
			t.Fatalf("Err() = %v", err)
		}
		wantClosed(t, c)

		// Close after the connection broke: nil, then net.ErrClosed.
		c = mustDial(t, cfg)
		c.Call(testCtx(t), "cut", nil)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close: %v", err)
		}
	})
}

func TestTLSErrors(t *testing.T) {
	pki := newPKI(t)
	s := startFake(t, fakeConfig{TLS: pki.ServerTLS()})

	// Server name taken from the address: 127.0.0.1 is in the certificate.
	cfg := client.Config{Addr: s.Addr, TLS: pki.ClientTLS()}
	cfg.TLS.ServerName = ""
	mustDial(t, cfg)

	// Wrong server name.
	cfg.TLS = pki.ClientTLS()
	cfg.TLS.ServerName = "other.test"
	_, err := client.Dial(testCtx(t), cfg)
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Fatalf("wrong name: %v", err)
	}
	// Unknown authority.
	_, err = client.Dial(testCtx(t), client.Config{Addr: s.Addr, TLS: &tls.Config{ServerName: "petrel.test"}})
	if err == nil || !strings.HasPrefix(err.Error(), "petrel: dial ") {
		t.Fatalf("unknown CA: %v", err)
	}
	t.Logf("%v", err)
}

func TestNew(t *testing.T) {
	s := startFake(t, fakeConfig{})
	conn, err := net.Dial("tcp", s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(testCtx(t), conn, client.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wantOpen(t, c)
}
