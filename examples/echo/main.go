// Command echo is the classic Petrel example done this module's way: an
// echo server and its client. The handler has the original Petrel's form,
// seeing only the payload, and is adapted with [engine.Classic].
//
// Run the self-contained demo (server and client in one process; it prints
// the answer and exits):
//
//	go run ./examples/echo
//
// Or run the server and the client apart. The server prints
// "listening on ADDR" and serves until SIGINT or SIGTERM, which Petrel
// handles for it with a graceful shutdown:
//
//	go run ./examples/echo -serve 127.0.0.1:7777
//	go run ./examples/echo -addr 127.0.0.1:7777 hello, petrel
//
// ADDR may also be unix:///path/to.sock.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/engine"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run() error {
	serve := flag.String("serve", "", "run the server on this address until SIGINT or SIGTERM")
	addr := flag.String("addr", "", "send the arguments to the echo server at this address")
	flag.Parse()
	msg := strings.Join(flag.Args(), " ")
	switch {
	case *serve != "" && *addr != "":
		return errors.New("-serve and -addr are exclusive")
	case *serve != "":
		return runServer(*serve)
	case *addr != "":
		return runClient(*addr, msg)
	default:
		return demo(msg)
	}
}

// echo is a handler in the original Petrel's form: payload in, status and
// payload out. The answer may alias the request payload: the server is done
// with both once the answer is written.
func echo(payload []byte) (uint16, []byte, error) {
	return 200, payload, nil
}

func newServer(addr string) (*engine.Server, error) {
	return engine.Listen(engine.Config{
		Addr:     addr,
		Handlers: map[string]engine.Handler{"echo": engine.Classic(echo)},
	})
}

// runServer serves until a signal stops the server. Petrel's default
// signal handling shuts it down gracefully; Wait then reports ErrSignal,
// which wraps ErrServerClosed.
func runServer(addr string) error {
	srv, err := newServer(addr)
	if err != nil {
		return err
	}
	fmt.Printf("listening on %s\n", srv.AddrString())
	if err := srv.Wait(); !errors.Is(err, engine.ErrServerClosed) {
		return err
	}
	return nil
}

func runClient(addr, msg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: addr})
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Call(ctx, "echo", []byte(msg))
	if err != nil {
		return err
	}
	fmt.Printf("%s\n", resp.Payload)
	return nil
}

// demo runs a server on a free loopback port, calls it once and shuts it
// down.
func demo(msg string) error {
	if msg == "" {
		msg = "hello, petrel"
	}
	srv, err := newServer("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer srv.Close()
	if err := runClient(srv.AddrString(), msg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}
