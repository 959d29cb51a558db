package engine

import (
	"context"
	"encoding/json"

	"github.com/petrel-rpc/petrel/codec"
)

// The built-in introspection requests, served when [Config.Introspection]
// is on. They count as non-blocking (a transport may run them on its event
// loop, without a worker), so Middleware must not block on them; they go
// through the configured Middleware like any handler. While they are on,
// no handler may be registered under a name beginning "petrel."
// ([ErrBadName]).
const (
	// IntrospectHandlers answers 200 with a JSON array describing every
	// registered handler, sorted by name (see [HandlerInfo]).
	IntrospectHandlers = "petrel.handlers"
	// IntrospectHealth answers 200 "ok", or, while the server drains
	// (Shutdown or Close has begun), 503 "draining" on a version-1
	// session and 500 "draining" on version 0.
	IntrospectHealth = "petrel.health"
	// IntrospectStats answers 200 with the server's [Stats] as JSON.
	IntrospectStats = "petrel.stats"
)

// HandlerInfo is one element of the answer to [IntrospectHandlers].
type HandlerInfo struct {
	Name          string `json:"name"`
	NonBlocking   bool   `json:"nonBlocking"`
	Timeout       string `json:"timeout"`    // the effective timeout as a Go duration ("1.5s"), "" for none
	MaxPayload    uint32 `json:"maxPayload"` // the effective payload limit in bytes
	MaxConcurrent int    `json:"maxConcurrent"`
}

var (
	reasonOK       = []byte("ok")
	reasonDraining = []byte("draining")
)

func (s *Server) registerIntrospection() error {
	nb := HandlerOptions{NonBlocking: true, Timeout: -1}
	for _, b := range []struct {
		name string
		h    Handler
	}{
		{IntrospectHandlers, s.introspectHandlers},
		{IntrospectHealth, s.introspectHealth},
		{IntrospectStats, s.introspectStats},
	} {
		if err := s.handlers.put(b.name, b.h, nb, true); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) introspectHandlers(context.Context, *Request) (uint16, []byte, error) {
	es := s.handlers.entries()
	infos := make([]HandlerInfo, 0, len(es))
	for _, e := range es {
		hi := HandlerInfo{
			Name:          e.name,
			NonBlocking:   e.opts.NonBlocking,
			MaxPayload:    e.maxPayload,
			MaxConcurrent: e.opts.MaxConcurrent,
		}
		if to := e.timeout(); to > 0 {
			hi.Timeout = to.String()
		}
		infos = append(infos, hi)
	}
	b, err := json.Marshal(infos)
	return uint16(codec.StatusOK), b, err
}

func (s *Server) introspectHealth(_ context.Context, req *Request) (uint16, []byte, error) {
	if !s.closed.Load() {
		return uint16(codec.StatusOK), reasonOK, nil
	}
	if req.Conn != nil && req.Conn.Version >= codec.ProtocolV1 {
		return uint16(codec.StatusBusy), reasonDraining, nil
	}
	return uint16(codec.StatusHandlerError), reasonDraining, nil
}

func (s *Server) introspectStats(context.Context, *Request) (uint16, []byte, error) {
	b, err := json.Marshal(s.Stats())
	return uint16(codec.StatusOK), b, err
}
