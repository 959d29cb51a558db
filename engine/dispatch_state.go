package engine

import (
	"fmt"
	"runtime"
	"sort"

	"github.com/petrel-rpc/petrel/codec"
)

// dispatchState is the dispatch layer's per-server state (log rate
// limits). Set up by
// initDispatch before the server serves; read-only after, apart from the
// rate limiter's own locked state.
type dispatchState struct {
	rate         *rateLimiter // log lines per key and interval
	maxAbandoned int64        // Config.MaxAbandoned with its default
}

// initDispatch sets up s.disp from s.cfg, tells the registry the
// server-wide defaults its handler options override, checks that
// cfg.HandlerOptions names only handlers of cfg.Handlers, and registers
// the introspection requests when cfg.Introspection is on. It runs in
// Listen before cfg.Handlers are registered.
func (s *Server) initDispatch() error {
	cfg := &s.cfg
	s.disp.rate = newRateLimiter(logInterval, logBurst)
	s.disp.maxAbandoned = int64(cfg.MaxAbandoned)
	if s.disp.maxAbandoned == 0 {
		switch {
		case cfg.Engine == Std:
			s.disp.maxAbandoned = 1024
		case cfg.Workers > 0:
			s.disp.maxAbandoned = int64(cfg.Workers)
		default:
			s.disp.maxAbandoned = 256 * int64(runtime.GOMAXPROCS(0))
		}
	}
	maxPayload := cfg.MaxPayload
	if maxPayload == 0 {
		maxPayload = codec.DefaultMaxPayload
	}
	s.handlers.setDefaults(cfg.HandlerTimeout, maxPayload, cfg.Introspection)
	var unknown []string
	for name, o := range cfg.HandlerOptions {
		if _, ok := cfg.Handlers[name]; !ok {
			unknown = append(unknown, name)
		}
		if o.MaxConcurrent < 0 {
			return fmt.Errorf("%w: HandlerOptions[%q]: negative MaxConcurrent", ErrConfig, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("%w: HandlerOptions for handlers not in Handlers: %q", ErrConfig, unknown)
	}
	if cfg.Introspection {
		if err := s.registerIntrospection(); err != nil {
			return err
		}
	}
	return nil
}
