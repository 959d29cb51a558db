// Command multi runs several Petrel servers in one program: a public one on
// TCP with the service's handlers, and an admin one on a Unix socket (mode
// 0600, so only this user can reach it) with handlers to inspect and stop
// the program. Each server has its own handlers, limits and logger; they
// shut down together, on the admin "shutdown" request or on SIGINT or
// SIGTERM (Petrel's default signal handling shuts down every server in the
// process that did not set IgnoreSignals).
//
//	go run ./examples/multi -public 127.0.0.1:7777 -admin unix:///tmp/multi-admin.sock
//
// Without flags it runs a demo: both servers on free addresses, a client
// on each, then the admin client's shutdown request.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/engine"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "multi:", err)
		os.Exit(1)
	}
}

func run() error {
	public := flag.String("public", "", "public server address (host:port)")
	admin := flag.String("admin", "", "admin server address (unix:///path)")
	flag.Parse()
	if *public == "" && *admin == "" {
		return demo()
	}
	if *public == "" || *admin == "" {
		return errors.New("give both -public and -admin, or neither for the demo")
	}
	p, err := start(*public, *admin)
	if err != nil {
		return err
	}
	fmt.Printf("public listening on %s\nadmin listening on %s\n", p.public.AddrString(), p.admin.AddrString())
	return p.wait()
}

// program is the program's two servers and what stops them.
type program struct {
	public, admin *engine.Server
	stopOnce      sync.Once
	stop          chan struct{} // closed by the admin shutdown request
}

func start(publicAddr, adminAddr string) (*program, error) {
	p := &program{stop: make(chan struct{})}
	var err error
	p.public, err = engine.Listen(engine.Config{
		Addr:       publicAddr,
		MaxPayload: 64 << 10,
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				return 200, req.Payload, nil
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("public server: %w", err)
	}
	p.admin, err = engine.Listen(engine.Config{
		Addr: adminAddr,
		Handlers: map[string]engine.Handler{
			"stats": func(context.Context, *engine.Request) (uint16, []byte, error) {
				st := p.public.Stats()
				return 200, fmt.Appendf(nil, "public server: %d requests, answers by status %v", st.Requests, st.ByStatus), nil
			},
			"shutdown": func(context.Context, *engine.Request) (uint16, []byte, error) {
				p.stopOnce.Do(func() { close(p.stop) })
				return 200, []byte("shutting down"), nil
			},
		},
	})
	if err != nil {
		p.public.Close()
		return nil, fmt.Errorf("admin server: %w", err)
	}
	return p, nil
}

// wait returns once both servers have stopped: after the admin shutdown
// request, which shuts both down gracefully, or after either stopped by
// itself (a signal stops both, a listener failure only its own), in which
// case the other is shut down too.
func (p *program) wait() error {
	select {
	case <-p.stop:
	case <-p.public.Done():
	case <-p.admin.Done():
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*engine.Server{p.public, p.admin} {
		wg.Go(func() {
			if err := s.Shutdown(ctx); err != nil && !errors.Is(err, net.ErrClosed) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	for i, s := range []*engine.Server{p.public, p.admin} {
		if err := s.Err(); !errors.Is(err, engine.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("server %d: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func call(ctx context.Context, addr, req, payload string) (string, error) {
	c, err := client.Dial(ctx, client.Config{Addr: addr})
	if err != nil {
		return "", err
	}
	defer c.Close()
	resp, err := c.Call(ctx, req, []byte(payload))
	return string(resp.Payload), err
}

func demo() error {
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := start("127.0.0.1:0", "unix://"+filepath.Join(dir, "admin.sock"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.wait() }()

	steps := []struct{ name, addr, req, payload string }{
		{"public echo", p.public.AddrString(), "echo", "hello"},
		{"public stats", p.public.AddrString(), "stats", ""}, // not a public handler: 400
		{"admin stats", p.admin.AddrString(), "stats", ""},
		{"admin shutdown", p.admin.AddrString(), "shutdown", ""},
	}
	for _, s := range steps {
		answer, err := call(ctx, s.addr, s.req, s.payload)
		if err != nil {
			fmt.Printf("%s: error: %v\n", s.name, err)
			continue
		}
		fmt.Printf("%s: %s\n", s.name, answer)
	}
	if err := <-done; err != nil {
		return err
	}
	fmt.Printf("public: %v\nadmin: %v\n", p.public.Err(), p.admin.Err())
	return nil
}
