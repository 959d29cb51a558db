package bench

import (
	"context"
	"time"

	"github.com/petrel-rpc/petrel/engine"
)

// engineServer adapts *engine.Server.
type engineServer struct{ s *engine.Server }

func (e engineServer) Addr() string { return e.s.AddrString() }

func (e engineServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := e.s.Shutdown(ctx); err != nil {
		return e.s.Close()
	}
	return nil
}

// serveEngine returns the Serve function of one engine configuration.
func serveEngine(kind engine.Kind, inline bool) func(context.Context, ServeConfig) (Server, error) {
	return serveEngineWith(kind, inline, nil)
}

// serveEngineWith is serveEngine with tweak, when non-nil, applied to the
// engine's Config last.
func serveEngineWith(kind engine.Kind, inline bool, tweak func(*engine.Config)) func(context.Context, ServeConfig) (Server, error) {
	return func(_ context.Context, c ServeConfig) (Server, error) {
		slow := c.Slow
		echo := func(_ context.Context, req *engine.Request) (uint16, []byte, error) {
			return 200, req.Payload, nil
		}
		sleep := func(ctx context.Context, req *engine.Request) (uint16, []byte, error) {
			t := time.NewTimer(slow)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			return 200, req.Payload, nil
		}
		cfg := engine.Config{
			Addr:          c.Addr,
			Engine:        kind,
			Inline:        inline,
			HMACKey:       c.HMACKey,
			TLS:           c.TLS,
			IgnoreSignals: true,
			IdleTimeout:   -1,
			Handlers:      map[string]engine.Handler{reqEcho: echo, reqSleep: sleep},
		}
		if tweak != nil {
			tweak(&cfg)
		}
		s, err := engine.Listen(cfg)
		if err != nil {
			return nil, err
		}
		return engineServer{s}, nil
	}
}

// engineSystems returns the Petrel engine configurations under test; "std"
// is the baseline every ratio refers to.
func engineSystems() []System {
	return []System{
		{
			Name:     "reactor-pool",
			Doc:      "Petrel reactor engine (gnet), handlers on the worker pool",
			Protocol: ProtoPetrel,
			Serve:    serveEngine(engine.Reactor, false),
		},
		{
			Name:     "reactor-inline",
			Doc:      "Petrel reactor engine (gnet), inline handlers on the event loop",
			Protocol: ProtoPetrel,
			Lacks:    map[Feature]string{FeatSlow: "inline handlers must not block the event loop"},
			Serve:    serveEngine(engine.Reactor, true),
		},
		{
			Name:     "reactor-mixed",
			Doc:      "Petrel reactor engine (gnet), handlers on the worker pool but echo non-blocking, on the event loop",
			Protocol: ProtoPetrel,
			Serve:    serveMixed,
			// Only the mixed scenario tells it from reactor-pool.
			OnlyNamed:   true,
			Unavailable: mixedUnavailable, // "": the engine has HandlerOptions
		},
		{
			Name:     "std",
			Doc:      "Petrel stdlib engine, goroutine per connection (the baseline)",
			Protocol: ProtoPetrel,
			Serve:    serveEngine(engine.Std, false),
		},
	}
}
