package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
)

// poolRestart runs 64 goroutines calling through a pool of 8 while the
// server restarts (restart is called once every goroutine made its first
// calls). Each goroutine must end with a run of successful calls; calls that
// were on a connection when it broke may fail.
func poolRestart(t *testing.T, p *client.Pool, restart func()) {
	const goroutines, before, after = 64, 20, 20
	var wg sync.WaitGroup
	defer wg.Wait() // also when restart ends the test (t.Skip, t.Fatal)
	var ready sync.WaitGroup
	ready.Add(goroutines)
	restarted := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(restarted) }) }
	defer release()
	var failed atomic.Int64
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			call := func(i int) error {
				p1 := fmt.Appendf(nil, "%d/%d", g, i)
				resp, err := p.Call(testCtx(t), "echo", p1)
				if err == nil && !bytes.Equal(resp.Payload, p1) {
					err = fmt.Errorf("wrong answer %q to %q", resp.Payload, p1)
				}
				return err
			}
			for i := range before {
				if err := call(i); err != nil {
					errs <- fmt.Errorf("goroutine %d before restart: %w", g, err)
					ready.Done()
					return
				}
			}
			ready.Done()
			<-restarted
			// After a restart, broken connections fail one call each;
			// then every call must succeed.
			ok, tries := 0, 0
			for ok < after {
				tries++
				if err := call(before + tries); err != nil {
					failed.Add(1)
					ok = 0
					if tries > 200 {
						errs <- fmt.Errorf("goroutine %d after restart: %w", g, err)
						return
					}
					continue
				}
				ok++
			}
		})
	}
	ready.Wait()
	restart()
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d calls failed across the restart", failed.Load())
}

func TestPoolRestart(t *testing.T) {
	for _, unix := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "unix"}[unix], func(t *testing.T) {
			s := startFake(t, fakeConfig{Unix: unix, Key: []byte("k")})
			p, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr, HMACKey: []byte("k")}, Size: 8})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			poolRestart(t, p, func() { s.Restart(t) })
			if n := s.Accepted(); n < 16 || n > 8+8*64 {
				t.Fatalf("%d connections accepted, want 8 + replacements", n)
			}
		})
	}
}

func TestPoolSpreadsOverAddrs(t *testing.T) {
	a := startFake(t, fakeConfig{})
	b := startFake(t, fakeConfig{Unix: true})
	p, err := client.NewPool(client.PoolConfig{Addrs: []string{a.Addr, b.Addr}, Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if _, err := p.Call(testCtx(t), "echo", []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if a.Accepted() == 0 || b.Accepted() == 0 || a.Accepted()+b.Accepted() > 4 {
		t.Fatalf("connections: %d and %d, want both used, 4 at most", a.Accepted(), b.Accepted())
	}

	// One server gone: new connections go to the other.
	a.Close()
	p2, _ := client.NewPool(client.PoolConfig{Addrs: []string{a.Addr, b.Addr}, Size: 2})
	defer p2.Close()
	for range 10 {
		if _, err := p2.Call(testCtx(t), "echo", nil); err != nil {
			t.Fatal(err)
		}
	}
	// Both gone: the error says so.
	b.Close()
	p3, _ := client.NewPool(client.PoolConfig{Addrs: []string{a.Addr, b.Addr}, Size: 2})
	defer p3.Close()
	_, err = p3.Call(testCtx(t), "echo", nil)
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("no servers: %v", err)
	}
}

func TestPoolWaitBoundedByContext(t *testing.T) {
	s := startFake(t, fakeConfig{})
	p, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr}, Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cancel, hung := holdTurn(t, p.Call)
	cancel()
	if err := <-hung; !errors.Is(err, context.Canceled) {
		t.Fatalf("hung call: %v", err)
	}
	// The broken connection is replaced.
	if _, err := p.Call(testCtx(t), "echo", nil); err != nil {
		t.Fatal(err)
	}
	if s.Accepted() != 2 {
		t.Fatalf("%d connections, want 2", s.Accepted())
	}
}

func TestPoolErrors(t *testing.T) {
	if _, err := client.NewPool(client.PoolConfig{Addrs: []string{"x"}}); !errors.Is(err, client.ErrConfig) {
		t.Fatalf("bad address: %v", err)
	}
	if _, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: "x:1"}, Size: -1}); !errors.Is(err, client.ErrConfig) {
		t.Fatalf("negative size: %v", err)
	}
	s := startFake(t, fakeConfig{Proto: "v2"})
	p, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr, MaxPayload: 10}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Call(testCtx(t), "echo", nil); !errors.Is(err, client.ErrProtocolCheck) {
		t.Fatalf("protocol check: %v", err)
	}
	if _, err := p.Call(testCtx(t), "echo", make([]byte, 11)); !errors.Is(err, codec.ErrPayloadTooLarge) {
		t.Fatalf("limit: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.Call(testCtx(t), "echo", nil); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("call after Close: %v", err)
	}
}

func TestPoolCallInto(t *testing.T) {
	s := startFake(t, fakeConfig{})
	p, err := client.NewPool(client.PoolConfig{Config: client.Config{Addr: s.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dst := make([]byte, 0, 16)
	resp, err := p.CallInto(testCtx(t), "echo", []byte("abc"), dst)
	if err != nil || string(resp.Payload) != "abc" || &resp.Payload[0] != &dst[:1][0] {
		t.Fatalf("%q, %v", resp.Payload, err)
	}
	_, err = p.Call(testCtx(t), "fail", nil)
	wantStatus(t, err, codec.StatusHandlerError)
}
