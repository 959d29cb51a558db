package petrelotel_test

import (
	"context"
	"fmt"
	"os"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/engine/petrelotel"
)

func ExampleMiddleware() {
	// A tracer provider recording spans in memory; a real program would
	// configure an exporter instead.
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())

	srv, err := engine.Listen(engine.Config{
		Addr: "127.0.0.1:0",
		Handlers: map[string]engine.Handler{
			"echo": func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
				return 200, req.Payload, nil
			},
			"teapot": func(context.Context, *engine.Request) (uint16, []byte, error) {
				return 550, []byte("not a teapot"), nil
			},
		},
		Middleware: []engine.Middleware{petrelotel.Middleware(tp)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer srv.Close()

	ctx := context.Background()
	c, err := client.Dial(ctx, client.Config{Addr: srv.AddrString()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer c.Close()
	c.Call(ctx, "echo", []byte("hello"))
	c.Call(ctx, "teapot", nil)

	for _, s := range sr.Ended() {
		fmt.Printf("span %s (%s): status %v", s.Name(), s.SpanKind(), s.Status().Code)
		for _, kv := range s.Attributes() {
			switch kv.Key {
			case petrelotel.StatusKey, petrelotel.RequestSizeKey, petrelotel.ResponseSizeKey:
				fmt.Printf(", %s=%s", kv.Key, kv.Value.String())
			}
		}
		fmt.Println()
	}
	// Output:
	// span echo (server): status Unset, petrel.request.size=5, petrel.status=200, petrel.response.size=5
	// span teapot (server): status Error, petrel.request.size=0, petrel.status=550, petrel.response.size=12
}
