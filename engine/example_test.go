package engine_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	pclient "github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// Start a server with one handler, call it, and shut it down.
func ExampleListen() {
	srv, err := engine.Listen(engine.Config{
		Addr:          "127.0.0.1:0", // port 0: any free port
		IgnoreSignals: true,          // this program handles its own signals
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				return 200, req.Payload, nil // the payload is valid only during the call
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	c, err := pclient.Dial(ctx, pclient.Config{Addr: srv.AddrString()})
	if err != nil {
		log.Fatal(err)
	}
	resp, err := c.Call(ctx, "echo", []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(int(resp.Status), string(resp.Payload))
	c.Close()

	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(errors.Is(srv.Wait(), engine.ErrServerClosed))
	// Output:
	// 200 hello
	// true
}

// The stdlib engine serves the same API; a Unix socket works like TCP.
func ExampleConfig_std() {
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := engine.Listen(engine.Config{
		Addr:          "unix://" + filepath.Join(dir, "ctl.sock"),
		Engine:        engine.Std,
		IgnoreSignals: true,
		Handlers: map[string]engine.Handler{
			"whoami": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				// On a Unix socket the kernel tells who is calling.
				return 200, []byte(fmt.Sprint(req.Conn.PeerCred.UID == uint32(os.Getuid()))), nil
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	c, err := pclient.Dial(context.Background(), pclient.Config{Addr: srv.AddrString()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, _ := c.Call(context.Background(), "whoami", nil)
	fmt.Println(string(resp.Payload))
	// Output: true
}

// Middleware wraps every handler: here it times each request and turns
// away callers without a token.
func ExampleMiddleware() {
	auth := func(next engine.Handler) engine.Handler {
		return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			if string(req.Payload) != "token" {
				return 1401, []byte("who are you?"), nil // codes above 1024 are the application's
			}
			return next(ctx, req)
		}
	}
	timing := func(next engine.Handler) engine.Handler {
		return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			start := time.Now()
			defer func() { _ = time.Since(start) /* record it */ }()
			return next(ctx, req)
		}
	}
	srv, err := engine.Listen(engine.Config{
		Addr:          "127.0.0.1:0",
		IgnoreSignals: true,
		Middleware:    []engine.Middleware{timing, auth}, // timing is outermost
		Handlers: map[string]engine.Handler{
			"secret": func(context.Context, *engine.Request) (uint16, []byte, error) { return 200, []byte("42"), nil },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	c, err := pclient.Dial(ctx, pclient.Config{Addr: srv.AddrString()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Call(ctx, "secret", nil); err != nil {
		var se *codec.StatusError
		if errors.As(err, &se) {
			fmt.Println(int(se.Status), se.Reason)
		}
	}
	resp, _ := c.Call(ctx, "secret", []byte("token"))
	fmt.Println(int(resp.Status), string(resp.Payload))
	// Output:
	// 1401 who are you?
	// 200 42
}

// A handler in the classic Petrel form sees only the payload.
func ExampleClassic() {
	upper := engine.Classic(func(payload []byte) (uint16, []byte, error) {
		out := make([]byte, len(payload))
		for i, b := range payload {
			if 'a' <= b && b <= 'z' {
				b -= 'a' - 'A'
			}
			out[i] = b
		}
		return 200, out, nil
	})
	srv, err := engine.Listen(engine.Config{Addr: "127.0.0.1:0", IgnoreSignals: true})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Handle("upper", upper); err != nil { // registered while serving
		log.Fatal(err)
	}
	c, err := pclient.Dial(context.Background(), pclient.Config{Addr: srv.AddrString()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	resp, _ := c.Call(context.Background(), "upper", []byte("petrel"))
	fmt.Println(string(resp.Payload))
	// Output: PETREL
}
