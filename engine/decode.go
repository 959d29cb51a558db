package engine

import "github.com/petrel-rpc/petrel/codec"

// verdict is what the bytes at the front of a connection's inbound buffer
// amount to. Every transport decodes with next, so that what counts as a
// frame, a partial frame or a refusal is decided once.
type verdict int

const (
	vEmpty   verdict = iota // nothing buffered
	vPartial                // a frame has begun; more bytes are needed
	vFrame                  // a whole frame
	vRefuse                 // refuse it (e.g. 402) from its header and request text
)

// next decodes the front of buf. A frame's payload limit depends on its
// handler, so nothing is decided before the header and the request text
// (at most 266 bytes) have arrived; then a frame over its limit is refused
// before any of its payload is read, with the request text to echo. need
// is how many more bytes the frame needs (vPartial).
func (s *session) next(buf []byte) (v verdict, f codec.Frame, n, need int, err error) {
	if len(buf) == 0 {
		return vEmpty, f, 0, codec.HeaderLen, nil
	}
	if len(buf) < codec.HeaderLen {
		return vPartial, f, 0, codec.HeaderLen - len(buf), nil
	}
	reqEnd := codec.HeaderLen + int(buf[6])
	if len(buf) < reqEnd {
		return vPartial, f, 0, reqEnd - len(buf), nil
	}
	f, n, need, err = codec.Parse(buf, s.opts(buf[codec.HeaderLen:reqEnd]))
	switch {
	case err != nil:
		return vRefuse, f, 0, 0, err
	case n == 0:
		return vPartial, f, 0, need, nil
	}
	return vFrame, f, n, 0, nil
}
