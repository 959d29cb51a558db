package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// exampleServer starts a server with an "echo" handler and a "fail"
// handler, for the examples.
func exampleServer() *engine.Server {
	srv, err := engine.Listen(engine.Config{
		Addr:          "127.0.0.1:0",
		Engine:        engine.Std,
		IgnoreSignals: true,
		MaxPayload:    1 << 10,
		Logger:        slog.New(slog.DiscardHandler),
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, r *engine.Request) (uint16, []byte, error) {
				return 200, r.Payload, nil
			},
			"fail": func(context.Context, *engine.Request) (uint16, []byte, error) {
				return 500, []byte("out of coffee"), nil
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	return srv
}

// Dial, call, close.
func Example() {
	srv := exampleServer()
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: srv.AddrString()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	resp, err := c.Call(ctx, "echo", []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, resp.Request, string(resp.Payload))
	// Output: 200 success echo hello
}

// A pool shared by many goroutines.
func ExamplePool() {
	srv := exampleServer()
	defer srv.Close()

	p, err := client.NewPool(client.PoolConfig{
		Config: client.Config{Addr: srv.AddrString(), CallTimeout: 5 * time.Second},
		Size:   4,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	var wg sync.WaitGroup
	answers := make([]string, 8)
	for i := range answers {
		wg.Go(func() {
			resp, err := p.Call(context.Background(), "echo", fmt.Appendf(nil, "call %d", i))
			if err != nil {
				answers[i] = err.Error()
				return
			}
			answers[i] = string(resp.Payload)
		})
	}
	wg.Wait()
	fmt.Println(answers)
	// Output: [call 0 call 1 call 2 call 3 call 4 call 5 call 6 call 7]
}

// Statuses of 400 and above come back as a *codec.StatusError. Some of
// them (here 402: a payload over the server's limit) close the connection.
func Example_errors() {
	srv := exampleServer()
	defer srv.Close()

	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{Addr: srv.AddrString()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.Call(ctx, "fail", nil)
	var se *codec.StatusError
	if errors.As(err, &se) {
		fmt.Println(se.Status, se.Reason)
	}
	fmt.Println(c.Err()) // 500 leaves the connection open

	_, err = c.Call(ctx, "echo", make([]byte, 2000)) // the server allows 1 KiB
	if errors.As(err, &se) {
		fmt.Println(se.Status, se.Reason)
	}
	_, err = c.Call(ctx, "echo", nil)
	fmt.Println(errors.Is(err, client.ErrClosed))
	// Output:
	// 500 handler error out of coffee
	// <nil>
	// 402 payload length over the limit 2000 > 1024
	// true
}
