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

// step is what the decode loop does next.
type step uint8

const (
	stepNext  step = iota // decode the next frame
	stepPause             // stop decoding; the connection stays open (more bytes will come, or another goroutine has it)
	stepClose             // close the connection
)

// frameSource is a transport's side of the decode loop: where its inbound
// bytes are (gnet's buffer, TLS plaintext, the std read buffer) and how it
// gets more, refuses and answers. The loop decides; the source only moves
// bytes.
type frameSource interface {
	// inbound returns the bytes received and not yet served, from the
	// start of a frame.
	inbound() []byte
	// more is called when inbound (buf) holds no whole frame (v is vEmpty
	// or vPartial; a begun frame lacks need bytes), once the lifecycle has
	// entered idle or reading: read more and go on (stepNext), or wait
	// for the next event (stepPause).
	more(v verdict, buf []byte, need int) step
	// refuse answers the library's refusal (err) of the frame whose bytes
	// so far are buf; the connection closes after it.
	refuse(buf []byte, err error) step
	// serve answers frame f, whose bytes raw are at the front of inbound,
	// and drops them from it, or hands f to another goroutine (stepPause).
	serve(f codec.Frame, raw []byte) step
}

// decode is the decode loop, the same for every transport: it serves the
// frames src holds, one at a time, until src must wait or the connection
// must close, and applies the lifecycle's decision for a connection
// waiting for bytes (lifecycle.await) at clock's time.
func (s *session) decode(src frameSource, lc *lifecycle, clock func() int64) step {
	for {
		buf := src.inbound()
		v, f, n, need, err := s.next(buf)
		var st step
		switch v {
		case vRefuse:
			return src.refuse(buf, err)
		case vEmpty, vPartial:
			if lc.await(v, s.srv.closed.Load(), clock) {
				return stepClose
			}
			st = src.more(v, buf, need)
		default:
			st = src.serve(f, buf[:n])
		}
		if st != stepNext {
			return st
		}
	}
}
