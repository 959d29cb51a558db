// Command hmac shows message authentication with a shared HMAC key. The
// server and a client configured with the same key sign every payload they
// send and verify every payload they receive; a client with another key is
// answered 502 at its very first request (Dial's protocol check), which the
// client reports as an error matching [codec.ErrBadMAC] and wrapping a
// *[codec.StatusError] with status 502.
//
//	go run ./examples/hmac
//
// The MAC (HMAC-SHA256, as in the original Petrel) covers each frame's
// payload only: not the request name, the status or the sequence number.
// It authenticates payloads; for confidentiality, or to protect the whole
// frame, use TLS (see ../tls).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hmac:", err)
		os.Exit(1)
	}
}

func run() error {
	key := []byte("a key the server and its clients share")
	srv, err := engine.Listen(engine.Config{
		Addr:    "127.0.0.1:0",
		HMACKey: key,
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				return 200, req.Payload, nil
			},
		},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The same key: calls work as usual.
	good, err := client.Dial(ctx, client.Config{Addr: srv.AddrString(), HMACKey: key})
	if err != nil {
		return fmt.Errorf("client with the right key: %w", err)
	}
	resp, err := good.Call(ctx, "echo", []byte("signed and verified"))
	good.Close()
	if err != nil {
		return fmt.Errorf("client with the right key: %w", err)
	}
	fmt.Printf("right key: %s\n", resp.Payload)

	// Another key: the server cannot verify the protocol check's MAC,
	// answers 502 and closes the connection.
	bad, err := client.Dial(ctx, client.Config{Addr: srv.AddrString(), HMACKey: []byte("some other key")})
	if err == nil {
		bad.Close()
		return errors.New("client with a wrong key: the server accepted it")
	}
	var se *codec.StatusError
	if !errors.Is(err, codec.ErrBadMAC) || !errors.As(err, &se) {
		return fmt.Errorf("client with a wrong key: unexpected error: %w", err)
	}
	fmt.Printf("wrong key: status %d, matches codec.ErrBadMAC: %v\n", se.Status, errors.Is(err, codec.ErrBadMAC))

	return srv.Shutdown(ctx)
}
