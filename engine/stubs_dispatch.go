package engine

import "github.com/petrel-rpc/petrel/codec"

// Stand-ins for the dispatch layer's functions until it is merged.

func (s *session) opts(name []byte) codec.Options {
	return codec.Options{MaxPayload: s.srv.cfg.MaxPayload, MAC: s.srv.mac != nil}
}

func (s *session) busyResult() result {
	s.srv.stats.busy.Add(1)
	return result{status: codec.StatusHandlerError, payload: []byte("server busy")}
}

func (s *session) timeoutResult() result {
	return result{status: codec.StatusHandlerError, payload: []byte("handler timeout")}
}

func (s *session) nonBlocking(name []byte) bool { return false }
