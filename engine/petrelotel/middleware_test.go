package petrelotel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/petrel-rpc/petrel/client"
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/engine/petrelotel"
)

// handlers for the tests. "echo" also reports whether its context holds a
// recording span.
var handlers = map[string]engine.Handler{
	"echo": func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
		if !trace.SpanFromContext(ctx).IsRecording() {
			return 1500, []byte("no span in the handler's context"), nil
		}
		return 200, req.Payload, nil
	},
	"fail": func(context.Context, *engine.Request) (uint16, []byte, error) {
		return 0, nil, errors.New("boom")
	},
	"unavailable": func(context.Context, *engine.Request) (uint16, []byte, error) {
		return 550, []byte("not now"), nil
	},
	"teapot": func(context.Context, *engine.Request) (uint16, []byte, error) {
		return 1418, []byte("short and stout"), nil
	},
	"panic": func(context.Context, *engine.Request) (uint16, []byte, error) {
		panic("oh no")
	},
}

// setup starts a server on addr with the middleware and a span recorder,
// and a client to it.
func setup(t *testing.T, kind engine.Kind, addr string) (*tracetest.SpanRecorder, *client.Client) {
	t.Helper()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	srv, err := engine.Listen(engine.Config{
		Addr:          addr,
		Engine:        kind,
		IgnoreSignals: true,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)), // handler errors and panics are expected
		Handlers:      handlers,
		Middleware:    []engine.Middleware{petrelotel.Middleware(tp)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{Addr: srv.AddrString()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return sr, c
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestSpans(t *testing.T) {
	for _, kind := range []engine.Kind{engine.Reactor, engine.Std} {
		t.Run(string(kind), func(t *testing.T) { testSpans(t, kind) })
	}
}

func testSpans(t *testing.T, kind engine.Kind) {
	sr, c := setup(t, kind, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	cases := []struct {
		req, payload string
		status       int64 // petrel.status
		respSize     int64
		code         codes.Code
		errEvent     bool // an exception event recorded
	}{
		{"echo", "hello", 200, 5, codes.Unset, false},
		{"fail", "x", 500, 0, codes.Error, true},
		{"unavailable", "", 550, 7, codes.Error, false},
		{"teapot", "", 1418, 15, codes.Unset, false},
		{"panic", "abc", 500, 0, codes.Error, false},
	}
	for _, tc := range cases {
		sr.Reset()
		resp, err := c.Call(ctx, tc.req, []byte(tc.payload))
		var se *codec.StatusError
		if err != nil && !errors.As(err, &se) {
			t.Fatalf("%s: %v", tc.req, err)
		}
		if int64(resp.Status) != tc.status {
			t.Fatalf("%s: answered %d %q, want %d", tc.req, resp.Status, resp.Payload, tc.status)
		}
		// The span ends before the answer is written: it is there now.
		spans := sr.Ended()
		if len(spans) != 1 {
			t.Fatalf("%s: %d spans ended, want 1", tc.req, len(spans))
		}
		s := spans[0]
		if s.Name() != tc.req || s.SpanKind() != trace.SpanKindServer {
			t.Errorf("%s: span %q of kind %v", tc.req, s.Name(), s.SpanKind())
		}
		if s.Status().Code != tc.code {
			t.Errorf("%s: span status %v (%q), want %v", tc.req, s.Status().Code, s.Status().Description, tc.code)
		}
		if s.InstrumentationScope().Name != petrelotel.ScopeName {
			t.Errorf("%s: scope %q", tc.req, s.InstrumentationScope().Name)
		}
		a := attrs(s)
		want := map[attribute.Key]attribute.Value{
			"rpc.system.name":         attribute.StringValue("petrel"),
			"rpc.method":              attribute.StringValue(tc.req),
			petrelotel.RequestKey:     attribute.StringValue(tc.req),
			petrelotel.StatusKey:      attribute.Int64Value(tc.status),
			petrelotel.RequestSizeKey: attribute.Int64Value(int64(len(tc.payload))),
			"network.transport":       attribute.StringValue("tcp"),
			"network.peer.address":    attribute.StringValue("127.0.0.1"),
			petrelotel.ConnKey:        attribute.Int64Value(1),
		}
		if tc.req != "panic" {
			want[petrelotel.ResponseSizeKey] = attribute.Int64Value(tc.respSize)
		}
		for k, v := range want {
			if got, ok := a[k]; !ok || got != v {
				t.Errorf("%s: attribute %s = %v (present %v), want %v", tc.req, k, got.String(), ok, v.String())
			}
		}
		if p, ok := a["network.peer.port"]; !ok || p.AsInt64() <= 0 {
			t.Errorf("%s: network.peer.port = %v", tc.req, p.String())
		}
		if seq := a[petrelotel.SeqKey].AsInt64(); seq < 2 {
			t.Errorf("%s: petrel.seq = %d, want > 1 (the protocol check is 1)", tc.req, seq)
		}
		var exc bool
		for _, e := range s.Events() {
			exc = exc || e.Name == "exception"
		}
		if exc != tc.errEvent {
			t.Errorf("%s: exception event %v, want %v", tc.req, exc, tc.errEvent)
		}
	}
}

// TestUnixSocket: over a Unix socket the transport is unix and there is no
// peer port.
func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sr, c := setup(t, engine.Reactor, "unix://"+filepath.Join(dir, "s.sock"))
	if _, err := c.Call(context.Background(), "echo", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	spans := sr.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	a := attrs(spans[0])
	if v := a["network.transport"]; v.AsString() != "unix" {
		t.Errorf("network.transport = %q, want unix", v.String())
	}
	if _, ok := a["network.peer.port"]; ok {
		t.Error("network.peer.port set on a Unix socket")
	}
}
