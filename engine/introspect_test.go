package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine"
	"github.com/petrel-rpc/petrel/internal/testnet"
)

// With Introspection on: petrel.handlers lists the handlers with their
// effective options, petrel.health answers ok, petrel.stats the counters;
// they go through the middleware; names under petrel. are reserved.
func TestIntrospection(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		mw := func(next engine.Handler) engine.Handler {
			return func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
				if req.Name == engine.IntrospectHealth {
					return 200, []byte("mw"), nil
				}
				return next(ctx, req)
			}
		}
		h := testHandlers()
		srv := e.listen(t, engine.Config{Introspection: true, MaxPayload: 1000, HandlerTimeout: time.Second,
			Middleware: []engine.Middleware{mw},
			Handlers:   map[string]engine.Handler{"echo": h["echo"], "fast": h["echo"], "capped": h["echo"]},
			HandlerOptions: map[string]engine.HandlerOptions{
				"fast":   {NonBlocking: true, Timeout: -1, MaxPayload: 5000},
				"capped": {MaxConcurrent: 3, Timeout: 1500 * time.Millisecond},
			}})
		c := dial(t, srv)
		f := c.expect(engine.IntrospectHandlers, nil, codec.StatusOK, nil)
		var got []engine.HandlerInfo
		if err := json.Unmarshal(f.Payload, &got); err != nil {
			t.Fatalf("petrel.handlers: %v: %s", err, f.Payload)
		}
		want := []engine.HandlerInfo{
			{Name: "capped", Timeout: "1.5s", MaxPayload: 1000, MaxConcurrent: 3},
			{Name: "echo", Timeout: "1s", MaxPayload: 1000},
			{Name: "fast", NonBlocking: true, MaxPayload: 5000},
			{Name: "petrel.handlers", NonBlocking: true, MaxPayload: 1000},
			{Name: "petrel.health", NonBlocking: true, MaxPayload: 1000},
			{Name: "petrel.stats", NonBlocking: true, MaxPayload: 1000},
		}
		if len(got) != len(want) {
			t.Fatalf("petrel.handlers: %s", f.Payload)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("petrel.handlers[%d] = %+v, want %+v", i, got[i], want[i])
			}
		}
		// The middleware wraps the built-ins too.
		c.expect(engine.IntrospectHealth, nil, codec.StatusOK, []byte("mw"))
		f = c.expect(engine.IntrospectStats, nil, codec.StatusOK, nil)
		var st engine.Stats
		if err := json.Unmarshal(f.Payload, &st); err != nil {
			t.Fatalf("petrel.stats: %v: %s", err, f.Payload)
		}
		if st.OpenConns != 1 || st.Requests != 2 || st.Sessions[0] != 1 {
			t.Errorf("petrel.stats: %s", f.Payload)
		}
		v := dialV1(t, srv, nil)
		v.expectV1(engine.IntrospectStats, nil, codec.StatusOK, nil)
		if err := srv.Handle("petrel.mine", h["echo"]); !errors.Is(err, engine.ErrBadName) {
			t.Errorf("Handle(petrel.mine) with introspection on: %v", err)
		}
		if _, err := engine.Listen(engine.Config{Addr: "127.0.0.1:0", IgnoreSignals: true, Introspection: true,
			Handlers: map[string]engine.Handler{"petrel.health": h["echo"]}}); !errors.Is(err, engine.ErrBadName) {
			t.Errorf("Listen with a petrel. handler and introspection on: %v", err)
		}
	})
}

// petrel.health says "draining" once a shutdown has begun: 500 on version
// 0, 503 on version 1.
func TestIntrospectionHealthDraining(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		if !e.blocking() {
			t.Skip("needs a handler in flight during the shutdown")
		}
		entered := make(chan struct{}, 2)
		release := make(chan struct{})
		srv := e.listen(t, engine.Config{Introspection: true, Handlers: map[string]engine.Handler{
			"hold": func(context.Context, *engine.Request) (uint16, []byte, error) {
				entered <- struct{}{}
				<-release
				return 200, nil, nil
			},
		}})
		c0 := dial(t, srv)
		c0.expect(engine.IntrospectHealth, nil, codec.StatusOK, []byte("ok"))
		c1 := dialV1(t, srv, nil)
		c1.expectV1(engine.IntrospectHealth, nil, codec.StatusOK, []byte("ok"))
		// Each connection: a request in flight and a health check behind it.
		c0.send("hold", nil)
		c0.send(engine.IntrospectHealth, nil)
		c1.sendV1("hold", nil)
		c1.sendV1(engine.IntrospectHealth, nil)
		testRecv(t, entered)
		testRecv(t, entered)
		done := make(chan error, 1)
		go func() { done <- srv.Shutdown(context.Background()) }()
		// Draining: new connections are refused.
		testnet.WaitFor(t, ioTimeout, "the drain to begin", func() bool {
			c, err := dialErr(t, srv)
			if err != nil {
				return true
			}
			defer c.close()
			_, err = c.callErr("petrel.health", nil)
			return err != nil
		})
		close(release)
		if f := c0.recv(); f.Status != codec.StatusOK {
			t.Fatalf("held: %d", f.Status)
		}
		if f := c0.recv(); f.Status != codec.StatusHandlerError || string(f.Payload) != "draining" {
			t.Errorf("v0 health while draining: %d %q", f.Status, f.Payload)
		}
		if f, err := c1.recvV1(); err != nil || f.Status != codec.StatusOK {
			t.Fatalf("held v1: %v %d", err, f.Status)
		}
		if f, err := c1.recvV1(); err != nil || f.Status != codec.StatusBusy || string(f.Payload) != "draining" {
			t.Errorf("v1 health while draining: %v %d %q", err, f.Status, f.Payload)
		}
		if err := testnet.RecvOrFail(t, done, ioTimeout, "shutdown"); err != nil {
			t.Error(err)
		}
	})
}

// With Introspection off the names are ordinary: unknown (400) until a
// handler takes them.
func TestIntrospectionOff(t *testing.T) {
	forEach(t, func(t *testing.T, e env) {
		srv := e.listen(t, engine.Config{})
		c := dial(t, srv)
		for _, name := range []string{engine.IntrospectHandlers, engine.IntrospectHealth, engine.IntrospectStats} {
			c.expect(name, nil, codec.StatusNoHandler, nil)
		}
		if err := srv.Handle("petrel.health", testHandlers()["name"]); err != nil {
			t.Fatal(err)
		}
		c.expect("petrel.health", nil, codec.StatusOK, []byte("petrel.health"))
	})
}
