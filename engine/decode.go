package engine

import (
	"github.com/petrel-rpc/petrel/codec"
	"github.com/petrel-rpc/petrel/engine/internal/lifecycle"
)

// Next decodes the front of buf for the decode loop (lifecycle.Decode),
// so that what counts as a frame, a partial frame or a refusal is decided
// once for every transport. A frame's payload limit depends on its
// handler, so nothing is decided before the header and the request text
// (at most 266 bytes) have arrived; then a frame over its limit is refused
// before any of its payload is read, with the request text to echo. need
// is how many more bytes the frame needs (lifecycle.Partial).
func (s *session) Next(buf []byte) (v lifecycle.Verdict, f codec.Frame, n, need int, err error) {
	if len(buf) == 0 {
		return lifecycle.Empty, f, 0, codec.HeaderLen, nil
	}
	if len(buf) < codec.HeaderLen {
		return lifecycle.Partial, f, 0, codec.HeaderLen - len(buf), nil
	}
	reqEnd := codec.HeaderLen + int(buf[6])
	if len(buf) < reqEnd {
		return lifecycle.Partial, f, 0, reqEnd - len(buf), nil
	}
	f, n, need, err = codec.Parse(buf, s.opts(buf[codec.HeaderLen:reqEnd]))
	switch {
	case err != nil:
		return lifecycle.Refuse, f, 0, 0, err
	case n == 0:
		return lifecycle.Partial, f, 0, need, nil
	}
	return lifecycle.Whole, f, n, 0, nil
}
