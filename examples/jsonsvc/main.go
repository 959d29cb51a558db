// Command jsonsvc builds a small JSON service on top of Petrel: typed
// request and response structs, a generic [JSONHandler] that adapts a
// typed function to an [engine.Handler], and a generic [CallJSON] for the
// client side.
//
//	go run ./examples/jsonsvc
//
// The demo serves "add" and "greet" on a free loopback port and calls
// them, then sends malformed JSON to show how errors come back.
//
// Statuses. Petrel reserves codes up to 1024 for the protocol; codes above
// are the application's own, and this service mirrors HTTP's in them:
//
//   - 200: success; the answer's payload is the JSON response.
//   - 1400 ([StatusBadRequest]): the payload is not valid JSON for the
//     request type (unknown fields included); the payload of the answer
//     says why.
//   - 1422 ([StatusInvalid]) or any other status a handler chooses, by
//     returning an [*Error].
//   - 500: the handler returned another error. Its text stays on the
//     server; the client sees only "handler error".
//
// A client gets every status of 400 and above as a *[codec.StatusError]
// whose Reason is the answer's payload.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
)

// The service's application statuses.
const (
	// StatusBadRequest answers a payload that does not decode into the
	// request type.
	StatusBadRequest = 1400
	// StatusInvalid answers a request that decoded but is not valid.
	StatusInvalid = 1422
)

// Error is an error a handler returns to answer with a status of its
// choice; Message becomes the answer's payload.
type Error struct {
	Status  uint16
	Message string
}

// Error implements error.
func (e *Error) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Message) }

// JSONHandler adapts f to an engine.Handler: it decodes the request payload
// into a Req, strictly (unknown fields and trailing data are errors,
// answered [StatusBadRequest]), calls f, and answers 200 with f's Resp
// encoded as JSON. An [*Error] from f is answered with its status and
// message; any other error with 500.
func JSONHandler[Req, Resp any](f func(context.Context, Req) (Resp, error)) engine.Handler {
	return func(ctx context.Context, r *engine.Request) (uint16, []byte, error) {
		var req Req
		dec := json.NewDecoder(bytes.NewReader(r.Payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return StatusBadRequest, []byte("bad request: " + err.Error()), nil
		}
		if _, err := dec.Token(); err != io.EOF {
			return StatusBadRequest, []byte("bad request: data after the JSON value"), nil
		}
		resp, err := f(ctx, req)
		var e *Error
		switch {
		case errors.As(err, &e):
			return e.Status, []byte(e.Message), nil
		case err != nil:
			return 0, nil, err
		}
		out, err := json.Marshal(resp)
		if err != nil {
			return 0, nil, fmt.Errorf("encoding the response: %w", err)
		}
		return 200, out, nil
	}
}

// CallJSON sends req, encoded as JSON, as request name and decodes the
// answer into a Resp. An answer with a status of 400 or more comes back as
// an error wrapping a *codec.StatusError.
func CallJSON[Req, Resp any](ctx context.Context, c *client.Client, name string, req Req) (Resp, error) {
	var resp Resp
	in, err := json.Marshal(req)
	if err != nil {
		return resp, fmt.Errorf("%s: encoding the request: %w", name, err)
	}
	ans, err := c.Call(ctx, name, in)
	if err != nil {
		return resp, fmt.Errorf("%s: %w", name, err)
	}
	if err := json.Unmarshal(ans.Payload, &resp); err != nil {
		return resp, fmt.Errorf("%s: decoding the answer: %w", name, err)
	}
	return resp, nil
}

// AddRequest is the request of "add".
type AddRequest struct {
	A int `json:"a"`
	B int `json:"b"`
}

// AddResponse is the answer of "add".
type AddResponse struct {
	Sum int `json:"sum"`
}

func add(_ context.Context, r AddRequest) (AddResponse, error) {
	return AddResponse{Sum: r.A + r.B}, nil
}

// GreetRequest is the request of "greet".
type GreetRequest struct {
	Name string `json:"name"`
}

// GreetResponse is the answer of "greet".
type GreetResponse struct {
	Greeting string `json:"greeting"`
}

func greet(_ context.Context, r GreetRequest) (GreetResponse, error) {
	if r.Name == "" {
		return GreetResponse{}, &Error{Status: StatusInvalid, Message: "name is required"}
	}
	return GreetResponse{Greeting: "hello, " + r.Name}, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "jsonsvc:", err)
		os.Exit(1)
	}
}

func run() error {
	srv, err := engine.Listen(engine.Config{
		Addr: "127.0.0.1:0",
		Handlers: map[string]engine.Handler{
			"add":   JSONHandler(add),
			"greet": JSONHandler(greet),
		},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: srv.AddrString()})
	if err != nil {
		return err
	}
	defer c.Close()

	sum, err := CallJSON[AddRequest, AddResponse](ctx, c, "add", AddRequest{A: 2, B: 3})
	if err != nil {
		return err
	}
	fmt.Printf("add 2 3: %d\n", sum.Sum)

	g, err := CallJSON[GreetRequest, GreetResponse](ctx, c, "greet", GreetRequest{Name: "gopher"})
	if err != nil {
		return err
	}
	fmt.Printf("greet gopher: %s\n", g.Greeting)

	// A request the handler finds invalid.
	_, err = CallJSON[GreetRequest, GreetResponse](ctx, c, "greet", GreetRequest{})
	printStatus("greet with no name", err)

	// Malformed JSON, sent raw: the handler never runs.
	_, err = c.Call(ctx, "add", []byte(`{"a": "two", "b": 3}`))
	printStatus("add with a string", err)

	return srv.Shutdown(ctx)
}

func printStatus(what string, err error) {
	var se *codec.StatusError
	if errors.As(err, &se) {
		fmt.Printf("%s: status %d: %s\n", what, se.Status, se.Reason)
		return
	}
	fmt.Printf("%s: unexpected: %v\n", what, err)
}
